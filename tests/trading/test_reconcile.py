"""Reconcile against an exchange that moves while it is read, and against odd account data.

Live mode through the real client on ``FakeKalshi`` (faked at the HTTP transport): fills that
land between reconcile's reads, fills and positions on markets not in the database, foreign
orders (FOREIGN_ORDERS), and failures, whose reason must reach the trading state and the run.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.test import TestCase, override_settings
from django.utils import timezone

from markets import kalshi
from markets.exchange_kalshi import KalshiExchange
from markets.models import Market
from markets.services import market_sync
from markets.simulator import SimulatedExchange
from tests.base import make_decision
from tests.fakes import FakeKalshi
from tests.forecasters import Bullish
from tests.sim import StaticQuotes, quote
from trading import services
from trading.models import Fill, JobRun, Order, Position, TradingState

TICKER = "KXDESK-26SEP01-T1"
OTHER = "KXOTHER-26SEP01-T1"  # on the exchange, never synced into our database
POSITIONS = "GET /portfolio/positions"
FILLS = "GET /portfolio/fills"


@override_settings(TRADING_MODE="live")
class LiveReconcileTestCase(TestCase):
    """Our entry on TICKER: 1 contract filled as taker, the rest resting on the book."""

    def setUp(self):
        self.now = timezone.now()
        fake = self.fake = FakeKalshi()
        fake.now = self.now
        close = self.now + timedelta(days=3)
        fake.add_market(TICKER, yes_bid="0.3000", yes_ask="0.3200", volume="5000", close_time=close)
        self.client_ = fake.client()
        market_sync(client=self.client_)
        fake.add_market(OTHER, yes_bid="0.5000", yes_ask="0.5200", close_time=close)
        self.exchange = KalshiExchange(self.client_)
        TradingState.objects.update_or_create(pk=1, defaults={"live_armed": True})
        services.decide_run(exchange=self.exchange, forecaster=Bullish(), mode="live", now=self.now)
        # Only one contract is offered when the order arrives: the remainder rests.
        fake.set_orderbook(TICKER, yes=[("0.3000", "100")], no=[("0.6800", "1")])
        services.execute_run(
            exchange=self.exchange, mode="live", now=self.now, reconciled_at=timezone.now()
        )
        self.reconcile()
        self.order = Order.objects.get()
        self.assertEqual(self.order.status, Order.Status.PARTIALLY_FILLED)
        self.assertGreater(self.order.count, 2)
        self.assertEqual(self.position_count(), D("1"))
        self.assertEqual(self.state().state, TradingState.State.ACTIVE)

    def reconcile(self):
        return services.reconcile_run(exchange=self.exchange, mode="live", now=self.now)

    def position_count(self, ticker=TICKER):
        position = Position.objects.open().filter(market__ticker=ticker).first()
        return position.count if position else D("0")

    def state(self):
        return TradingState.load()

    def fill_ours_later(self, count="1"):
        """A counterparty takes part of our resting entry."""
        return lambda: self.fake.fill_resting(self.order.exchange_order_id, count)

    def foreign_trade(self, ticker, *, price="0.5200", count="3", client_order_id=None):
        """Someone else trades on the account: an order without our client_order_id."""
        request = kalshi.OrderRequest(
            ticker=ticker,
            side="bid",
            count=D(count),
            price=D(price),
            client_order_id=client_order_id,
        )
        return self.client_.create_order(request).order_id


class RaceTests(LiveReconcileTestCase):
    def test_a_fill_landing_after_the_fills_read_does_not_halt(self):
        self.fake.after_next(FILLS, self.fill_ours_later())
        self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        # The next reconcile books it.
        self.reconcile()
        self.assertEqual(self.position_count(), D("2"))
        self.assertEqual(self.state().state, TradingState.State.ACTIVE)

    def test_a_fill_landing_after_the_positions_read_is_re_read_and_does_not_halt(self):
        self.fake.after_next(POSITIONS, self.fill_ours_later())
        before = self.fake.count(POSITIONS)
        report = self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.assertEqual(self.position_count(), D("2"))
        self.assertEqual(self.fake.count(POSITIONS) - before, 2)
        self.assertEqual(report.counts.get("positions_reread"), 1)

    def test_a_fill_landing_between_every_pair_of_reads_does_not_halt(self):
        for route in ("GET /portfolio/orders", POSITIONS, FILLS, "GET /portfolio/settlements"):
            self.fake.after_next(route, self.fill_ours_later())
        self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.reconcile()
        self.assertEqual(self.position_count(), D("5"))
        self.assertEqual(self.state().state, TradingState.State.ACTIVE)

    def test_a_settlement_landing_after_the_positions_read_does_not_halt(self):
        self.fake.after_next(POSITIONS, lambda: self.fake.settle_market(TICKER, "yes"))
        report = self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.assertEqual(report.counts.get("settlements"), 1)
        self.assertFalse(Position.objects.open().exists())

    def test_a_mismatch_that_persists_across_the_re_read_halts_with_the_reason(self):
        self.fake.positions[TICKER].position += D("5")  # the exchange holds 6, we booked 1
        before = self.fake.count(POSITIONS)
        report = self.reconcile()
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn(f"position mismatch on {TICKER}: exchange 6.00, ours 1.00", state.reason)
        self.assertEqual(self.fake.count(POSITIONS) - before, 2)
        self.assertEqual(report.counts.get("halted"), 1)


class UnknownMarketTests(LiveReconcileTestCase):
    def vanish_from_the_orders_list(self, order_id):
        """The order has moved to Kalshi's historical orders: only its fill is still listed."""
        del self.fake.orders[order_id]

    def test_a_fill_on_a_market_not_in_the_database_syncs_it_and_books_the_fill(self):
        self.vanish_from_the_orders_list(self.foreign_trade(OTHER))
        self.assertFalse(Market.objects.filter(ticker=OTHER).exists())
        report = self.reconcile()
        market = Market.objects.get(ticker=OTHER)
        self.assertEqual(market.event.event_ticker, "KXOTHER-26SEP01")
        self.assertEqual(market.event.series.ticker, "KXOTHER")
        fill = Fill.objects.get(market=market)
        self.assertEqual((fill.count, fill.yes_price, fill.order), (D("3"), D("0.52"), None))
        self.assertEqual(self.position_count(OTHER), D("3"))
        self.assertEqual(report.counts.get("markets_fetched"), 1)
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)

    def test_a_market_the_exchange_cannot_give_halts_with_the_reason_instead_of_crashing(self):
        self.vanish_from_the_orders_list(self.foreign_trade(OTHER))
        del self.fake.markets[OTHER]  # GET /markets/OTHER now answers 404
        self.reconcile()
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn(f"market {OTHER}", state.reason)
        self.assertIn("404", state.reason)
        self.assertFalse(Fill.objects.filter(exchange_order_id__isnull=False, order=None).exists())
        # What could be booked was booked: our own market is untouched.
        self.assertEqual(self.position_count(), D("1"))


class ForeignOrderTests(LiveReconcileTestCase):
    def test_halt_mode_halts_on_a_foreign_order(self):
        self.foreign_trade(TICKER, price="0.1000", client_order_id="manual-1")
        self.reconcile()
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn("foreign order", state.reason)
        self.assertIn(TICKER, state.reason)

    @override_settings(FOREIGN_ORDERS="ignore")
    def test_ignore_mode_does_not_halt_on_a_foreign_order(self):
        self.foreign_trade(TICKER, price="0.1000", client_order_id="manual-1")  # it rests
        report = self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.assertEqual(report.counts.get("orders_foreign"), 1)
        self.assertEqual(Order.objects.count(), 1)

    @override_settings(FOREIGN_ORDERS="ignore")
    def test_ignore_mode_leaves_foreign_fills_and_positions_elsewhere_alone(self):
        self.foreign_trade(OTHER)  # fills at once: a foreign fill and position on OTHER
        report = self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.assertFalse(Fill.objects.filter(market__ticker=OTHER).exists())
        self.assertFalse(Market.objects.filter(ticker=OTHER).exists())
        self.assertEqual(self.fake.count("GET /markets/{ticker}"), 0)
        self.assertEqual(report.counts.get("positions_foreign"), 1)
        # And the desk's own books go on as before.
        self.fake.after_next(FILLS, self.fill_ours_later())
        self.reconcile()
        self.reconcile()
        self.assertEqual(self.position_count(), D("2"))
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)

    @override_settings(FOREIGN_ORDERS="ignore")
    def test_ignore_mode_still_halts_when_a_foreign_fill_moves_a_position_of_ours(self):
        self.fake.set_orderbook(TICKER, yes=[("0.3000", "100")], no=[("0.6800", "5")])
        self.foreign_trade(TICKER, price="0.3200", count="1")  # takes an offer on our market
        self.assertEqual(self.fake.position(TICKER), D("2"))
        self.reconcile()
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn(f"position mismatch on {TICKER}", state.reason)

    @override_settings(FOREIGN_ORDERS="ignore")
    def test_an_order_with_our_prefix_but_no_decision_halts_even_in_ignore_mode(self):
        self.foreign_trade(TICKER, price="0.1000", client_order_id="kd-live-999999")
        self.reconcile()
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn("kd-live-999999", state.reason)


class AdoptTests(LiveReconcileTestCase):
    def adopt(self, ticker):
        """An order of ours on the exchange without its row (a crash before the insert)."""
        decision = make_decision(Market.objects.get(ticker=TICKER), mode="live", reason="traded")
        cid = f"kd-live-{decision.pk}"
        self.foreign_trade(ticker, price="0.1000", client_order_id=cid)  # it rests
        report = self.reconcile()
        self.assertEqual(self.state().state, TradingState.State.ACTIVE, self.state().reason)
        self.assertEqual(report.counts.get("orders_adopted"), 1)
        adopted = Order.objects.get(client_order_id=cid)
        self.assertEqual((adopted.market.ticker, adopted.status), (ticker, Order.Status.ACKED))
        return report

    def test_an_order_of_ours_without_a_row_is_adopted(self):
        self.adopt(TICKER)

    def test_one_on_a_market_not_in_the_database_fetches_the_market(self):
        report = self.adopt(OTHER)
        self.assertEqual(report.counts.get("markets_fetched"), 1)


class FailureTests(LiveReconcileTestCase):
    def test_an_exception_in_reconcile_halts_with_its_reason_and_fails_the_run(self):
        self.fake.fail_next(FILLS, "malformed_json")
        run = services.run_job("reconcile", "live", lambda run, token: self.reconcile())
        self.assertEqual(run.status, JobRun.Status.FAILED)
        self.assertIn("not JSON", run.summary)
        self.assertIn("/portfolio/fills", run.error)
        state = self.state()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn("reconcile failed", state.reason)
        self.assertIn("/portfolio/fills", state.reason)


class Exploding(SimulatedExchange):
    def positions(self):
        raise RuntimeError("upstream said sk-abcdefghijklmnopqrstuvwxyz0123 " + "x" * 2000)


class FailureRedactionTests(TestCase):
    def test_the_reason_is_redacted_and_truncated(self):
        exchange = Exploding(
            name="paper", quotes=StaticQuotes(quote()), account="x", starting_cash=D("1000")
        )
        run = services.run_job(
            "reconcile",
            "paper",
            lambda run, token: services.reconcile_run(
                exchange=exchange, mode="paper", now=exchange.now()
            ),
        )
        state = TradingState.load()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn("RuntimeError: upstream said", state.reason)
        self.assertLessEqual(len(state.reason), 500)
        self.assertEqual(run.status, JobRun.Status.FAILED)
        self.assertLessEqual(len(run.summary), 500)
        for text in (state.reason, run.summary, run.error):
            self.assertNotIn("sk-abcdefghijklmnop", text)


class SimulatedMarketFetchTests(TestCase):
    def test_paper_fetches_a_market_from_the_live_feed_and_replay_explains_why_it_cannot(self):
        from markets.exchange import ExchangeError
        from markets.paper import PaperQuotes
        from markets.simulator import ReplayQuotes

        fake = FakeKalshi()
        fake.add_market(OTHER, yes_bid="0.5000", yes_ask="0.5200")
        paper = SimulatedExchange(
            name="paper", quotes=PaperQuotes(fake.client()), account="p", starting_cash=D("1")
        )
        self.assertEqual(paper.market(OTHER).ticker, OTHER)
        with self.assertRaises(ExchangeError) as missing:
            paper.market("KXNONE-26SEP01-T1")
        self.assertIn("404", missing.exception.message)
        replay = SimulatedExchange(
            name="replay",
            quotes=ReplayQuotes(timezone.now),
            account="r",
            starting_cash=D("1"),
        )
        with self.assertRaises(ExchangeError) as absent:
            replay.market(OTHER)
        self.assertIn(f"market {OTHER} is not in the replay data", absent.exception.message)
