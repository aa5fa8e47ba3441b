"""Forecasters for tests that run the engine in a subprocess (FORECASTER=tests.forecasters.X)."""

from __future__ import annotations

from decimal import Decimal

from trading.forecasters import ForecastResult


class Bullish:
    """Always 97% YES at 0.9 confidence: it finds an edge on nearly every cheap market."""

    name = "bullish"
    needs_skill = False  # a test double: engine tests exercise mechanics, not skill

    def forecast(self, quote, *, now):
        return ForecastResult(Decimal("0.97"), Decimal("0.9"), rationale="test: always bullish")
