"""The language-model forecaster, the recorded-answer forecaster, and their factories.

``LLMForecaster`` (name ``llm``) asks a chat model for P(YES) of a market:

1. **Reuse** — the latest valid forecast of this market by the same model, pipeline version
   and price setting is reused while it is younger than ``forecast_ttl_minutes`` and the YES
   mid has not moved more than ``forecast_price_move`` from the price when it was made. The
   look-up is cached in the Django cache (Redis when configured) under a key of market,
   model, pipeline version and price setting, for at most the TTL; the database is the truth:
   a cache miss or a cache error reads the ``Forecast`` table, and a fresh forecast clears the
   key. A reused forecast keeps its ``llm_call_id``, which is how its origin (time and price)
   is found: the first ``Forecast`` row carrying that call.
2. **Ask** — the market's text (``markets.models.Market``: title, subtitles, rules) is quoted
   as data (``trading.prompts``); the price is shown only when ``show_price``. ``samples`` > 1
   asks that many times and takes the median probability and the median confidence (the
   rationale of the sample nearest the median); more than half of the samples must be valid.
   ``critic`` adds a second call that reviews the answer and whose answer is final; a critic
   that fails makes the forecast invalid.
3. **Budget** — every call goes through ``trading.llm.ledger.recorded_call``: the worst case is
   reserved against ``RiskSettings.ai_daily_budget`` before any request, every call is an
   ``LLMCall`` row. A refusal by the budget returns ``budget_exhausted=True`` (the engine
   records AI_BUDGET_EXHAUSTED); any invalid output or provider error returns
   ``valid=False`` (INVALID_FORECAST). Neither can trade.

The recorded ``prompt_version`` of a forecast is the pipeline: ``v1``, ``v1+n5`` (median of 5),
``v1+critic``, ``v1+n3+critic``, so the ledger scores each configuration apart. Each
``LLMCall`` carries the version of its own prompt (forecast or critic).

Callers must not wrap ``forecast`` in a database transaction: the budget reservation has to
commit at once to be seen by other processes (``decide_run`` calls forecasters outside its
write transaction).

``RecordedForecaster`` (name ``recorded``) calls no model: it replays the latest valid stored
answer of a source forecaster (``llm`` by default, optionally one model and prompt version)
made at or before ``now``, for replays and backtests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from markets.exchange import MarketQuote
from markets.models import Market
from markets.money import PRICE_QUANTUM
from trading.forecasters import ForecastResult
from trading.llm.client import PROVIDERS, ChatClient, LLMConfigError
from trading.llm.ledger import CallOutcome, recorded_call
from trading.llm.prices import price_for
from trading.models import Forecast, RiskSettings
from trading.prompts import (
    CRITIC_PROMPT_VERSION,
    PROMPT_VERSION,
    MarketText,
    critic_messages,
    forecast_messages,
)

logger = logging.getLogger(__name__)

MAX_SAMPLES = 9
DEFAULT_MAX_OUTPUT_TOKENS = 2000
CACHE_PREFIX = "llm-forecast:"


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return ((ordered[middle - 1] + ordered[middle]) / 2).quantize(Decimal("0.000001"))


def _default_cache() -> BaseCache:
    from django.core.cache import cache

    return cache


class LLMForecaster:
    """P(YES) from a chat model, within the daily budget; see the module docstring."""

    name = "llm"

    def __init__(
        self,
        client: ChatClient,
        *,
        show_price: bool = False,
        samples: int = 1,
        critic: bool = False,
        max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        temperature: float | None = None,
        limits: Callable[[], RiskSettings] = RiskSettings.load,
        cache: BaseCache | None = None,
        wall: Callable[[], datetime] = timezone.now,
    ) -> None:
        if not 1 <= samples <= MAX_SAMPLES:
            raise LLMConfigError(f"LLM_SAMPLES must be from 1 to {MAX_SAMPLES}; got {samples}")
        self.client = client
        self.show_price = show_price
        self.samples = samples
        self.critic = critic
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self._limits = limits
        self._cache = cache
        self._wall = wall

    def __repr__(self) -> str:
        return f"<LLMForecaster {self.client.provider.name}/{self.client.model} {self.version}>"

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def version(self) -> str:
        """The pipeline version recorded on each forecast."""
        version = PROMPT_VERSION
        if self.samples > 1:
            version += f"+n{self.samples}"
        if self.critic:
            version += "+critic"
        return version

    # -- the Forecaster protocol -------------------------------------------------------------

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        market = Market.objects.filter(ticker=quote.ticker).select_related("event").first()
        if market is None:
            return self._invalid(f"market {quote.ticker} is not in the database", price_shown=False)
        limits = self._limits()
        reused = self._reusable(market, quote, now, limits)
        if reused is not None:
            return reused
        text = self.market_text(market)
        result = self._ask(text, quote, now=now, market=market, budget=limits.ai_daily_budget)
        if result.llm_call_id is not None:
            self._cache_delete(self._cache_key(market))
        return result

    def forecast_question(
        self, quote: MarketQuote, question: Any, *, now: datetime
    ) -> ForecastResult:
        """A forecast from a question's own text (``trading.evaluation.QuestionText``), for
        offline evaluation on questions that are not in the database; no reuse."""
        text = MarketText(
            ticker=question.ticker,
            title=question.title,
            subtitle=question.subtitle,
            rules_primary=question.rules,
            category=question.category,
            event_title=question.event_title if question.event_title != question.title else "",
        )
        limits = self._limits()
        return self._ask(text, quote, now=now, market=None, budget=limits.ai_daily_budget)

    # -- asking --------------------------------------------------------------------------------

    @staticmethod
    def market_text(market: Market) -> MarketText:
        text = MarketText.from_market(market)
        event_title = getattr(market.event, "title", "") or ""
        if event_title and event_title != text.title:
            text = replace(text, event_title=event_title)
        return text

    def messages_for(
        self, text: MarketText, quote: MarketQuote, *, now: datetime
    ) -> list[dict[str, str]]:
        price = self._shown_price(quote)
        return forecast_messages(
            text, now=now, close_time=quote.close_time, price=price, show_price=price is not None
        )

    def _shown_price(self, quote: MarketQuote) -> Decimal | None:
        if not self.show_price or quote.mid is None:
            return None
        return quote.mid.quantize(PRICE_QUANTUM)

    def _call(
        self,
        messages: list[dict[str, str]],
        *,
        purpose: str,
        prompt_version: str,
        market: Market | None,
        budget: Decimal,
    ) -> CallOutcome:
        return recorded_call(
            self.client,
            messages,
            purpose=purpose,
            prompt_version=prompt_version,
            market=market,
            budget=budget,
            max_output_tokens=self.max_output_tokens,
            temperature=self.temperature,
            wall=self._wall,
        )

    def _invalid(
        self,
        error: str,
        *,
        price_shown: bool,
        call_id: int | None = None,
        budget_exhausted: bool = False,
    ) -> ForecastResult:
        return ForecastResult(
            None,
            None,
            valid=False,
            error=error[:500],
            model=self.client.model,
            prompt_version=self.version,
            price_shown=price_shown,
            llm_call_id=call_id,
            budget_exhausted=budget_exhausted,
        )

    def _ask(
        self,
        text: MarketText,
        quote: MarketQuote,
        *,
        now: datetime,
        market: Market | None,
        budget: Decimal,
    ) -> ForecastResult:
        price = self._shown_price(quote)
        shown = price is not None
        messages = self.messages_for(text, quote, now=now)
        outcomes: list[CallOutcome] = []
        for _ in range(self.samples):
            outcome = self._call(
                messages,
                purpose="forecast",
                prompt_version=PROMPT_VERSION,
                market=market,
                budget=budget,
            )
            outcomes.append(outcome)
            if outcome.budget_exhausted:
                return self._invalid(
                    outcome.error, price_shown=shown, call_id=outcome.call_id, budget_exhausted=True
                )
        valid = [o for o in outcomes if o.parsed is not None]
        if len(valid) * 2 <= self.samples:
            errors = "; ".join(dict.fromkeys(o.error for o in outcomes if o.parsed is None))
            prefix = f"{len(outcomes) - len(valid)} of {self.samples} samples invalid: "
            return self._invalid(
                (prefix if self.samples > 1 else "") + errors,
                price_shown=shown,
                call_id=outcomes[-1].call_id,
            )
        probability = _median([o.parsed.probability for o in valid])  # type: ignore[union-attr]
        confidence = _median([o.parsed.confidence for o in valid])  # type: ignore[union-attr]
        nearest = min(valid, key=lambda o: abs(o.parsed.probability - probability))  # type: ignore[union-attr]
        assert nearest.parsed is not None
        rationale, factors, call_id = (
            nearest.parsed.rationale,
            nearest.parsed.key_factors,
            nearest.call_id,
        )
        if self.critic:
            draft = {
                "probability": probability,
                "confidence": confidence,
                "rationale": rationale,
                "key_factors": list(factors),
            }
            review = self._call(
                critic_messages(
                    text, draft, now=now, close_time=quote.close_time, price=price, show_price=shown
                ),
                purpose="critic",
                prompt_version=CRITIC_PROMPT_VERSION,
                market=market,
                budget=budget,
            )
            if review.parsed is None:
                return self._invalid(
                    f"critic: {review.error}",
                    price_shown=shown,
                    call_id=review.call_id,
                    budget_exhausted=review.budget_exhausted,
                )
            probability, confidence = review.parsed.probability, review.parsed.confidence
            rationale, factors, call_id = (
                review.parsed.rationale,
                review.parsed.key_factors,
                review.call_id,
            )
        return ForecastResult(
            probability=probability,
            confidence=confidence,
            rationale=rationale,
            key_factors=list(factors),
            valid=True,
            model=self.client.model,
            prompt_version=self.version,
            price_shown=shown,
            llm_call_id=call_id,
        )

    # -- reuse ---------------------------------------------------------------------------------

    def _cache_key(self, market: Market) -> str:
        raw = f"{market.pk}|{self.client.model}|{self.version}|{int(self.show_price)}"
        return CACHE_PREFIX + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        try:
            return (self._cache or _default_cache()).get(key)
        except Exception:  # the cache is an optimisation; the database is the truth
            logger.warning("forecast cache unavailable; reading the database", exc_info=True)
            return None

    def _cache_set(self, key: str, entry: dict[str, Any], seconds: int) -> None:
        try:
            (self._cache or _default_cache()).set(key, entry, timeout=max(1, seconds))
        except Exception:
            logger.warning("forecast cache unavailable", exc_info=True)

    def _cache_delete(self, key: str) -> None:
        try:
            (self._cache or _default_cache()).delete(key)
        except Exception:
            logger.warning("forecast cache unavailable", exc_info=True)

    def _latest(self, market: Market, now: datetime) -> dict[str, Any] | None:
        """The latest valid forecast of this configuration at or before ``now``, with the time
        and price of its origin (the first row carrying its LLM call)."""
        latest = (
            Forecast.objects.filter(
                market=market,
                forecaster=self.name,
                model=self.client.model,
                prompt_version=self.version,
                price_shown=self.show_price,
                valid=True,
                llm_call__isnull=False,
                created_at__lte=now,
            )
            .order_by("-created_at", "-id")
            .values("llm_call_id", "probability", "confidence", "rationale", "key_factors")
            .first()
        )
        if latest is None:
            return None
        origin = (
            Forecast.objects.filter(market=market, llm_call_id=latest["llm_call_id"])
            .order_by("created_at", "id")
            .values("created_at", "market_price")
            .first()
        )
        assert origin is not None
        return {**latest, "origin_at": origin["created_at"], "origin_price": origin["market_price"]}

    def _reusable(
        self, market: Market, quote: MarketQuote, now: datetime, limits: RiskSettings
    ) -> ForecastResult | None:
        ttl = timedelta(minutes=int(limits.forecast_ttl_minutes))
        if ttl <= timedelta(0):
            return None
        key = self._cache_key(market)
        entry = self._cache_get(key)
        if entry is not None and entry["origin_at"] > now:
            entry = self._latest(market, now)  # a replay clock behind the cached forecast
        elif entry is None:
            entry = self._latest(market, now)
            if entry is not None:
                remaining = ttl - (now - entry["origin_at"])
                if remaining > timedelta(0):
                    self._cache_set(key, entry, int(remaining.total_seconds()))
        if entry is None:
            return None
        if entry["origin_at"] > now or now - entry["origin_at"] >= ttl:
            return None
        mid, origin_price = quote.mid, entry["origin_price"]
        if mid is None or origin_price is None:
            return None
        if abs(mid - origin_price) > limits.forecast_price_move:
            return None
        return ForecastResult(
            probability=entry["probability"],
            confidence=entry["confidence"],
            rationale=entry["rationale"],
            key_factors=list(entry["key_factors"] or []),
            valid=True,
            model=self.client.model,
            prompt_version=self.version,
            price_shown=self.show_price,
            llm_call_id=entry["llm_call_id"],
        )


class RecordedForecaster:
    """Replays stored answers: the latest valid ``Forecast`` of ``source`` (optionally one
    ``model`` and ``prompt_version``) for the market, made at or before ``now``. Calls no model."""

    name = "recorded"

    def __init__(self, *, source: str = "llm", model: str = "", prompt_version: str = "") -> None:
        if not source or source == self.name:
            raise ImproperlyConfigured(
                "RecordedForecaster needs a source forecaster other than itself"
            )
        self.source = source
        self.model = model
        self.prompt_version = prompt_version

    def __repr__(self) -> str:
        return f"<RecordedForecaster source={self.source} model={self.model or '*'}>"

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        rows = Forecast.objects.filter(
            market__ticker=quote.ticker, forecaster=self.source, valid=True, created_at__lte=now
        )
        if self.model:
            rows = rows.filter(model=self.model)
        if self.prompt_version:
            rows = rows.filter(prompt_version=self.prompt_version)
        row = rows.order_by("-created_at", "-id").first()
        if row is None:
            return ForecastResult(
                None,
                None,
                valid=False,
                error=f"no recorded {self.source} forecast for {quote.ticker} at or before {now:%Y-%m-%d %H:%M}",
                model=self.model,
                prompt_version=self.prompt_version,
            )
        return ForecastResult(
            probability=row.probability,
            confidence=row.confidence,
            rationale=row.rationale,
            key_factors=list(row.key_factors or []),
            valid=True,
            model=row.model,
            prompt_version=row.prompt_version,
            price_shown=row.price_shown,
            llm_call_id=row.llm_call_id,
        )


# --- Factories: the only place settings are read ----------------------------------------------


def _setting_bool(name: str, default: bool) -> bool:
    value = getattr(settings, name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _setting_int(name: str, default: int, low: int, high: int) -> int:
    value = getattr(settings, name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise LLMConfigError(f"{name} must be a whole number; got {value!r}") from None
    if not low <= number <= high:
        raise LLMConfigError(f"{name} must be from {low} to {high}; got {number}")
    return number


def _setting_price() -> tuple[Decimal, Decimal] | None:
    raw_in = getattr(settings, "LLM_PRICE_INPUT_PER_M", None)
    raw_out = getattr(settings, "LLM_PRICE_OUTPUT_PER_M", None)
    if raw_in in (None, "") and raw_out in (None, ""):
        return None
    try:
        prices = (Decimal(str(raw_in)), Decimal(str(raw_out)))
    except ArithmeticError:
        raise LLMConfigError(
            "LLM_PRICE_INPUT_PER_M and LLM_PRICE_OUTPUT_PER_M must both be numbers"
        ) from None
    if any(not p.is_finite() or p < 0 for p in prices):
        raise LLMConfigError("LLM prices must be finite and not negative")
    return prices


def llm_client(*, transport=None, sleep=None) -> ChatClient:
    """The chat client configured by the ``LLM_*`` settings."""
    name = (getattr(settings, "LLM_PROVIDER", "none") or "none").lower()
    if name == "none":
        raise LLMConfigError(
            "the llm forecaster needs LLM_PROVIDER (xai, openai, openrouter, local or custom) "
            "and LLM_MODEL"
        )
    if name not in PROVIDERS:
        raise LLMConfigError(f"unknown LLM_PROVIDER {name!r}")
    provider = PROVIDERS[name]
    model = getattr(settings, "LLM_MODEL", "") or ""
    json_mode = getattr(settings, "LLM_JSON_MODE", None)
    extra: dict[str, Any] = {}
    if sleep is not None:
        extra["sleep"] = sleep
    return ChatClient(
        provider=provider,
        model=model,
        api_key=getattr(settings, "LLM_API_KEY", None) or None,
        base_url=getattr(settings, "LLM_BASE_URL", None) or None,
        timeout=float(getattr(settings, "LLM_TIMEOUT_SECONDS", 60)),
        max_retries=_setting_int("LLM_MAX_RETRIES", 2, 0, 5),
        json_mode=None if json_mode in (None, "") else _setting_bool("LLM_JSON_MODE", True),
        price=price_for(model, free=provider.free, override=_setting_price()),
        transport=transport,
        **extra,
    )


def llm_forecaster(*, transport=None, sleep=None) -> LLMForecaster:
    """The ``llm`` forecaster configured by settings (``FORECASTER=llm``)."""
    temperature = getattr(settings, "LLM_TEMPERATURE", None)
    return LLMForecaster(
        llm_client(transport=transport, sleep=sleep),
        show_price=_setting_bool("LLM_SHOW_PRICE", False),
        samples=_setting_int("LLM_SAMPLES", 1, 1, MAX_SAMPLES),
        critic=_setting_bool("LLM_CRITIC", False),
        max_output_tokens=_setting_int(
            "LLM_MAX_OUTPUT_TOKENS", DEFAULT_MAX_OUTPUT_TOKENS, 64, 32_000
        ),
        temperature=None if temperature in (None, "") else float(temperature),
    )


def recorded_forecaster() -> RecordedForecaster:
    """The ``recorded`` forecaster configured by settings (``FORECASTER=recorded``)."""
    return RecordedForecaster(
        source=getattr(settings, "RECORDED_SOURCE_FORECASTER", "llm") or "llm",
        model=getattr(settings, "RECORDED_SOURCE_MODEL", "") or "",
        prompt_version=getattr(settings, "RECORDED_SOURCE_PROMPT_VERSION", "") or "",
    )
