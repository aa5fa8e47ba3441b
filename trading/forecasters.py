"""Forecasters: where a probability for YES comes from.

The engine asks a ``Forecaster`` for each candidate market. ``MarketPriceForecaster`` takes
the market's own mid price: it never shows an edge, so it trades nothing, but it runs the loop
end to end without a key. Language-model and statistical forecasters implement the same
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from markets.exchange import MarketQuote


@dataclass(frozen=True)
class ForecastResult:
    """A forecaster's answer. ``valid=False`` (with ``error``) means: do not trade on it."""

    probability: Decimal | None
    confidence: Decimal | None
    rationale: str = ""
    key_factors: list[str] = field(default_factory=list)
    valid: bool = True
    error: str = ""
    model: str = ""
    prompt_version: str = ""
    price_shown: bool = False
    llm_call_id: int | None = None
    budget_exhausted: bool = False


class Forecaster(Protocol):
    """Answers a probability for YES.

    ``needs_skill`` (default True when absent): the forecaster may open trades only after the
    skill gate has seen it beat the market on settled forecasts.
    """

    name: str

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult: ...


class MarketPriceForecaster:
    """The market's YES mid price as the probability, with neutral confidence."""

    name = "market"
    needs_skill = False  # it IS the market: the benchmark the others are measured against

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        mid = quote.mid
        if mid is None:
            return ForecastResult(None, None, valid=False, error="no price to forecast from")
        return ForecastResult(
            probability=mid.quantize(Decimal("0.000001")),
            confidence=Decimal("0.5"),
            rationale="The market's own mid price.",
            price_shown=True,
        )


def forecaster_for(name: str | None = None) -> Forecaster:
    """The forecaster named by the ``FORECASTER`` setting."""
    from django.conf import settings

    name = name or settings.FORECASTER
    if name == "market":
        return MarketPriceForecaster()
    if name == "baseline":
        try:
            from trading.baseline import BaselineForecaster
        except ImportError:  # until the baseline model ships
            return MarketPriceForecaster()
        return BaselineForecaster()
    if name == "llm":
        from trading.llm import llm_forecaster

        return llm_forecaster()
    if name == "recorded":
        from trading.llm import recorded_forecaster

        return recorded_forecaster()
    if "." in name:
        from django.utils.module_loading import import_string

        return import_string(name)()
    raise ValueError(
        f"unknown forecaster {name!r}: use market, baseline, llm or a dotted class path"
    )
