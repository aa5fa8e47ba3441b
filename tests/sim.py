"""A hand-driven quote source for the simulated exchange, shared by engine tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from markets.exchange import MarketQuote
from markets.simulator import MarketOutcome

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


class StaticQuotes:
    """Quotes and results the test sets by hand; ``clock`` is the exchange's now."""

    def __init__(self, *quotes: MarketQuote) -> None:
        self.clock = T0
        self.by_ticker = {q.ticker: q for q in quotes}
        self.results: dict[str, MarketOutcome] = {}

    def now(self):
        return self.clock

    def open_markets(self):
        return list(self.by_ticker.values())

    def quote(self, ticker):
        return self.by_ticker.get(ticker)

    def outcomes(self, tickers):
        return {
            t: o for t, o in self.results.items() if t in tickers and o.settled_at <= self.clock
        }


def quote(ticker="MKT", bid="0.40", ask="0.42", depth="100", **kw) -> MarketQuote:
    defaults = dict(
        ticker=ticker,
        event_ticker="EV",
        status="active",
        close_time=T0 + timedelta(days=1),
        yes_bid=D(bid),
        yes_ask=D(ask),
        yes_ask_depth=D(depth),
        no_ask_depth=D(depth),
        volume=D("5000"),
        category="Test",
    )
    defaults.update(kw)
    return MarketQuote(**defaults)
