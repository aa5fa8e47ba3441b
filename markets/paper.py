"""``PaperQuotes``: live public Kalshi data as the quote source of the paper ``SimulatedExchange``.

It only ever reads (markets, order books): orders stay in the simulator's own books. One
instance serves one engine cycle: ``open_markets()`` is fetched once and cached until
``refresh()`` (or a new instance); ``quote()`` always reads the live book for the last look.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from markets import kalshi
from markets.exchange import MarketQuote
from markets.exchange_kalshi import categories_for, quote_from_market
from markets.simulator import MarketOutcome

_SETTLED_RESULTS = ("yes", "no", "void", "scalar")
_TICKERS_PER_REQUEST = 100


class PaperQuotes:
    def __init__(self, client: kalshi.KalshiClient) -> None:
        self.client = client
        self._open: list[MarketQuote] | None = None

    def now(self) -> datetime:
        return timezone.now()

    def refresh(self) -> None:
        """Forget the cached market list (the next ``open_markets()`` reads it again)."""
        self._open = None

    def open_markets(self) -> list[MarketQuote]:
        if self._open is None:
            markets = [
                m
                for m in self.client.iter_markets(status="open", on_error=kalshi.log_skipped)
                if m.status == "active"
            ]
            categories = categories_for(m.ticker for m in markets)
            observed = self.now()
            self._open = [
                quote_from_market(m, category=categories.get(m.ticker, ""), observed_at=observed)
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
        category = categories_for([ticker]).get(ticker, "")
        return quote_from_market(market, category=category, book=book, observed_at=self.now())

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
