"""A Hypothesis state machine over the order lifecycle on the simulated exchange.

Random sequences of: quote moves (price and displayed depth on each side), clock steps, trading
cycles (some killed at a crash point and restarted by the next cycle), operator flattens,
halts (with or without cancelling), reduce-only, settlements, and lost answers from the
exchange (an order or a cancel that took effect but whose reply never came back).

Checked after every step: our positions equal the sum of our fills; no order and no cancel
ever reaches the exchange twice; nothing the exchange still rests is finished in our books,
and no order of ours is unknown to them; at most one open entry per market. Checked at every
entry the engine decides: the category exposure and cash reserve, counted independently from
the database with every open buy's unfilled quantity at its limit price plus fee, stay within
the limits. At the end, clean cycles resolve every order of unknown outcome.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from unittest import mock

from django.db import transaction
from django.test import TestCase
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from markets.exchange import OrderOutcomeUnknown
from markets.fees import taker_fee
from markets.models import SimAccount, SimOrder
from markets.simulator import MarketOutcome, SimulatedExchange
from tests.base import make_event, make_market
from tests.sim import T0, StaticQuotes, quote
from trading import services, strategy
from trading.audit import trading_state_set
from trading.forecasters import ForecastResult
from trading.models import Fill, Order, Position, RiskSettings, Settlement
from trading.reasons import Reason

MARKETS = ("LA", "LB", "LC")
CRASH_POINTS = (
    "before_send",
    "after_send",
    "after_commit",
    "before_cancel_send",
    "after_cancel_send",
    "after_cancel_commit",
)
OPERATOR_ACTIONS = (
    *([None] * 12),
    *(f"flatten:{t}" for t in MARKETS),
    "active",
    "active",
    "reduce_only",
    "halt:",
    "halt:cancel",
    "settle:LA=yes",
    "settle:LB=no",
)
TERMINAL = {"filled", "canceled", "expired", "rejected", "not_placed", "risk_rejected"}


class Crash(BaseException):
    """The process dies here (BaseException: no ``except Exception`` in the engine sees it)."""


class Bullish:
    name = "bullish"
    needs_skill = False

    def forecast(self, q, *, now):
        return ForecastResult(D("0.80"), D("0.9"), rationale="machine")


class CountingExchange(SimulatedExchange):
    """Counts every order and cancel that reaches it; can lose the reply of either."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.placed: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.lose_place_reply = False
        self.lose_cancel_reply = False
        self.thin_on_arrival = ""

    def place_order(self, request):
        self.placed[request.client_order_id] += 1
        q = self.quotes.by_ticker.get(request.ticker)
        if self.thin_on_arrival and q is not None:
            # Others took most (a third left) or all of the displayed size just before our
            # order arrived.
            left = 3 if self.thin_on_arrival == "third" else 0
            self.quotes.by_ticker[request.ticker] = replace(
                q,
                yes_ask_depth=(q.yes_ask_depth or D(0)) // 3 if left else D(0),
                no_ask_depth=(q.no_ask_depth or D(0)) // 3 if left else D(0),
            )
        result = super().place_order(request)
        if self.lose_place_reply:
            raise OrderOutcomeUnknown("read timeout")
        return result

    def cancel_order(self, order_id, ticker):
        self.cancelled[order_id] += 1
        super().cancel_order(order_id, ticker)
        if self.lose_cancel_reply:
            raise OrderOutcomeUnknown("read timeout")


def _signed(side: str, count: D) -> D:
    return count if side == "yes" else -count


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.savepoint = transaction.savepoint()
        self.patches = []

    @initialize()
    def setup(self):
        RiskSettings.objects.update_or_create(
            pk=1,
            defaults={
                "max_position_pct": D("0.05"),
                "max_category_exposure_pct": D("0.08"),  # binds before the position cap twice
                "cash_reserve_pct": D("0.10"),
                "reanalyse_minutes": 0,
                "entry_order_ttl_seconds": 600,  # entries rest over a few steps, then expire
            },
        )
        event = make_event(category="Test")
        for ticker in MARKETS:
            make_market(event=event, ticker=ticker, close_time=T0 + timedelta(days=2))
        # Thin books: orders rest, fill in parts, expire and get re-priced.
        self.quotes = StaticQuotes(
            *(
                quote(t, bid="0.40", ask="0.42", depth=depth, close_time=T0 + timedelta(days=2))
                for t, depth in zip(MARKETS, ("0", "10", "100"), strict=True)
            )
        )
        self.exchange = CountingExchange(
            name="paper", quotes=self.quotes, account="machine", starting_cash=D("1000")
        )
        self.settled: set[str] = set()
        self.crash_at: str | None = None
        self.entry_checks = 0
        self.cycles = 0
        self.in_run: list[D] = []
        real_decide, real_decide_run = strategy.decide, services.decide_run

        def crash_point(name):
            if name == self.crash_at:
                self.crash_at = None
                raise Crash(name)

        def decide(view, forecast, portfolio, limits, **kw):
            result = real_decide(view, forecast, portfolio, limits, **kw)
            if result.reason == Reason.TRADED:
                self._check_entry(view, result, portfolio, limits)
            return result

        def decide_run(**kw):
            self.in_run = []
            return real_decide_run(**kw)

        self.patches = [
            mock.patch.object(services, "_crash_point", crash_point),
            mock.patch.object(strategy, "decide", decide),
            mock.patch.object(services, "decide_run", decide_run),
        ]
        for patch in self.patches:
            patch.start()

    def teardown(self):
        try:
            if hasattr(self, "exchange"):
                self._settle_down()
        finally:
            for patch in self.patches:
                patch.stop()
            transaction.savepoint_rollback(self.savepoint)

    # -- the one rule: what happens between two checks ----------------------------------------

    @rule(
        minutes=st.integers(0, 6),
        moves=st.lists(
            st.tuples(
                st.sampled_from(MARKETS),
                st.integers(5, 90),
                st.sampled_from(["0", "10", "100"]),
                st.sampled_from(["0", "10", "100"]),
            ),
            max_size=2,
        ),
        operator=st.sampled_from(OPERATOR_ACTIONS),
        crash=st.sampled_from((None, None, None, None, *CRASH_POINTS)),
        thin=st.sampled_from(("", "", "third", "all")),
        lose_place=st.sampled_from((False, False, False, True)),
        lose_cancel=st.sampled_from((False, False, False, True)),
    )
    def step(self, minutes, moves, operator, crash, thin, lose_place, lose_cancel):
        """Time passes and quotes move; maybe an operator acts; then a cycle runs, maybe
        killed at a crash point (the next step's cycle is its restart), maybe with the
        exchange's replies lost or the book thinner when our orders arrive."""
        self.quotes.clock += timedelta(minutes=minutes)
        for ticker, bid, ask_depth, bid_depth in moves:
            self._move(ticker, bid, ask_depth, bid_depth)
        if operator:
            self._operate(operator)
        self.exchange.thin_on_arrival = thin
        self.exchange.lose_place_reply = lose_place
        self.exchange.lose_cancel_reply = lose_cancel
        self.crash_at = crash
        self.cycles += 1
        try:
            services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="paper")
        except Crash:
            pass
        finally:
            self.crash_at = None

    def _move(self, ticker, bid, ask_depth, bid_depth):
        if ticker in self.settled:
            return
        yes_bid = D(bid) / 100
        self.quotes.by_ticker[ticker] = quote(
            ticker,
            bid=str(yes_bid),
            ask=str(yes_bid + D("0.02")),
            yes_ask_depth=D(ask_depth),
            no_ask_depth=D(bid_depth),
            close_time=T0 + timedelta(days=2),
        )

    def _operate(self, action):
        verb, _, arg = action.partition(":")
        if verb == "flatten":
            position = Position.objects.open().filter(market__ticker=arg).first()
            q = self.quotes.by_ticker.get(arg)
            if position is None or q is None:
                return
            market = position.market
            market.yes_bid, market.yes_ask = q.yes_bid, q.yes_ask
            market.save(update_fields=["yes_bid", "yes_ask"])
            try:
                services.position_flatten(position=position, now=self.quotes.clock)
            except ValueError:
                pass
        elif verb == "settle":
            ticker, _, result = arg.partition("=")
            if ticker in self.settled or len(self.settled) == len(MARKETS) - 1:
                return  # keep one market trading
            self.settled.add(ticker)
            self.quotes.by_ticker.pop(ticker)
            self.quotes.results[ticker] = MarketOutcome(result, self.quotes.clock)
        elif verb == "halt":
            services.halt("machine halt", cancel_orders=arg == "cancel")
        else:
            trading_state_set(state=verb, reason="machine", user=None)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def positions_equal_the_sum_of_fills(self):
        if not hasattr(self, "exchange"):
            return
        settled = set(Settlement.objects.values_list("market__ticker", flat=True))
        from_fills: dict[str, D] = {}
        for ticker, side, action, count in Fill.objects.values_list(
            "market__ticker", "side", "action", "count"
        ):
            acquired = side if action == "buy" else strategy.other_side(side)
            from_fills[ticker] = from_fills.get(ticker, D(0)) + _signed(acquired, count)
        books = {
            p.market.ticker: _signed(p.side, p.count)
            for p in Position.objects.open().select_related("market")
        }
        for ticker in MARKETS:
            if ticker in settled:
                self._assert(ticker not in books, f"{ticker}: settled but open")
                continue
            self._assert(
                books.get(ticker, D(0)) == from_fills.get(ticker, D(0)),
                f"{ticker}: position {books.get(ticker)} != fills {from_fills.get(ticker)}",
            )

    @invariant()
    def nothing_is_sent_twice(self):
        if not hasattr(self, "exchange"):
            return
        twice = {k: n for k, n in self.exchange.placed.items() if n > 1}
        self._assert(not twice, f"orders sent twice: {twice}")
        twice = {k: n for k, n in self.exchange.cancelled.items() if n > 1}
        self._assert(not twice, f"cancels sent twice: {twice}")

    @invariant()
    def every_order_is_finished_or_tracked(self):
        if not hasattr(self, "exchange"):
            return
        ours = dict(Order.objects.values_list("client_order_id", "status"))
        for cid, status in SimOrder.objects.values_list("client_order_id", "status"):
            self._assert(cid in ours, f"order {cid} on the exchange is unknown to us")
            if status == "resting":
                self._assert(
                    ours[cid] not in TERMINAL, f"{cid} rests on the exchange but is {ours[cid]}"
                )
        sent = set(self.exchange.placed)
        for cid, status in ours.items():
            if status in ("acked", "partially_filled", "filled"):
                self._assert(cid in sent, f"{cid} is {status} but never reached the exchange")

    @invariant()
    def at_most_one_open_entry_per_market(self):
        if not hasattr(self, "exchange"):
            return
        entries = Counter(
            Order.objects.filter(purpose="open", status__in=Order.OPEN_STATUSES).values_list(
                "market__ticker", flat=True
            )
        )
        self._assert(all(n == 1 for n in entries.values()), f"open entries: {entries}")

    # -- helpers --------------------------------------------------------------------------------

    def _assert(self, condition, message):
        if not condition:
            raise AssertionError(message)

    def _check_entry(self, view, result, portfolio, limits):
        """Independently of the engine: what this entry, the open positions and every open buy
        (its unfilled quantity at the limit price, fee included) commit."""
        self.entry_checks += 1
        on_market = Order.objects.filter(market__ticker=view.ticker, status__in=Order.OPEN_STATUSES)
        self._assert(not on_market.exists(), f"a second order on {view.ticker}")
        self._assert(
            not Position.objects.open().filter(market__ticker=view.ticker).exists(),
            f"an entry on {view.ticker} where a position is open",
        )
        committed = D(0)
        for side, yes_price, count, filled in Order.objects.filter(
            action="buy", status__in=Order.OPEN_STATUSES
        ).values_list("side", "yes_price", "count", "filled_count"):
            price = yes_price if side == "yes" else 1 - yes_price
            remaining = count - filled
            if remaining > 0:
                committed += remaining * price + taker_fee(remaining, price)
        held = sum(Position.objects.open().values_list("cost_basis", flat=True), D(0))
        cost = strategy.order_cost(result.count, result.price)
        exposure = held + committed + sum(self.in_run, D(0)) + cost
        limit = limits.max_category_exposure_pct * portfolio.equity
        self._assert(exposure <= limit, f"category exposure {exposure} > {limit}")
        cash = SimAccount.objects.get(name="machine").cash
        free = cash - committed - sum(self.in_run, D(0)) - cost
        reserve = limits.cash_reserve_pct * portfolio.equity
        self._assert(free >= reserve, f"cash after {free} < reserve {reserve}")
        self.in_run.append(cost)

    def _settle_down(self):
        """Clean restarts: no crash, no lost reply, time past every grace period."""
        self.exchange.lose_place_reply = self.exchange.lose_cancel_reply = False
        self.exchange.thin_on_arrival = ""
        self.crash_at = None
        for _ in range(2):
            self.quotes.clock += services.UNKNOWN_GRACE + timedelta(minutes=1)
            services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="paper")
        unresolved = list(
            Order.objects.filter(status__in=Order.BLOCKING_STATUSES).values_list(
                "client_order_id", "status"
            )
        )
        self._assert(not unresolved, f"unresolved after restarts: {unresolved}")
        self.nothing_is_sent_twice()
        self.every_order_is_finished_or_tracked()
        stuck = Order.objects.filter(
            status__in=Order.RESTING_STATUSES, cancel_requested_at__isnull=False
        )
        self._assert(not stuck.exists(), "a cancel is still in flight after restarts")


class OrderLifecycleMachineTest(TestCase):
    def test_random_lifecycles_keep_the_promises(self):
        run_state_machine_as_test(
            LifecycleMachine,
            settings=settings(
                max_examples=8,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            ),
        )
