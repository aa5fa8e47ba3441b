"""Small builders for a named world of test rows. Each takes overrides as keyword arguments."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from django.utils import timezone

from markets.models import Event, Market, MarketSnapshot, Series
from trading.models import Decision, Forecast, Order

_seq = count(1)


def make_series(**kw: Any) -> Series:
    n = next(_seq)
    defaults: dict[str, Any] = {"ticker": f"KXTEST{n}", "title": "Test series", "category": "Test"}
    defaults.update(kw)
    return Series.objects.create(**defaults)


def make_event(series: Series | None = None, **kw: Any) -> Event:
    series = series or make_series()
    n = next(_seq)
    defaults: dict[str, Any] = {
        "event_ticker": f"{series.ticker}-E{n}",
        "series": series,
        "title": "Test event",
        "category": series.category,
    }
    defaults.update(kw)
    return Event.objects.create(**defaults)


def make_market(event: Event | None = None, **kw: Any) -> Market:
    event = event or make_event()
    n = next(_seq)
    now = timezone.now()
    defaults: dict[str, Any] = {
        "ticker": f"{event.event_ticker}-M{n}",
        "event": event,
        "title": "Will it happen?",
        "category": event.category,
        "status": Market.Status.ACTIVE,
        "open_time": now - timedelta(days=1),
        "close_time": now + timedelta(days=2),
        "yes_bid": Decimal("0.4000"),
        "yes_ask": Decimal("0.4200"),
        "no_bid": Decimal("0.5800"),
        "no_ask": Decimal("0.6000"),
        "last_price": Decimal("0.4100"),
        "volume": Decimal("1000.00"),
    }
    defaults.update(kw)
    return Market.objects.create(**defaults)


def make_snapshot(market: Market, **kw: Any) -> MarketSnapshot:
    defaults: dict[str, Any] = {
        "market": market,
        "ts": timezone.now(),
        "yes_bid": market.yes_bid,
        "yes_ask": market.yes_ask,
        "last_price": market.last_price,
    }
    defaults.update(kw)
    return MarketSnapshot.objects.create(**defaults)


def make_forecast(market: Market, **kw: Any) -> Forecast:
    defaults: dict[str, Any] = {
        "market": market,
        "forecaster": "market",
        "probability": Decimal("0.5500"),
        "confidence": Decimal("0.7000"),
        "market_price": Decimal("0.4100"),
    }
    defaults.update(kw)
    return Forecast.objects.create(**defaults)


def make_decision(market: Market, **kw: Any) -> Decision:
    defaults: dict[str, Any] = {"market": market, "reason": "edge_too_small"}
    defaults.update(kw)
    return Decision.objects.create(**defaults)


def make_order(decision: Decision, **kw: Any) -> Order:
    defaults: dict[str, Any] = {
        "decision": decision,
        "market": decision.market,
        "client_order_id": f"kd-test-{decision.pk}-{next(_seq)}",
        "side": "yes",
        "action": "buy",
        "yes_price": Decimal("0.4200"),
        "count": Decimal("10.00"),
    }
    defaults.update(kw)
    return Order.objects.create(**defaults)
