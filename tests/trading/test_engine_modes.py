"""The same engine code on every exchange: paper (live public data, a fake feed), replay
(recorded data, simulated clock) and live (the Kalshi client on a fake exchange)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

from django.core.management import call_command
from django.test import TestCase, override_settings
from django.utils import timezone

from markets.exchange_kalshi import KalshiExchange
from markets.models import SimOrder
from markets.paper import PaperQuotes
from markets.services import market_sync
from markets.simulator import SimulatedExchange
from tests.fakes import FakeKalshi
from tests.forecasters import Bullish
from trading import services
from trading.exchanges import exchange_for, replay_clock_advance
from trading.models import Fill, Order, Position, TradingState

SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"


def _fake_feed() -> FakeKalshi:
    fake = FakeKalshi()
    fake.now = timezone.now()  # the engine runs on wall time in paper and live
    for i in range(3):
        fake.add_market(
            f"KXTEST-26SEP01-B{i}",
            yes_bid="0.3000",
            yes_ask="0.3200",
            volume="5000.00",
            close_time=timezone.now() + timedelta(days=3),
        )
    return fake


class PaperModeTests(TestCase):
    def test_the_cycle_trades_on_the_live_feed_with_simulated_fills_and_never_posts(self):
        fake = _fake_feed()
        client = fake.client()
        market_sync(client=client)
        exchange = SimulatedExchange(
            name="paper", quotes=PaperQuotes(client), account="paper", starting_cash=D("1000")
        )
        report = services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="paper")
        self.assertEqual(report.counts.get("traded"), 3, report.counts)
        self.assertEqual(Order.objects.filter(status="filled").count(), 3)
        self.assertEqual(Position.objects.open().count(), 3)
        self.assertEqual(SimOrder.objects.count(), 3)
        self.assertEqual(fake.count("POST /portfolio/events/orders"), 0)
        self.assertEqual(fake.accepted, [])


@override_settings(TRADING_MODE="live")
class LiveModeTests(TestCase):
    def setUp(self):
        self.fake = _fake_feed()
        self.client_ = self.fake.client()
        market_sync(client=self.client_)
        self.exchange = KalshiExchange(self.client_)

    def test_nothing_is_sent_until_an_operator_arms_live_trading(self):
        services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="live")
        self.assertEqual(Order.objects.filter(status="approved").count(), 3)
        self.assertEqual(self.fake.count("POST /portfolio/events/orders"), 0)

    def test_armed_live_trading_sends_each_intent_once(self):
        TradingState.objects.update_or_create(pk=1, defaults={"live_armed": True})
        services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="live")
        services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="live")
        self.assertEqual(self.fake.count("POST /portfolio/events/orders"), 3)
        ids = [o.client_order_id for o in self.fake.accepted]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(
            sorted(ids), sorted(Order.objects.values_list("client_order_id", flat=True))
        )
        self.assertTrue(Fill.objects.exists())
        self.assertEqual(TradingState.load().state, "active", TradingState.load().reason)


@override_settings(TRADING_MODE="replay")
class ReplayModeTests(TestCase):
    def test_the_cycle_runs_on_recorded_data_and_places_orders(self):
        call_command("load_recorded_markets", data=str(SMALL), verbosity=0)
        traded = 0
        for _ in range(40):
            replay_clock_advance()
            report = services.trading_cycle_run(
                exchange=exchange_for("replay"), forecaster=Bullish(), mode="replay"
            )
            traded += report.counts.get("traded", 0)
        self.assertGreater(traded, 0)
        self.assertEqual(
            SimOrder.objects.count(), Order.objects.exclude(status="not_placed").count()
        )
        for order in Order.objects.all():
            self.assertLessEqual(order.created_at, TradingState.load().replay_clock)


@override_settings(TRADING_MODE="live")
class LiveFaultTests(TestCase):
    """Faults on order creation at the HTTP transport: the intent becomes UNKNOWN, its market
    is blocked, and only reconciliation settles it — never a second POST."""

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.now = timezone.now()
        self.fake.add_market(
            "KXTEST-26SEP01-B0",
            yes_bid="0.3000",
            yes_ask="0.3200",
            volume="5000.00",
            close_time=timezone.now() + timedelta(days=3),
        )
        client = self.fake.client()
        market_sync(client=client)
        self.exchange = KalshiExchange(client)
        TradingState.objects.update_or_create(pk=1, defaults={"live_armed": True})

    def cycle(self):
        return services.trading_cycle_run(exchange=self.exchange, forecaster=Bullish(), mode="live")

    def check(self, kind: str, *, accepted: bool):
        self.fake.fail_next("POST /portfolio/events/orders", kind)
        self.cycle()
        self.assertEqual(self.fake.count("POST /portfolio/events/orders"), 1)
        order = Order.objects.get()
        # Either still unknown, or already resolved by the cycle's closing reconcile (found).
        if accepted:
            self.assertIn(order.status, ("unknown", "acked", "filled", "partially_filled"))
        else:
            self.assertEqual(order.status, "unknown")
        # Later cycles never resend it; once the grace period passes, reconcile decides.
        import time_machine

        with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
            self.cycle()
            self.cycle()
        order.refresh_from_db()
        self.assertEqual(self.fake.count("POST /portfolio/events/orders"), 1, kind)
        self.assertEqual(len(self.fake.accepted), 1 if accepted else 0)
        if accepted:
            self.assertIn(order.status, ("acked", "filled", "partially_filled"))
            self.assertEqual(order.exchange_order_id, self.fake.accepted[0].order_id)
        else:
            self.assertEqual(order.status, "not_placed")

    def test_429_on_create(self):
        self.check("429", accepted=False)

    def test_500_on_create(self):
        self.check("500", accepted=False)

    def test_timeout_on_create(self):
        self.check("timeout", accepted=False)

    def test_2xx_without_an_order(self):
        self.check("no_order", accepted=False)

    def test_accepted_then_500(self):
        self.check("accept_then_500", accepted=True)

    def test_accepted_then_timeout(self):
        self.check("accept_then_timeout", accepted=True)


@override_settings(TRADING_MODE="paper")
class PaperJobTests(TestCase):
    """The scheduled job in paper mode: syncs markets when due, trades, and fetches results."""

    def test_the_job_syncs_then_trades_and_later_picks_up_results(self):
        from unittest import mock

        from trading import tasks
        from trading.models import JobRun, RiskSettings

        RiskSettings.objects.update_or_create(pk=1, defaults={"skill_min_settled": 0})
        fake = _fake_feed()
        with (
            mock.patch("markets.kalshi.kalshi_client", side_effect=lambda: fake.client()),
            mock.patch("trading.forecasters.forecaster_for", return_value=Bullish()),
            mock.patch("trading.tasks.forecaster_for", return_value=Bullish()),
        ):
            tasks.run_trading_cycle("paper")
            self.assertEqual(JobRun.objects.filter(job="sync_markets", status="ok").count(), 1)
            self.assertEqual(Order.objects.filter(status="filled").count(), 3)
            self.assertEqual(fake.count("POST /portfolio/events/orders"), 0)
            # Within five minutes no new sync; after, one — and closed markets' results come in.
            tasks.run_trading_cycle("paper")
            self.assertEqual(JobRun.objects.filter(job="sync_markets").count(), 1)
            ticker = "KXTEST-26SEP01-B0"
            fake.markets[ticker]["close_time"] = (timezone.now() - timedelta(minutes=1)).isoformat()
            fake.settle_market(ticker, "yes")
            from markets.models import Market

            Market.objects.filter(ticker=ticker).update(
                close_time=timezone.now() - timedelta(minutes=1)
            )
            import time_machine

            with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
                tasks.run_trading_cycle("paper")
            self.assertEqual(JobRun.objects.filter(job="sync_markets").count(), 2)
            self.assertEqual(Market.objects.get(ticker=ticker).result, "yes")
