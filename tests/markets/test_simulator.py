"""The simulated exchange (paper and replay): fills, fees, cash, netting, settlement, no lookahead."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D
from unittest import mock

from django.test import TestCase

from markets import matching
from markets.exchange import DuplicateOrder, OrderRejected, OrderRequest
from markets.fees import QUADRATIC_WITH_MAKER_FEES, FeeSchedule, order_fee
from markets.models import MarketSnapshot, SimAccount, SimFill, SimOrder
from markets.paper import PaperQuotes
from markets.simulator import MarketOutcome, ReplayQuotes, SimulatedExchange
from tests.base import make_market
from tests.fakes import FakeKalshi
from tests.sim import T0, StaticQuotes, quote

MAKER_FEES = FeeSchedule(fee_type=QUADRATIC_WITH_MAKER_FEES)


class TradingQuotes(StaticQuotes):
    """StaticQuotes plus trade prints the test adds by hand."""

    def __init__(self, *quotes):
        super().__init__(*quotes)
        self.trades: list[matching.Print] = []

    def prints(self, ticker, after, until):
        return [p for p in self.trades if after < p.at <= until]


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


class FillModelTests(TestCase):
    """Issue 12, finding 8: the simulator fills like Kalshi, not better."""

    def setUp(self):
        self.quotes = TradingQuotes(quote(fees=MAKER_FEES))
        self.ex = SimulatedExchange(
            name="paper", quotes=self.quotes, account="t", starting_cash=D("1000")
        )

    def test_500_contracts_cannot_fill_against_a_100_contract_level(self):
        placed = self.ex.place_order(
            order(price="0.42", count="500", time_in_force="immediate_or_cancel")
        )
        self.assertEqual((placed.status, placed.filled_count), ("canceled", D("100")))
        # Nor across several orders at the same instant: the level is used up.
        for n in range(4):
            again = self.ex.place_order(
                order(cid=f"more{n}", count="100", time_in_force="immediate_or_cancel")
            )
            self.assertEqual(again.filled_count, D("0"))
        self.assertEqual(sum(f.count for f in self.ex.fills()), D("100"))
        # A new book (the level shows a different size) offers fresh liquidity.
        self.quotes.by_ticker["MKT"] = quote(depth="50", fees=MAKER_FEES)
        fresh = self.ex.place_order(order(cid="new", count="80", time_in_force="fill_or_kill"))
        self.assertEqual((fresh.status, fresh.filled_count), ("canceled", D("0")))
        self.assertEqual(self.ex.place_order(order(cid="new2", count="50")).filled_count, D("50"))

    def test_a_resting_order_fills_at_its_limit_as_maker_only_after_the_queue_ahead(self):
        # Bid 0.40 shows 100 contracts: our bid at 0.40 queues behind them.
        placed = self.ex.place_order(order(price="0.40", count="10"))
        self.assertEqual((placed.status, placed.filled_count), ("resting", D("0")))
        self.quotes.clock = T0 + timedelta(minutes=1)
        self.quotes.trades.append(matching.Print(self.quotes.clock, D("0.40"), D("60")))
        [still] = self.ex.orders()
        self.assertEqual(still.filled_count, D("0"))  # 40 contracts are still ahead
        self.quotes.clock = T0 + timedelta(minutes=2)
        self.quotes.trades.append(matching.Print(self.quotes.clock, D("0.40"), D("46")))
        [after] = self.ex.orders()
        self.assertEqual((after.status, after.filled_count), ("resting", D("6")))
        [fill] = self.ex.fills()
        self.assertEqual((fill.yes_price, fill.count, fill.is_taker), (D("0.40"), D("6"), False))
        # Maker fee: ceil(0.0175 × 6 × 0.40 × 0.60 = 0.0252) = $0.03.
        self.assertEqual(fill.fee, D("0.03"))
        # The ask then drops through our bid (a new book): we fill at our limit, as maker.
        self.quotes.clock = T0 + timedelta(minutes=3)
        self.quotes.by_ticker["MKT"] = quote(bid="0.36", ask="0.38", fees=MAKER_FEES)
        [done] = self.ex.orders()
        self.assertEqual((done.status, done.filled_count), ("executed", D("10")))
        last = self.ex.fills()[-1]
        self.assertEqual((last.yes_price, last.count, last.is_taker), (D("0.40"), D("4"), False))
        # The fills of one order add up to the order's fee for its total count.
        self.assertEqual(
            sum(f.fee for f in self.ex.fills()),
            order_fee(D("10"), D("0.40"), fees=MAKER_FEES, maker=True),
        )

    def test_trades_before_the_order_or_not_through_its_price_do_not_fill_it(self):
        self.quotes.trades.append(matching.Print(T0, D("0.30"), D("1000")))
        self.ex.place_order(order(price="0.40", count="10"))
        self.quotes.clock = T0 + timedelta(minutes=1)
        self.quotes.trades.append(matching.Print(self.quotes.clock, D("0.41"), D("1000")))
        [resting] = self.ex.orders()
        self.assertEqual(resting.filled_count, D("0"))

    def test_fill_or_kill_is_all_or_nothing_and_immediate_or_cancel_partial(self):
        fok = self.ex.place_order(order(cid="f", count="150", time_in_force="fill_or_kill"))
        self.assertEqual((fok.status, fok.filled_count), ("canceled", D("0")))
        ioc = self.ex.place_order(order(cid="i", count="150", time_in_force="immediate_or_cancel"))
        self.assertEqual((ioc.status, ioc.filled_count), ("canceled", D("100")))
        self.assertEqual(self.ex.orders()[1].remaining_count, D("0"))

    def test_an_order_expires_at_its_expiration_time(self):
        placed = self.ex.place_order(order(price="0.40", expiration_time=T0 + timedelta(minutes=2)))
        self.assertEqual(placed.status, "resting")
        self.quotes.clock = T0 + timedelta(minutes=3)
        # A trade after the expiry does not reach it.
        self.quotes.trades.append(matching.Print(self.quotes.clock, D("0.30"), D("1000")))
        [expired] = self.ex.orders()
        self.assertEqual((expired.status, expired.filled_count), ("canceled", D("0")))

    def test_a_post_only_order_that_would_cross_is_refused(self):
        with self.assertRaises(OrderRejected) as ctx:
            self.ex.place_order(order(price="0.42", post_only=True))
        self.assertEqual(ctx.exception.code, "post_only_cross")
        self.assertEqual(self.ex.fills(), [])
        placed = self.ex.place_order(order(cid="p2", price="0.41", post_only=True))
        self.assertEqual(placed.status, "resting")

    def test_cancel_decreases_to_zero_and_keeps_the_order(self):
        placed = self.ex.place_order(order(price="0.40"))
        self.ex.cancel_order(placed.order_id, "MKT")
        [kept] = self.ex.orders()
        self.assertEqual((kept.status, kept.remaining_count), ("canceled", D("0")))
        with self.assertRaises(OrderRejected) as ctx:
            self.ex.cancel_order(placed.order_id, "MKT")
        self.assertEqual(ctx.exception.code, "not_found")
        self.quotes.clock = T0 + timedelta(minutes=1)
        self.quotes.trades.append(matching.Print(self.quotes.clock, D("0.30"), D("1000")))
        self.assertEqual(self.ex.fills(), [])


class PaperLadderTests(TestCase):
    """Paper fills against every level of Kalshi's book and Kalshi's public trades."""

    TICKER = "KXHIGHNY-26SEP01-T60"

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.add_market(self.TICKER, yes_bid="0.4500", yes_ask="0.4700")
        self.fake.set_orderbook(
            self.TICKER, yes=[("0.45", "10")], no=[("0.53", "4"), ("0.52", "8")]
        )
        self.ex = SimulatedExchange(
            name="paper",
            quotes=PaperQuotes(self.fake.client()),
            account="p",
            starting_cash=D("100"),
        )

    def paper_order(self, cid, price, count, **kw):
        return replace(order(cid=cid, price=price, count=count, **kw), ticker=self.TICKER)

    def test_a_buy_walks_the_levels_and_fills_each_at_its_own_price(self):
        placed = self.ex.place_order(self.paper_order("w", "0.48", "10"))
        self.assertEqual((placed.status, placed.filled_count), ("executed", D("10")))
        fills = SimFill.objects.filter(account__name="p").order_by("id")
        self.assertEqual(
            [(f.yes_price, f.count, f.is_taker) for f in fills],
            [(D("0.47"), D("4"), True), (D("0.48"), D("6"), True)],
        )
        # The same unchanged book has 2 contracts left at 0.48, then nothing within 0.48.
        more = self.ex.place_order(
            self.paper_order("w2", "0.48", "5", time_in_force="immediate_or_cancel")
        )
        self.assertEqual(more.filled_count, D("2"))

    def test_a_resting_paper_order_fills_from_public_trades(self):
        clock = mock.patch("markets.paper.timezone.now", side_effect=lambda: self.fake.now)
        clock.start()
        self.addCleanup(clock.stop)
        placed = self.ex.place_order(self.paper_order("r", "0.46", "5"))
        self.assertEqual(
            (placed.status, placed.filled_count, placed.remaining_count),
            ("resting", D("0"), D("5")),
        )
        self.fake.now += timedelta(minutes=1)
        self.fake.add_trade(self.TICKER, count="3", yes_price="0.46", taker_outcome_side="no")
        self.ex.quotes.refresh()
        [after] = self.ex.orders()
        self.assertEqual(after.filled_count, D("3"))
        [fill] = SimFill.objects.filter(account__name="p")
        self.assertEqual((fill.yes_price, fill.is_taker), (D("0.46"), False))


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


class ReplayFillTests(TestCase):
    """Replay: a snapshot's liquidity is used once; recorded trades fill resting orders."""

    def setUp(self):
        self.market = make_market(
            open_time=T0 - timedelta(hours=1), close_time=T0 + timedelta(hours=5)
        )
        MarketSnapshot.objects.create(
            market=self.market, ts=T0, yes_bid=D("0.40"), yes_ask=D("0.42")
        )
        self.clock = {"now": T0 + timedelta(minutes=1)}
        self.ex = SimulatedExchange(
            name="replay",
            quotes=ReplayQuotes(lambda: self.clock["now"]),
            account="r",
            starting_cash=D("1000"),
        )

    def buy(self, cid, price, count, **kw):
        return self.ex.place_order(
            replace(order(cid=cid, price=price, count=count, **kw), ticker=self.market.ticker)
        )

    def test_a_snapshot_offers_its_depth_once_until_the_next_snapshot(self):
        ioc = "immediate_or_cancel"
        self.assertEqual(self.buy("a", "0.42", "150", time_in_force=ioc).filled_count, D("100"))
        self.clock["now"] = T0 + timedelta(minutes=4)
        self.assertEqual(self.buy("b", "0.42", "50", time_in_force=ioc).filled_count, D("0"))
        MarketSnapshot.objects.create(
            market=self.market, ts=T0 + timedelta(minutes=5), yes_bid=D("0.40"), yes_ask=D("0.42")
        )
        self.clock["now"] = T0 + timedelta(minutes=6)
        self.assertEqual(self.buy("c", "0.42", "50", time_in_force=ioc).filled_count, D("50"))

    def test_a_recorded_trade_through_a_resting_bid_fills_it_as_maker(self):
        placed = self.buy("r", "0.41", "25")  # improves on the 0.40 bid: nothing queued ahead
        self.assertEqual((placed.status, placed.filled_count), ("resting", D("0")))
        # A 5-minute candle (trades only) at 0.41: one recorded print of REPLAY_PRINT_SIZE.
        MarketSnapshot.objects.create(
            market=self.market, ts=T0 + timedelta(minutes=5), last_price=D("0.41")
        )
        self.clock["now"] = T0 + timedelta(minutes=6)
        [after] = self.ex.orders()
        self.assertEqual((after.status, after.filled_count), ("resting", D("10")))
        [fill] = self.ex.fills()
        self.assertEqual((fill.yes_price, fill.is_taker, fill.fee), (D("0.41"), False, D("0")))
