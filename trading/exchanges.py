"""Which exchange the engine talks to, by ``TRADING_MODE``; and the replay clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min

from markets.exchange import Exchange
from markets.models import Market, MarketSnapshot, Source
from markets.simulator import ReplayQuotes, SimulatedExchange
from trading.models import TradingState


def replay_clock() -> datetime:
    """The simulated now, starting at the first recorded market's opening."""
    state = TradingState.load()
    if state.replay_clock is None:
        start = Market.objects.filter(source=Source.RECORDED).aggregate(t=Min("open_time"))["t"]
        if start is None:
            raise RuntimeError("No recorded markets: run manage.py load_recorded_markets first.")
        TradingState.objects.filter(pk=state.pk, replay_clock__isnull=True).update(
            replay_clock=start
        )
        state.refresh_from_db()
    return state.replay_clock


def replay_clock_advance(step: timedelta | None = None) -> tuple[datetime, bool]:
    """Move the replay clock one step; return (new time, whether the data has ended)."""
    step = step or timedelta(seconds=settings.REPLAY_STEP_SECONDS)
    current = replay_clock()
    end = Market.objects.filter(source=Source.RECORDED).aggregate(t=Max("close_time"))["t"]
    finished = end is not None and current >= end + timedelta(hours=2)
    if finished:
        return current, True
    target = current + step
    quoted = MarketSnapshot.objects.filter(
        market__source=Source.RECORDED,
        market__open_time__lte=target,
        market__close_time__gt=target,
        ts__lte=target,
    )
    if not quoted.exists():
        # No open market has a quote yet: jump over the gap to the next recorded quote.
        upcoming = MarketSnapshot.objects.filter(
            market__source=Source.RECORDED, ts__gt=current
        ).aggregate(t=Min("ts"))["t"]
        if upcoming is not None:
            target = max(target, upcoming)
    with transaction.atomic():
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(replay_clock=target)
    return target, False


def exchange_for(mode: str | None = None) -> Exchange:
    mode = mode or settings.TRADING_MODE
    if mode == "replay":
        return SimulatedExchange(
            name="replay",
            quotes=ReplayQuotes(replay_clock),
            account="replay",
            starting_cash=settings.PAPER_STARTING_BALANCE,
        )
    if mode == "paper":
        from markets.kalshi import kalshi_client
        from markets.paper import PaperQuotes  # needs the Kalshi client

        return SimulatedExchange(
            name="paper",
            quotes=PaperQuotes(kalshi_client()),
            account="paper",
            starting_cash=settings.PAPER_STARTING_BALANCE,
        )
    if mode == "live":
        from markets.exchange_kalshi import KalshiExchange
        from markets.kalshi import kalshi_client

        return KalshiExchange(kalshi_client())
    raise ValueError(f"unknown trading mode {mode!r}")
