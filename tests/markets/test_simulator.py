"""The simulated exchange (paper and replay): fills, fees, cash, netting, settlement, no lookahead."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

from django.test import TestCase

from markets.exchange import DuplicateOrder, OrderRejected, OrderRequest
from markets.models import MarketSnapshot, SimAccount, SimOrder
from markets.simulator import MarketOutcome, ReplayQuotes, SimulatedExchange
from tests.base import make_market
from tests.sim import T0, StaticQuotes, quote


def order(cid="c1", side="yes", action="buy", price="0.42", count="10", **kw):
    return OrderRequest(
        client_order_id=cid,
        ticker="MKT",
        side=side,
        action=action,
        yes_price=D(price),
        count=D(count),
        **kw,
    )


class SimulatedExchangeTests(TestCase):
    def setUp(self):
        self.quotes = StaticQuotes(quote())
        self.ex = SimulatedExchange(
            name="paper", quotes=self.quotes, account="t", starting_cash=D("100")
        )

    def test_a_marketable_buy_fills_at_the_ask_with_the_taker_fee(self):
        placed = self.ex.place_order(order(price="0.45"))
        self.assertEqual(placed.status, "executed")
        [fill] = self.ex.fills()
        self.assertEqual((fill.count, fill.yes_price), (D("10"), D("0.42")))
        # ceil(0.07 * 10 * 0.42 * 0.58 = 0.17052) = $0.18
        self.assertEqual(fill.fee, D("0.18"))
        self.assertEqual(self.ex.balance(), D("100") - D("4.20") - D("0.18"))
        [position] = self.ex.positions()
        self.assertEqual(position.position, D("10"))

    def test_depth_limits_the_fill_and_the_rest_rests_then_fills(self):
        self.quotes.by_ticker["MKT"] = quote(depth="4")
        placed = self.ex.place_order(order())
        self.assertEqual((placed.status, placed.filled_count), ("resting", D("4")))
        self.quotes.by_ticker["MKT"] = quote(depth="100")
        [after] = self.ex.orders()
        self.assertEqual((after.status, after.filled_count), ("executed", D("10")))
        self.assertEqual(len(self.ex.fills()), 2)

    def test_a_limit_below_the_ask_rests(self):
        placed = self.ex.place_order(order(price="0.30"))
        self.assertEqual((placed.status, placed.filled_count), ("resting", D("0")))
        self.assertEqual(self.ex.balance(), D("100"))

    def test_a_buy_no_is_priced_from_the_yes_bid(self):
        # Buy NO = sell YES at the bid 0.40: NO costs 0.60.
        self.ex.place_order(order(side="no", price="0.40"))
        [fill] = self.ex.fills()
        self.assertEqual(fill.yes_price, D("0.40"))
        self.assertEqual(self.ex.balance(), D("100") - D("6.00") - D("0.17"))
        [position] = self.ex.positions()
        self.assertEqual(position.position, D("-10"))

    def test_buying_no_against_a_yes_long_nets_and_never_shows_both(self):
        self.ex.place_order(order(cid="a", price="0.42"))
        cash = self.ex.balance()
        self.ex.place_order(order(cid="b", side="no", price="0.40", count="4"))
        [position] = self.ex.positions()
        self.assertEqual(position.position, D("6"))
        # Buying 4 NO at 0.60 then redeeming 4 pairs at $1 = selling 4 YES at 0.40.
        fee = D("0.07")  # ceil(0.07*4*0.6*0.4 = 0.0672)
        self.assertEqual(self.ex.balance(), cash + D("1.60") - fee)

    def test_an_open_client_order_id_is_refused_as_a_duplicate(self):
        self.ex.place_order(order(price="0.30"))
        with self.assertRaises(DuplicateOrder):
            self.ex.place_order(order(price="0.30"))
        self.assertEqual(SimOrder.objects.count(), 1)

    def test_an_order_beyond_the_cash_is_rejected(self):
        with self.assertRaises(OrderRejected) as ctx:
            self.ex.place_order(order(count="1000"))
        self.assertEqual(ctx.exception.code, "available_balance_too_low")

    def test_max_cost_caps_a_buy(self):
        with self.assertRaises(OrderRejected):
            self.ex.place_order(order(max_cost=D("4.00")))

    def test_a_reduce_only_sell_cannot_exceed_the_position(self):
        self.ex.place_order(order(cid="a", count="3", price="0.45"))
        with self.assertRaises(OrderRejected):
            self.ex.place_order(
                order(cid="b", action="sell", price="0.40", count="5", reduce_only=True)
            )

    def test_settlement_pays_a_dollar_per_winning_contract(self):
        self.ex.place_order(order(price="0.45"))
        cash = self.ex.balance()
        self.quotes.results["MKT"] = MarketOutcome("yes", T0 + timedelta(hours=2))
        self.assertEqual(self.ex.balance(), cash)  # not yet: the clock is before settlement
        self.quotes.clock = T0 + timedelta(hours=3)
        self.assertEqual(self.ex.balance(), cash + D("10"))
        [settlement] = self.ex.settlements()
        self.assertEqual((settlement.result, settlement.revenue), ("yes", D("10")))
        self.assertEqual(self.ex.positions(), [])

    def test_void_refunds_the_cost(self):
        self.ex.place_order(order(price="0.45"))
        cash = self.ex.balance()
        self.quotes.results["MKT"] = MarketOutcome("void", T0)
        self.assertEqual(self.ex.balance(), cash + D("4.20"))

    def test_a_losing_no_position_settles_at_zero(self):
        self.ex.place_order(order(side="no", price="0.40"))
        cash = self.ex.balance()
        self.quotes.results["MKT"] = MarketOutcome("yes", T0)
        self.assertEqual(self.ex.balance(), cash)
        self.assertEqual(SimAccount.objects.get(name="t").positions.get().realized_pnl, D("-6.00"))

    def test_a_closed_market_refuses_orders(self):
        with self.assertRaises(OrderRejected):
            self.ex.place_order(replace(order(), ticker="GONE"))


class ReplayQuotesTests(TestCase):
    def setUp(self):
        self.market = make_market(
            open_time=T0 - timedelta(hours=1),
            close_time=T0 + timedelta(hours=5),
            result="yes",
            settlement_value=D("1"),
        )
        for minutes, last in ((0, "0.30"), (30, "0.50"), (60, "0.70")):
            MarketSnapshot.objects.create(
                market=self.market, ts=T0 + timedelta(minutes=minutes), last_price=D(last)
            )

    def test_it_never_shows_a_snapshot_from_after_the_clock(self):
        clock = {"now": T0 + timedelta(minutes=45)}
        quotes = ReplayQuotes(lambda: clock["now"])
        [q] = quotes.open_markets()
        self.assertEqual(q.last_price, D("0.50"))
        self.assertEqual((q.yes_bid, q.yes_ask), (D("0.49"), D("0.51")))
        self.assertLessEqual(q.observed_at, clock["now"])

    def test_a_market_is_not_open_before_its_first_snapshot_or_after_close(self):
        self.assertEqual(ReplayQuotes(lambda: T0 - timedelta(minutes=1)).open_markets(), [])
        self.assertEqual(ReplayQuotes(lambda: T0 + timedelta(hours=6)).open_markets(), [])

    def test_the_result_is_hidden_until_settlement(self):
        before = ReplayQuotes(lambda: T0 + timedelta(hours=5, minutes=30))
        self.assertEqual(before.outcomes([self.market.ticker]), {})
        after = ReplayQuotes(lambda: T0 + timedelta(hours=6, minutes=1))
        self.assertEqual(after.outcomes([self.market.ticker])[self.market.ticker].result, "yes")
