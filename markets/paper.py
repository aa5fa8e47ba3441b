"""``PaperQuotes``: live public Kalshi data as the quote source of the paper ``SimulatedExchange``.

It only ever reads (markets, order books): orders stay in the simulator's own books. One
instance serves one engine cycle: ``open_markets()`` is fetched once and cached until
``refresh()`` (or a new instance); ``quote()`` always reads the live book for the last look.
``book()`` gives the simulator every level of that book and ``prints()`` Kalshi's public
trades, which fill the simulator's resting orders (``markets.matching``). Block trades are left
out: they do not cross the book.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.utils import timezone

from markets import kalshi, matching
from markets.exchange import MarketQuote
from markets.exchange_kalshi import (
    categories_for,
    fee_schedules_for,
    market_record,
    quote_from_market,
)
from markets.simulator import MarketOutcome


def paper_book(book: kalshi.OrderBook) -> matching.Book:
    """A ``matching.Book`` of every level of a Kalshi order book (YES terms, best first)."""
    bids = tuple(reversed(book.yes_bids))
    asks = book.asks("yes")
    levels = ";".join(f"{p}:{c}" for p, c in bids) + "/" + ";".join(f"{p}:{c}" for p, c in asks)
    version = hashlib.sha256(levels.encode()).hexdigest()[:32]
    return matching.Book(bids=bids, asks=asks, version=version, complete=True)


_SETTLED_RESULTS = ("yes", "no", "void", "scalar")
_TICKERS_PER_REQUEST = 100


class PaperQuotes:
    def __init__(self, client: kalshi.KalshiClient) -> None:
        self.client = client
        self._open: list[MarketQuote] | None = None
        self._books: dict[str, kalshi.OrderBook] = {}

    def now(self) -> datetime:
        return timezone.now()

    def refresh(self) -> None:
        """Forget the cached market list (the next ``open_markets()`` reads it again)."""
        self._open = None
        self._books = {}

    def open_markets(self) -> list[MarketQuote]:
        if self._open is None:
            markets = [
                m
                for m in self.client.iter_markets(status="open", on_error=kalshi.log_skipped)
                if m.status == "active"
            ]
            categories = categories_for(m.ticker for m in markets)
            fees = fee_schedules_for(markets)
            observed = self.now()
            self._open = [
                quote_from_market(
                    m,
                    category=categories.get(m.ticker, ""),
                    observed_at=observed,
                    fees=fees[m.ticker],
                )
                for m in markets
            ]
        return list(self._open)

    def quote(self, ticker: str) -> MarketQuote | None:
        try:
            market = self.client.get_market(ticker)
        except kalshi.KalshiError as exc:
            if exc.status == 404:
                return None
            raise
        if market.status != "active":
            return None
        book = self.client.get_orderbook(ticker)
        self._books[ticker] = book
        category = categories_for([ticker]).get(ticker, "")
        fees = fee_schedules_for([market])[market.ticker]
        return quote_from_market(
            market, category=category, book=book, observed_at=self.now(), fees=fees
        )

    def market(self, ticker: str) -> kalshi.Market:
        """Kalshi's record of one market, any status (``SimulatedExchange.market``)."""
        return market_record(self.client, ticker)

    def book(self, quote: MarketQuote) -> matching.Book:
        """The market's full order book (the one the last ``quote()`` read, else a fresh read),
        versioned by its content: liquidity we took stays taken until the live book changes."""
        book = self._books.get(quote.ticker)
        if book is None:
            book = self._books[quote.ticker] = self.client.get_orderbook(quote.ticker)
        return paper_book(book)

    def prints(self, ticker: str, after: datetime, until: datetime) -> list[matching.Print]:
        """Kalshi's public trades on the market in ``(after, until]``."""
        trades = self.client.iter_trades(
            ticker=ticker, min_ts=int(after.timestamp()), max_ts=int(until.timestamp()) + 1
        )
        return sorted(
            (
                matching.Print(t.created_time, t.yes_price, t.count)
                for t in trades
                if after < t.created_time <= until and not t.is_block_trade
            ),
            key=lambda p: p.at,
        )

    def outcomes(self, tickers: list[str]) -> dict[str, MarketOutcome]:
        """Results Kalshi has published for these tickers (absent = not settled yet)."""
        found: dict[str, MarketOutcome] = {}
        wanted = list(dict.fromkeys(tickers))
        for start in range(0, len(wanted), _TICKERS_PER_REQUEST):
            chunk = wanted[start : start + _TICKERS_PER_REQUEST]
            for market in self.client.iter_markets(tickers=chunk, on_error=kalshi.log_skipped):
                if market.result not in _SETTLED_RESULTS:
                    continue
                settled_at = market.settlement_ts or market.close_time
                value = market.settlement_value if market.result == "scalar" else None
                found[market.ticker] = MarketOutcome(market.result, settled_at, value)
        return found
