"""Backtests: the trading cycle replayed over recorded Kalshi data, in memory and fast.

The backtest runs the engine's own decision code — ``strategy.candidate_filter``,
``strategy.decide``, ``strategy.exit_signal``, ``strategy.apply_fill``,
``strategy.settle_position``, the fee schedule and the same ``Forecaster`` objects — step by
step over a simulated clock, with the replay exchange's rules (``markets.simulator``: quotes
as of the clock, the spread and depth assumptions, settlement an hour after close) and its
matching code (``markets.matching``: liquidity taken from a snapshot stays taken until the
next one, resting orders queue and fill as makers only as recorded trades print through them).
What it leaves out is the database round trips of the live services: the books are kept in
memory, so a year of recorded markets replays in seconds. Parity tests
(tests/trading/test_backtest.py) run the database-backed cycle and this one on the same
recorded slices and require identical decisions, fills and cash.

The cycle mirrors ``trading.services.trading_cycle_run`` step for step:

1. the exchange's tick: resting orders meet the trades recorded since the last cycle (and a
   new snapshot that crosses them), entries past their expiry (``entry_order_ttl_seconds``)
   and orders on closed markets are canceled, what has settled settles;
2. cancels (``services.cancels_run``): every resting entry while reduce-only; an exit resting
   above the bid is cancelled to be re-priced (``strategy.exit_target`` / ``reprice_target``:
   toward the bid, not below the ``exit_floor_pct`` floor of its chain's first price);
3. decide every candidate (one decision per market per ``reanalyse_minutes``, except that a
   market whose entry expired unfilled is decided again at once); resting buys count as
   exposure and committed cash, and a market with a resting entry is skipped
   (``skip_entry_resting``); each buy is a good-till-canceled limit order with its expiry,
   checked and matched as the replay exchange does (what it cannot fill now rests);
4. exits (``services.track_run``) for positions held *before* this cycle: a resting exit is
   left to fill; an exit cancelled to re-price it is replaced at its new target; an exit
   signal cancels an entry remainder on the market and sells at the bid;
5. the books take the fills and snapshot the equity.

The report adds what the stricter fills cost: orders placed, rejected, canceled and still
resting, the fill rate (contracts filled / ordered), the maker share of the filled contracts
and the fees by type (taker, maker).

No lookahead: a quote or trade is visible only from its timestamp on, a result only from its
settlement time. Deterministic: the same data and parameters give the same report.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from markets import matching
from markets.exchange import MarketQuote
from markets.fees import DEFAULT_FEES, order_fee
from markets.money import CENT, MONEY_QUANTUM, ZERO
from markets.recorded import (
    CATEGORY,
    RECORDED_FEES,
    RecordedData,
    close_time,
    open_time,
    recorded_data_parse,
)
from markets.simulator import (
    REPLAY_DEPTH,
    SETTLE_DELAY,
    replay_book,
    replay_prints,
    spread_around,
)
from trading import scoring, strategy
from trading.forecasters import Forecaster, ForecastResult
from trading.reasons import Reason
from trading.services import held_bid, market_view

DEFAULT_STEP = timedelta(minutes=5)
END_MARGIN = timedelta(hours=2)


@dataclass
class _Market:
    ticker: str
    event_ticker: str
    open_time: datetime
    close_time: datetime
    result: str
    times: list[datetime]
    quotes: list[tuple[Decimal | None, Decimal | None, Decimal | None]]  # bid, ask, last

    @property
    def settles_at(self) -> datetime:
        return self.close_time + SETTLE_DELAY


class RecordedBook:
    """Quotes as of a clock from parsed recorded data; never anything after the clock."""

    def __init__(self, data: RecordedData, *, until: datetime | None = None) -> None:
        by_ticker: dict[str, list[tuple[datetime, Any]]] = {}
        for (ticker, ts), quote in data.snapshots.items():
            if until is None or ts <= until:
                by_ticker.setdefault(ticker, []).append((ts, quote))
        self.markets: dict[str, _Market] = {}
        for ticker, spec in sorted(data.markets.items()):
            rows = sorted(by_ticker.get(ticker, []), key=lambda r: r[0])
            settled = spec.result and (
                until is None or close_time(spec.series, spec.event_date) + SETTLE_DELAY <= until
            )
            self.markets[ticker] = _Market(
                ticker=ticker,
                event_ticker=spec.event_ticker,
                open_time=open_time(spec.event_date),
                close_time=close_time(spec.series, spec.event_date),
                result=spec.result if settled else "",
                times=[ts for ts, _ in rows],
                quotes=[(q.yes_bid, q.yes_ask, q.last_price) for _, q in rows],
            )
        self._all_times = sorted({t for m in self.markets.values() for t in m.times})
        self._by_open = sorted(self.markets.values(), key=lambda m: (m.open_time, m.ticker))
        self._open_times = [m.open_time for m in self._by_open]
        self._longest = max(
            (m.close_time - m.open_time for m in self._by_open), default=timedelta(0)
        )
        self._quotes_cache: tuple[datetime | None, list[MarketQuote]] = (None, [])
        self._quote_by_index: dict[str, tuple[int, MarketQuote]] = {}

    @property
    def start(self) -> datetime | None:
        return self._by_open[0].open_time if self._by_open else None

    @property
    def end(self) -> datetime | None:
        closes = [m.close_time for m in self.markets.values()]
        return max(closes) if closes else None

    def open_at(self, now: datetime) -> list[_Market]:
        cut = bisect.bisect_right(self._open_times, now)
        # No market is open longer than the longest one: older openings are all closed.
        first = bisect.bisect_right(self._open_times, now - self._longest)
        return [m for m in self._by_open[first:cut] if m.close_time > now]

    def quote(self, market: _Market, now: datetime) -> MarketQuote | None:
        i = bisect.bisect_right(market.times, now)
        if i == 0:
            return None
        cached = self._quote_by_index.get(market.ticker)
        if cached is not None and cached[0] == i:
            return cached[1]
        quote = self._build_quote(market, i)
        self._quote_by_index[market.ticker] = (i, quote)
        return quote

    def _build_quote(self, market: _Market, i: int) -> MarketQuote:
        bid, ask, last = market.quotes[i - 1]
        if bid is None and ask is None and last is not None:
            bid, ask = spread_around(last)
        return MarketQuote(
            ticker=market.ticker,
            event_ticker=market.event_ticker,
            status="active",
            close_time=market.close_time,
            yes_bid=bid,
            yes_ask=ask,
            last_price=last,
            volume=None,  # recorded data has no volume: unknown, not zero
            category=CATEGORY,
            yes_ask_depth=REPLAY_DEPTH if ask is not None else ZERO,
            no_ask_depth=REPLAY_DEPTH if bid is not None else ZERO,
            observed_at=market.times[i - 1],
            fees=RECORDED_FEES,
        )

    def prints(self, market: _Market, after: datetime, until: datetime) -> list[matching.Print]:
        """The recorded trades in ``(after, until]`` (as ``ReplayQuotes.prints``)."""
        lo = bisect.bisect_right(market.times, after)
        hi = bisect.bisect_right(market.times, until)
        rows = [
            (market.times[i], market.quotes[i][2], None)
            for i in range(lo, hi)
            if market.quotes[i][2] is not None
        ]
        return replay_prints(rows)

    def quotes_at(self, now: datetime) -> list[MarketQuote]:
        if self._quotes_cache[0] != now:
            found = (self.quote(m, now) for m in self.open_at(now))
            quotes = sorted((q for q in found if q is not None), key=lambda q: q.ticker)
            self._quotes_cache = (now, quotes)
        return self._quotes_cache[1]

    def next_time(self, current: datetime, step: timedelta) -> datetime:
        """The replay clock's next tick: one step, or over a gap to the next recorded quote."""
        target = current + step
        if self.quotes_at(target):
            return target
        i = bisect.bisect_right(self._all_times, current)
        if i < len(self._all_times):
            return max(target, self._all_times[i])
        return target


@dataclass
class _Resting:
    ticker: str
    order: matching.Order
    decided_at: datetime | None = None  # the decision the order carries out
    purpose: str = "open"  # open (an entry) | exit
    chain_start: Decimal | None = None  # an exit's first price (side terms) in its chain
    chain_exit: str = ""  # the exit signal the chain follows

    @property
    def side_price(self) -> Decimal:
        return self.order.side_price(self.order.yes_price)


@dataclass
class _Position:
    state: strategy.PositionState
    opened_at: datetime
    close_time: datetime


@dataclass
class BacktestParams:
    forecaster: str = "baseline"
    start: datetime | None = None
    end: datetime | None = None
    step: timedelta = DEFAULT_STEP
    starting_cash: Decimal = Decimal("1000")
    limits: strategy.RiskLimits = field(default_factory=strategy.RiskLimits)


@dataclass
class DecisionRecord:
    at: datetime
    ticker: str
    reason: str
    side: str = ""
    count: Decimal | None = None
    price: Decimal | None = None
    probability: Decimal | None = None
    confidence: Decimal | None = None
    market_price: Decimal | None = None


@dataclass
class FillRecord:
    at: datetime
    ticker: str
    side: str
    action: str
    count: Decimal
    price: Decimal  # per contract of ``side``
    fee: Decimal
    maker: bool = False


@dataclass
class BacktestResult:
    params: BacktestParams
    decisions: list[DecisionRecord]
    fills: list[FillRecord]
    equity: list[tuple[datetime, Decimal]]
    cash: Decimal
    closed: list[strategy.PositionState]
    open_positions: dict[str, _Position]
    settlements: int
    steps: int
    market_steps: int
    outcomes: dict[str, str]
    max_exposure: Decimal = ZERO
    reduce_only_since: datetime | None = None
    elapsed_s: float = 0.0
    orders: dict[str, int] = field(default_factory=dict)
    contracts_ordered: Decimal = ZERO

    def report(self) -> dict[str, Any]:
        """The figures, JSON-ready; nothing depends on the wall clock except ``elapsed_s``."""
        start = self.params.starting_cash
        final_equity = self.equity[-1][1] if self.equity else start
        fees = sum((f.fee for f in self.fills), ZERO)
        filled = sum((f.count for f in self.fills), ZERO)
        made = sum((f.count for f in self.fills if f.maker), ZERO)
        fees_by_type = {
            kind: str(sum((f.fee for f in self.fills if f.maker == maker), ZERO).quantize(CENT))
            for kind, maker in (("taker", False), ("maker", True))
        }
        buys = [f for f in self.fills if f.action == "buy"]
        wins = sum(1 for p in self.closed if p.realized_pnl > 0)
        peak = start
        max_dd = ZERO
        for _, equity in self.equity:
            peak = max(peak, equity)
            if peak > 0:
                max_dd = max(max_dd, (peak - equity) / peak)
        scored = [
            (d.probability, d.market_price, self.outcomes[d.ticker])
            for d in self.decisions
            if d.probability is not None
            and d.market_price is not None
            and self.outcomes.get(d.ticker) in ("yes", "no")
        ]
        probs = [p for p, _, _ in scored]
        market = [m for _, m, _ in scored]
        outcome = [1 if o == "yes" else 0 for _, _, o in scored]
        funnel = Counter(d.reason for d in self.decisions)
        return {
            "data_from": _iso(self.equity[0][0]) if self.equity else None,
            "data_to": _iso(self.equity[-1][0]) if self.equity else None,
            "forecaster": self.params.forecaster,
            "steps": self.steps,
            "market_steps": self.market_steps,
            "decisions": len(self.decisions),
            "trades": len(buys),
            "fills": len(self.fills),
            "fees": str(fees.quantize(MONEY_QUANTUM)),
            "fees_by_type": fees_by_type,
            "orders": dict(self.orders),
            "contracts_ordered": str(self.contracts_ordered),
            "contracts_filled": str(filled),
            "fill_rate": _ratio(filled, self.contracts_ordered),
            "maker_share": _ratio(made, filled),
            "starting_cash": str(start),
            "final_equity": str(final_equity.quantize(MONEY_QUANTUM)),
            "pnl_after_fees": str((final_equity - start).quantize(MONEY_QUANTUM)),
            "max_drawdown": str(max_dd.quantize(Decimal("0.000001"))),
            "max_exposure": str(self.max_exposure.quantize(Decimal("0.000001"))),
            "closed_positions": len(self.closed),
            "open_positions": len(self.open_positions),
            "settlements": self.settlements,
            "daily_loss_breaker_at": _iso(self.reduce_only_since)
            if self.reduce_only_since
            else None,
            "win_rate": str((Decimal(wins) / len(self.closed)).quantize(Decimal("0.0001")))
            if self.closed
            else None,
            "scored_forecasts": len(scored),
            "brier_forecaster": str(scoring.brier(probs, outcome)) if scored else None,
            "brier_market": str(scoring.brier(market, outcome)) if scored else None,
            "funnel": dict(sorted(funnel.items())),
            "calibration": _calibration(probs, outcome) if scored else [],
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _ratio(part: Decimal, whole: Decimal) -> str | None:
    return str((part / whole).quantize(Decimal("0.0001"))) if whole else None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _calibration(probs: list[Decimal], outcomes: list[int]) -> list[dict[str, Any]]:
    table = scoring.reliability_table(probs, outcomes)
    return [_jsonable(row) for row in table]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        value = {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


class Backtest:
    """One backtest run over a ``RecordedBook`` with a forecaster and risk limits."""

    def __init__(
        self,
        book: RecordedBook,
        forecaster: Forecaster,
        params: BacktestParams,
        *,
        on_step: Callable[[datetime], None] | None = None,
    ) -> None:
        self.book = book
        self.forecaster = forecaster
        self.params = params
        self.limits = params.limits
        self.on_step = on_step
        self.cash = params.starting_cash
        self.positions: dict[str, _Position] = {}
        self.closed: list[strategy.PositionState] = []
        self.last_decided: dict[str, datetime] = {}
        self.day_first: dict[Any, Decimal] = {}
        self.decisions: list[DecisionRecord] = []
        self.fills: list[FillRecord] = []
        self.equity: list[tuple[datetime, Decimal]] = []
        self.settlements = 0
        self.market_steps = 0
        self.exposure_peak = ZERO
        self.state = "active"
        self.breaker_tripped_at: datetime | None = None
        self.taken: dict[str, matching.Taken] = {}
        self.resting: list[_Resting] = []
        # An exit cancelled to re-price it, while it is the market's latest order.
        self.repriced: dict[str, _Resting] = {}
        # The last entry per market that ended unfilled (expired or cancelled): its decision
        # time, expiry and why it ended (as the engine's Order row).
        self.ended_entries: dict[str, tuple[datetime | None, datetime | None, str]] = {}
        self.orders_placed = 0
        self.orders_rejected = 0
        self.orders_canceled = 0
        self.contracts_ordered = ZERO

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> BacktestResult:
        started = time.perf_counter()
        steps = 0
        if self.book.start is not None and self.book.end is not None:
            now = self.book.start
            end = self.book.end + END_MARGIN
            if self.params.end is not None:
                end = min(end, self.params.end)
            while True:
                if now >= end:
                    break
                now = self.book.next_time(now, self.params.step)
                if self.params.start is not None and now < self.params.start:
                    continue
                if self.params.end is not None and now > self.params.end:
                    break
                self.cycle(now)
                steps += 1
                if self.on_step:
                    self.on_step(now)
        result = BacktestResult(
            params=self.params,
            decisions=self.decisions,
            fills=self.fills,
            equity=self.equity,
            cash=self.cash,
            closed=self.closed,
            open_positions=self.positions,
            settlements=self.settlements,
            steps=steps,
            market_steps=self.market_steps,
            outcomes={t: m.result for t, m in self.book.markets.items() if m.result},
            max_exposure=self.exposure_peak,
            reduce_only_since=self.breaker_tripped_at,
            elapsed_s=time.perf_counter() - started,
            orders={
                "placed": self.orders_placed,
                "rejected": self.orders_rejected,
                "canceled": self.orders_canceled,
                "resting_at_end": len(self.resting),
            },
            contracts_ordered=self.contracts_ordered,
        )
        return result

    def cycle(self, now: datetime) -> None:
        quotes = self.book.quotes_at(now)
        by_ticker = {q.ticker: q for q in quotes}
        # The exchange's tick: resting orders meet the trades since the last cycle, then
        # what has settled settles.
        self._tick(now, by_ticker)
        self._settle(now)
        self._cancels(now, by_ticker)
        self.market_steps += len(quotes)
        day = now.date()
        # The database engine reads the day's first equity snapshot: during the day's first
        # cycle that is this cycle's opening equity, afterwards that cycle's closing equity.
        opening = self.day_first.get(day, self._equity(by_ticker).quantize(MONEY_QUANTUM))
        if self.state == "active" and strategy.daily_loss_breached(
            self._portfolio(by_ticker, opening), self.limits
        ):
            self.state = "reduce_only"  # as the engine's breaker: until an operator resumes
            self.breaker_tripped_at = now
        held_before = dict(self.positions)
        self._decide(now, quotes, by_ticker, opening)
        self._exits(now, held_before, by_ticker)
        end_equity = self._equity(by_ticker).quantize(MONEY_QUANTUM)
        self.day_first.setdefault(day, end_equity)
        self.equity.append((now, end_equity))
        if end_equity > 0:
            invested = sum((p.state.cost_basis for p in self.positions.values()), ZERO)
            self.exposure_peak = max(self.exposure_peak, invested / end_equity)

    # -- steps --------------------------------------------------------------------------------

    def _settle(self, now: datetime) -> None:
        for ticker in sorted(self.positions):
            market = self.book.markets[ticker]
            if market.result and market.settles_at <= now:
                position = self.positions.pop(ticker)
                payout = strategy.settlement_payout(position.state, market.result)
                state, _ = strategy.settle_position(position.state, market.result)
                self.cash += payout.quantize(MONEY_QUANTUM)
                self.closed.append(state)
                self.settlements += 1
                mine = [r for r in self.resting if r.ticker == ticker]
                if mine:
                    self.orders_canceled += len(mine)
                    self.resting = [r for r in self.resting if r.ticker != ticker]

    def _equity(self, quotes: dict[str, MarketQuote]) -> Decimal:
        equity = self.cash
        for ticker, position in self.positions.items():
            bid = held_bid(position.state.side, quotes.get(ticker))
            equity += position.state.count * bid if bid is not None else position.state.cost_basis
        return equity

    def _portfolio(
        self, quotes: dict[str, MarketQuote], opening: Decimal
    ) -> strategy.PortfolioView:
        """As ``services.portfolio_view``: the unfilled remainder of every resting buy counts at
        its limit price plus its fee toward the category's exposure and ``committed``."""
        equity = self._equity(quotes)
        exposure: dict[str, Decimal] = {}
        for position in self.positions.values():
            exposure[CATEGORY] = exposure.get(CATEGORY, ZERO) + position.state.cost_basis
        committed = ZERO
        for entry in self.resting:
            order = entry.order
            if order.action != "buy" or order.remaining <= 0:
                continue
            quote = quotes.get(entry.ticker)
            fee = order_fee(
                order.remaining, entry.side_price, fees=quote.fees if quote else DEFAULT_FEES
            )
            cost = order.remaining * entry.side_price + fee
            committed += cost
            exposure[CATEGORY] = exposure.get(CATEGORY, ZERO) + cost
        return strategy.PortfolioView(
            cash=self.cash,
            equity=equity,
            open_positions=len(self.positions),
            open_tickers=frozenset(self.positions),
            category_exposure=exposure,
            daily_pnl=equity - opening,
            pending_tickers=frozenset(r.ticker for r in self.resting),
            trading_state=self.state,
            resting_entry_tickers=frozenset(r.ticker for r in self.resting if r.purpose == "open"),
            committed=committed,
        )

    def _decide(
        self, now: datetime, quotes: list[MarketQuote], by_ticker, opening: Decimal
    ) -> None:
        limits = self.limits
        portfolio = self._portfolio(by_ticker, opening)
        window = timedelta(minutes=int(limits.reanalyse_minutes))
        buys: list[tuple[MarketQuote, strategy.DecisionResult]] = []
        for quote in quotes:
            last = self.last_decided.get(quote.ticker)
            if last is not None and now - last < window and not self._entry_ended(quote, last, now):
                continue
            view = market_view(quote, limits)
            reason = strategy.candidate_filter(view, portfolio, limits, now=now)
            self.last_decided[quote.ticker] = now
            if reason is not None:
                self.decisions.append(DecisionRecord(now, quote.ticker, reason.value))
                continue
            answer = self.forecaster.forecast(quote, now=now)
            market_price = quote.mid.quantize(Decimal("0.0001")) if quote.mid is not None else None
            valid = answer.valid and answer.probability is not None
            if answer.budget_exhausted:
                result = strategy.DecisionResult(reason=Reason.AI_BUDGET_EXHAUSTED)
            else:
                result = strategy.decide(
                    view,
                    strategy.ForecastView(
                        probability=answer.probability if valid else None,
                        confidence=answer.confidence if valid else None,
                        forecaster=self.forecaster.name,
                        valid=valid,
                    ),
                    portfolio,
                    limits,
                    now=now,
                )
            self.decisions.append(
                DecisionRecord(
                    now,
                    quote.ticker,
                    result.reason.value,
                    side=result.side or "",
                    count=result.count if result.reason == Reason.TRADED else None,
                    price=result.price,
                    probability=answer.probability if valid else None,
                    confidence=answer.confidence if valid else None,
                    market_price=market_price,
                )
            )
            if result.reason == Reason.TRADED:
                buys.append((quote, result))
                cost = result.cost
                assert cost is not None  # set with every TRADED result
                exposure = dict(portfolio.category_exposure)
                exposure[CATEGORY] = exposure.get(CATEGORY, ZERO) + cost
                portfolio = replace(
                    portfolio,
                    cash=portfolio.cash - cost,
                    category_exposure=exposure,
                    pending_tickers=portfolio.pending_tickers | {quote.ticker},
                )
        for quote, result in buys:
            self._place(now, quote, result.side, "buy", result.count, result.price)

    def _entry_ended(self, quote: MarketQuote, last: datetime, now: datetime) -> bool:
        """An entry that expired (or was cancelled at its expiry) does not stand: the market is
        decided again, unless a later decision stands (as ``services.decide_run``)."""
        ended = self.ended_entries.get(quote.ticker)
        if ended is None or ended[0] != last:
            return False
        _, expires_at, why = ended
        return why == "entry_ttl" or (expires_at is not None and expires_at <= now)

    def _cancel(self, entry: _Resting, reason: str) -> None:
        """A cancel the replay exchange confirms at once: the remainder stops resting."""
        self.resting = [r for r in self.resting if r is not entry]
        self.orders_canceled += 1
        if entry.purpose == "open":
            self.ended_entries[entry.ticker] = (entry.decided_at, entry.order.expires_at, reason)
        elif reason == "reprice":
            self.repriced[entry.ticker] = entry

    def _cancels(self, now: datetime, by_ticker: dict[str, MarketQuote]) -> None:
        """As ``services.cancels_run``: entries past their expiry and every entry while
        reduce-only; an exit resting above the bid is cancelled to be re-priced."""
        for entry in list(self.resting):
            if entry.purpose == "open":
                if self.state == "reduce_only":
                    self._cancel(entry, "reduce_only")
                elif entry.order.expires_at is not None and entry.order.expires_at <= now:
                    self._cancel(entry, "entry_ttl")
                continue
            position = self.positions.get(entry.ticker)
            bid = held_bid(position.state.side, by_ticker.get(entry.ticker)) if position else None
            if position is None or bid is None or entry.chain_start is None:
                continue
            target = strategy.exit_target(
                self._view(entry.ticker, position, bid),
                entry.chain_start,
                entry.chain_exit,
                self.limits,
                now=now,
            )
            if strategy.reprice_target(target, entry.side_price) is not None:
                self._cancel(entry, "reprice")

    def _view(self, ticker: str, position: _Position, bid: Decimal) -> strategy.PositionView:
        return strategy.PositionView(
            ticker=ticker,
            side=position.state.side or "",
            count=position.state.count,
            avg_price=position.state.cost_basis / position.state.count,
            opened_at=position.opened_at,
            close_time=position.close_time,
            bid=bid,
        )

    def _exits(self, now: datetime, held_before: dict[str, _Position], by_ticker) -> None:
        """As ``services.track_run``: every position is evaluated; one with a resting exit
        waits for it (the cancels step re-priced it if it rested above the bid); an exit
        cancelled to re-price it is replaced at the new target; an exit signal cancels an entry
        remainder on the market and sells at the bid."""
        for ticker in sorted(held_before):
            position = self.positions.get(ticker)
            quote = by_ticker.get(ticker)
            bid = held_bid(position.state.side, quote) if position else None
            if position is None or quote is None or bid is None:
                continue
            view = self._view(ticker, position, bid)
            signal = strategy.exit_signal(view, self.limits, now=now)
            if any(r.ticker == ticker and r.order.action == "sell" for r in self.resting):
                continue  # a resting exit: it fills where it is or is re-priced next cycle
            replaced = self.repriced.get(ticker)
            if replaced is not None and replaced.order.side == position.state.side:
                assert replaced.chain_start is not None
                target = strategy.exit_target(
                    view, replaced.chain_start, replaced.chain_exit, self.limits, now=now
                )
                if target is not None:
                    self._exit(now, quote, position, target.price, target.chain_start, target.exit)
                continue
            if signal is None:
                continue
            for entry in [r for r in self.resting if r.ticker == ticker]:
                self._cancel(entry, "exit")  # an entry remainder must not add more
            self._exit(now, quote, position, signal.price, signal.price, signal.reason.value)

    def _exit(
        self,
        now: datetime,
        quote: MarketQuote,
        position: _Position,
        price: Decimal,
        chain_start: Decimal,
        chain_exit: str,
    ) -> None:
        side, count = position.state.side or "", position.state.count
        self.last_decided[quote.ticker] = now
        self.decisions.append(
            DecisionRecord(
                now, quote.ticker, Reason.EXIT.value, side=side, count=count, price=price
            )
        )
        self._place(
            now,
            quote,
            side,
            "sell",
            count,
            price,
            purpose="exit",
            chain=(chain_start, chain_exit),
        )

    # -- orders: the replay exchange's matching (markets.matching), in memory ------------------

    def _taken(self, ticker: str) -> matching.Taken:
        return self.taken.setdefault(ticker, matching.Taken())

    def _place(
        self,
        now: datetime,
        quote: MarketQuote,
        side: str,
        action: str,
        count: Decimal,
        side_price: Decimal,
        *,
        purpose: str = "open",
        chain: tuple[Decimal, str] | None = None,
    ) -> None:
        """Send one limit order as the replay exchange takes it: the same checks, the same
        matcher; a remainder rests (good-till-canceled, like the engine's orders; an entry
        until its expiry, ``entry_order_ttl_seconds`` after it was sent)."""
        self.repriced.pop(quote.ticker, None)  # the market's latest order is this one now
        self.orders_placed += 1
        self.contracts_ordered += count
        position = self.positions.get(quote.ticker)
        held = position.state.count if position and position.state.side == side else ZERO
        if action == "buy":
            worst = count * side_price + order_fee(count, side_price, fees=quote.fees, at=now)
            if worst > self.cash:
                self.orders_rejected += 1
                return
        elif count > held:
            self.orders_rejected += 1  # reduce-only: never more than the position
            return
        yes_price = side_price if side == "yes" else 1 - side_price
        order = matching.Order(side, action, yes_price, count)
        if purpose == "open":
            order.expires_at = now + timedelta(seconds=int(self.limits.entry_order_ttl_seconds))
        own_ahead = sum(
            (
                r.order.remaining
                for r in self.resting
                if r.ticker == quote.ticker
                and r.order.yes_price == yes_price
                and r.order.is_bid == order.is_bid
            ),
            ZERO,
        )
        fills, status = matching.place(
            order,
            replay_book(quote),
            self._taken(quote.ticker),
            fees=quote.fees,
            at=now,
            cap=held if action == "sell" else None,
            budget=self.cash if action == "buy" else None,
            own_ahead=own_ahead,
        )
        for fill in fills:
            self._book_fill(now, quote, order, fill)
        if status == matching.RESTING:
            chain_start, chain_exit = chain or (None, "")
            self.resting.append(
                _Resting(quote.ticker, order, now, purpose, chain_start, chain_exit)
            )

    def _book_fill(
        self, now: datetime, quote: MarketQuote, order: matching.Order, fill: matching.Fill
    ) -> None:
        side, action = order.side, order.action
        side_price = order.side_price(fill.yes_price)
        position = self.positions.get(quote.ticker)
        state = position.state if position else strategy.PositionState()
        new, _ = strategy.apply_fill(state, side, action, fill.count, side_price, fill.fee)
        self.cash += (fill.count if action == "sell" else -fill.count) * side_price - fill.fee
        self.fills.append(
            FillRecord(
                now, quote.ticker, side, action, fill.count, side_price, fill.fee, fill.maker
            )
        )
        if new.is_open:
            opened = position.opened_at if position else now
            self.positions[quote.ticker] = _Position(new, opened, quote.close_time)
        else:
            self.positions.pop(quote.ticker, None)
            self.closed.append(new)

    def _tick(self, now: datetime, by_ticker: dict[str, MarketQuote]) -> None:
        """Resting orders fill as recorded trades print through them (the exchange's tick)."""
        if not self.resting:
            return
        keep: list[_Resting] = []
        for ticker in sorted({r.ticker for r in self.resting}):
            mine = [r for r in self.resting if r.ticker == ticker]
            quote = by_ticker.get(ticker)
            if quote is None:
                self.orders_canceled += len(mine)  # the market closed
                continue
            states = [r.order for r in mine]
            since = min((o.seen_until for o in states if o.seen_until), default=now)
            reached = matching.reach(
                states,
                self.book.prints(self.book.markets[ticker], since, now),
                replay_book(quote),
                self._taken(ticker),
                at=now,
            )
            for entry, volume in zip(mine, reached, strict=True):
                order = entry.order
                if volume > 0:
                    position = self.positions.get(ticker)
                    held = (
                        position.state.count
                        if position and position.state.side == order.side
                        else ZERO
                    )
                    fill = matching.fill_resting(
                        order,
                        volume,
                        fees=quote.fees,
                        at=now,
                        cap=held if order.action == "sell" else None,
                        budget=self.cash if order.action == "buy" else None,
                    )
                    if fill is not None:
                        self._book_fill(now, quote, order, fill)
                if order.remaining <= 0:
                    continue
                if matching.expired(order, now):
                    # The exchange drops it at its expiry; it reads back as canceled.
                    self.orders_canceled += 1
                    if entry.purpose == "open":
                        self.ended_entries[ticker] = (entry.decided_at, order.expires_at, "")
                    continue
                keep.append(entry)
        self.resting = keep


class RecordedAnswers:
    """A forecaster that replays the answers of an earlier run (what-if runs cost nothing)."""

    def __init__(self, name: str, answers: dict[tuple[str, str], tuple[str, str]]) -> None:
        self.name = name
        self.answers = answers

    def forecast(self, quote: MarketQuote, *, now: datetime) -> ForecastResult:
        found = self.answers.get((quote.ticker, now.isoformat()))
        if found is None:
            return ForecastResult(None, None, valid=False, error="no recorded answer")
        return ForecastResult(Decimal(found[0]), Decimal(found[1]), rationale="recorded")


def recorded_answers(decisions: Iterable[DecisionRecord]) -> dict[tuple[str, str], tuple[str, str]]:
    return {
        (d.ticker, d.at.isoformat()): (str(d.probability), str(d.confidence))
        for d in decisions
        if d.probability is not None and d.confidence is not None
    }


def backtest_run(
    *,
    data_dir: Path,
    forecaster: Forecaster,
    params: BacktestParams,
    on_step: Callable[[datetime], None] | None = None,
    data: RecordedData | None = None,
) -> BacktestResult:
    data = data or recorded_data_parse(data_dir=data_dir)
    book = RecordedBook(data)
    return Backtest(book, forecaster, params, on_step=on_step).run()
