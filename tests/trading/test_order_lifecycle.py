"""The order lifecycle after the exchange accepts an order: resting orders are exposure, entries
expire, exits are re-priced toward the bid, cancels follow the create protocol, halt and
reduce-only cancel, flatten replaces a resting exit. On the simulated exchange, end to end."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal as D
from unittest import mock

from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from markets.exchange import OrderOutcomeUnknown
from markets.fees import taker_fee
from markets.models import SimOrder
from markets.simulator import SimulatedExchange
from tests.base import make_event, make_market
from tests.sim import T0, StaticQuotes, quote
from trading import services
from trading.audit import trading_state_set
from trading.forecasters import ForecastResult
from trading.models import Decision, Order, Position, RiskSettings, TradingState


class ConfidentForecaster:
    """Always says YES with 80% probability and 0.9 confidence."""

    name = "confident"
    needs_skill = False

    def forecast(self, q, *, now):
        return ForecastResult(D("0.80"), D("0.9"), rationale="test")


class Recording(SimulatedExchange):
    """Counts what the exchange receives; ``cancel_fault`` loses a cancel's answer
    (``"after"``: the cancel took effect) or the cancel itself (``"before"``).

    Unless ``honours_expiry``, it keeps an order resting past its ``expiration_time`` (as a
    venue whose create takes no expiry would): what ends an entry then is our own cancel."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.requests = []
        self.cancels = []
        self.cancel_fault = ""
        self.honours_expiry = False

    def place_order(self, request):
        self.requests.append(request)
        if not self.honours_expiry:
            request = dataclasses.replace(request, expiration_time=None)
        return super().place_order(request)

    def cancel_order(self, order_id, ticker):
        self.cancels.append(order_id)
        if self.cancel_fault == "before":
            raise OrderOutcomeUnknown("connect timeout")
        super().cancel_order(order_id, ticker)
        if self.cancel_fault == "after":
            raise OrderOutcomeUnknown("read timeout")


def _wall():
    return timezone.now()


class LifecycleTestCase(TestCase):
    def setUp(self):
        self.event = make_event(category="Test")
        self.market = make_market(event=self.event, ticker="MKT", close_time=T0 + timedelta(days=1))
        self.quotes = StaticQuotes(quote("MKT", bid="0.40", ask="0.42"))
        self.exchange = Recording(
            name="paper", quotes=self.quotes, account="paper-test", starting_cash=D("1000")
        )
        self.forecaster = ConfidentForecaster()

    def cycle(self):
        return services.trading_cycle_run(
            exchange=self.exchange, forecaster=self.forecaster, mode="paper"
        )

    def set_quote(self, ticker="MKT", **kw):
        self.quotes.by_ticker[ticker] = quote(ticker, **kw)

    def rest_an_entry(self, *, depth_at_send="0") -> Order:
        """Decide a buy with 100 contracts offered, then the book empties before it arrives:
        the order rests (partly filled when ``depth_at_send`` > 0)."""
        services.decide_run(
            exchange=self.exchange, forecaster=self.forecaster, mode="paper", now=T0
        )
        self.set_quote(bid="0.40", ask="0.42", depth=depth_at_send)
        services.execute_run(exchange=self.exchange, mode="paper", now=T0, reconciled_at=_wall())
        return Order.objects.get(purpose="open")


class RestingOrdersAreExposureTests(LifecycleTestCase):
    def test_a_second_entry_is_refused_while_the_first_still_rests(self):
        first = self.rest_an_entry()
        self.assertEqual(
            (first.status, first.count, first.yes_price), ("acked", D("100"), D("0.42"))
        )
        # Two hours later the decision no longer stands; the first order still rests.
        self.quotes.clock = T0 + timedelta(hours=2)
        self.set_quote(bid="0.40", ask="0.42", depth="100")
        report = services.decide_run(
            exchange=self.exchange, forecaster=self.forecaster, mode="paper", now=self.quotes.clock
        )
        self.assertEqual(report.counts.get("skip_entry_resting"), 1, report.counts)
        self.assertEqual(Order.objects.count(), 1)
        self.assertEqual(Decision.objects.latest("pk").reason, "skip_entry_resting")

    def test_resting_buys_count_toward_category_exposure_open_positions_and_cash(self):
        self.rest_an_entry()
        resting_cost = 100 * D("0.42") + taker_fee(D("100"), D("0.42"))  # 43.71
        view = services.portfolio_view(
            exchange=self.exchange,
            mode="paper",
            quotes={"MKT": self.quotes.by_ticker["MKT"]},
            now=T0,
        )
        self.assertEqual(view.category_exposure["Test"], resting_cost)
        self.assertEqual(view.committed, resting_cost)
        self.assertEqual(view.available_cash, D("1000") - resting_cost)
        self.assertIn("MKT", view.resting_entry_tickers)

        make_market(event=self.event, ticker="OTHER", close_time=T0 + timedelta(days=1))
        self.quotes.by_ticker["OTHER"] = quote("OTHER", bid="0.40", ask="0.42")

        def decide_other(**limits):
            Decision.objects.filter(market__ticker="OTHER").delete()
            RiskSettings.objects.update_or_create(pk=1, defaults=limits)
            services.decide_run(
                exchange=self.exchange,
                forecaster=self.forecaster,
                mode="paper",
                now=T0,
                quotes=[self.quotes.by_ticker["OTHER"]],
            )
            return Decision.objects.get(market__ticker="OTHER")

        # Category: 6% of equity is $60; 43.71 resting + 43.71 more does not fit.
        decision = decide_other(max_category_exposure_pct=D("0.06"))
        self.assertEqual(decision.reason, "risk_category_exposure")
        # Open positions: the resting entry holds the only slot.
        decision = decide_other(max_category_exposure_pct=D("1"), max_open_positions=1)
        self.assertEqual(decision.reason, "risk_open_positions")
        # Cash reserve: 92% of $1000 stays cash; what the resting order may take is not free.
        decision = decide_other(max_open_positions=15, cash_reserve_pct=D("0.92"))
        self.assertEqual(decision.reason, "traded")
        order = Order.objects.get(decision=decision)
        self.assertLessEqual(resting_cost + order.max_cost, D("1000") - D("920"))
        self.assertEqual(decision.details["limited_by"], "cash_reserve")


class EntryExpiryTests(LifecycleTestCase):
    def test_an_entry_is_sent_with_its_expiry_and_its_remainder_is_cancelled_after_the_ttl(self):
        order = self.rest_an_entry(depth_at_send="40")
        self.set_quote(bid="0.40", ask="0.42", depth="0")  # nothing more is offered
        services.reconcile_run(exchange=self.exchange, mode="paper", now=T0)
        order.refresh_from_db()
        self.assertEqual((order.status, order.filled_count), ("partially_filled", D("40")))
        self.assertEqual(order.expires_at, T0 + timedelta(seconds=120))
        [request] = self.exchange.requests
        self.assertEqual(request.expiration_time, T0 + timedelta(seconds=120))
        # The next cycle, after the TTL: the remainder is cancelled, the position stays.
        self.quotes.clock = T0 + timedelta(minutes=5)
        report = self.cycle()
        self.assertEqual(report.counts.get("cancel_entry_ttl"), 1, report.counts)
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("canceled", "entry_ttl"))
        self.assertEqual(
            SimOrder.objects.get(client_order_id=order.client_order_id).status, "canceled"
        )
        self.assertEqual(Position.objects.get(status="open").count, D("40"))
        self.assertEqual(Order.objects.filter(purpose="open").count(), 1)

    def test_an_unfilled_entry_is_cancelled_and_the_market_decided_again_at_the_new_price(self):
        first = self.rest_an_entry()
        self.quotes.clock = T0 + timedelta(minutes=5)
        self.set_quote(bid="0.43", ask="0.45", depth="100")
        self.cycle()
        first.refresh_from_db()
        self.assertEqual((first.status, first.cancel_reason), ("canceled", "entry_ttl"))
        second = Order.objects.exclude(pk=first.pk).get(purpose="open")
        self.assertEqual((second.yes_price, second.status), (D("0.45"), "filled"))
        self.assertEqual(self.exchange.cancels, [first.exchange_order_id])

    def test_an_entry_the_exchange_expired_is_booked_and_the_market_decided_again(self):
        # Kalshi drops the order at its expiration_time; it reads back as canceled.
        self.exchange.honours_expiry = True
        first = self.rest_an_entry()
        self.quotes.clock = T0 + timedelta(minutes=5)
        self.set_quote(bid="0.43", ask="0.45", depth="100")
        self.cycle()
        first.refresh_from_db()
        self.assertEqual((first.status, first.cancel_reason), ("canceled", ""))
        self.assertEqual(self.exchange.cancels, [])
        second = Order.objects.exclude(pk=first.pk).get(purpose="open")
        self.assertEqual((second.yes_price, second.status), (D("0.45"), "filled"))

    def test_an_entry_not_yet_expired_keeps_resting(self):
        order = self.rest_an_entry()
        self.quotes.clock = T0 + timedelta(seconds=60)
        self.cycle()
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("acked", ""))
        self.assertEqual(self.exchange.cancels, [])


class CancelProtocolTests(LifecycleTestCase):
    def test_a_cancel_of_unknown_outcome_is_not_retried_and_reconcile_resolves_it(self):
        order = self.rest_an_entry()
        self.exchange.cancel_fault = "after"  # the cancel takes effect; its answer is lost
        now = T0 + timedelta(minutes=5)
        self.quotes.clock = now
        report = services.cancels_run(exchange=self.exchange, mode="paper", now=now)
        self.assertEqual(report.counts.get("cancels_unknown"), 1, report.counts)
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_requested_at), ("acked", now))
        self.assertIn("outcome unknown", order.cancel_error)
        # The market is blocked meanwhile, and no second cancel is sent.
        self.assertTrue(Order.objects.blocking().filter(pk=order.pk).exists())
        services.cancels_run(exchange=self.exchange, mode="paper", now=now)
        services.cancels_send(exchange=self.exchange, mode="paper", now=now)
        self.assertEqual(len(self.exchange.cancels), 1)
        # Reconcile reads the exchange's order list: cancelled.
        services.reconcile_run(exchange=self.exchange, mode="paper", now=now)
        order.refresh_from_db()
        self.assertEqual(order.status, "canceled")
        self.assertFalse(Order.objects.blocking().exists())
        self.cycle()
        self.assertEqual(len(self.exchange.cancels), 1)

    def test_a_cancel_lost_before_it_arrived_is_sent_once_more_only_after_reconcile(self):
        order = self.rest_an_entry()
        self.exchange.cancel_fault = "before"
        now = T0 + timedelta(minutes=5)
        self.quotes.clock = now
        services.cancels_run(exchange=self.exchange, mode="paper", now=now)
        self.exchange.cancel_fault = ""
        # Within the grace period the order still rests and nothing is sent again.
        services.reconcile_run(exchange=self.exchange, mode="paper", now=now)
        services.cancels_run(exchange=self.exchange, mode="paper", now=now)
        self.assertEqual(len(self.exchange.cancels), 1)
        order.refresh_from_db()
        self.assertIsNotNone(order.cancel_requested_at)
        # After it, reconcile establishes that the cancel did not take effect; one more goes.
        later = now + services.UNKNOWN_GRACE
        self.quotes.clock = later
        report = services.reconcile_run(exchange=self.exchange, mode="paper", now=later)
        self.assertEqual(report.counts.get("cancels_not_applied"), 1, report.counts)
        services.cancels_run(exchange=self.exchange, mode="paper", now=later)
        self.assertEqual(len(self.exchange.cancels), 2)
        order.refresh_from_db()
        self.assertEqual(order.status, "canceled")

    def test_a_cancel_refused_because_the_order_is_gone_is_resolved_by_reconcile(self):
        order = self.rest_an_entry()
        self.quotes.clock = now = T0 + timedelta(minutes=5)
        # The exchange expired the order itself just before our cancel arrived.
        SimOrder.objects.filter(client_order_id=order.client_order_id).update(status="canceled")
        report = services.cancels_run(exchange=self.exchange, mode="paper", now=now, quotes=[])
        self.assertEqual(report.counts.get("cancels_refused"), 1, report.counts)
        order.refresh_from_db()
        self.assertEqual(order.status, "acked")  # booked by reconcile, not guessed
        self.assertIn("refused", order.cancel_error)
        services.reconcile_run(exchange=self.exchange, mode="paper", now=now)
        order.refresh_from_db()
        self.assertEqual(order.status, "canceled")
        self.assertEqual(len(self.exchange.cancels), 1)


class ExitRepricingTests(LifecycleTestCase):
    def test_an_exit_resting_above_the_bid_is_repriced_until_it_fills_and_the_stop_loss_works(self):
        self.cycle()  # buys 100 YES at 0.42
        position = Position.objects.get(status="open")
        self.assertEqual(position.count, D("100"))

        def step(bid, depth="0"):
            self.quotes.clock += timedelta(minutes=5)
            ask = str(D(bid) + D("0.02"))
            self.set_quote(bid=bid, ask=ask, depth="100", no_ask_depth=D(depth))
            self.cycle()
            return list(Order.objects.filter(action="sell").order_by("pk"))

        # Take-profit at the 0.65 bid, but nobody buys there: the exit rests.
        [first] = step("0.65")
        self.assertEqual((first.status, first.yes_price), ("acked", D("0.65")))
        self.assertEqual(Decision.objects.get(pk=first.decision_id).details["exit"], "take_profit")
        # The bid falls to 0.60: cancelled and replaced at the new bid, a new client_order_id.
        first_, second = step("0.60")
        self.assertEqual((first_.status, first_.cancel_reason), ("canceled", "reprice"))
        self.assertEqual((second.status, second.yes_price), ("acked", D("0.60")))
        self.assertEqual(second.replaces_id, first.pk)
        self.assertNotEqual(second.client_order_id, first.client_order_id)
        steps = Decision.objects.get(pk=second.decision_id).details["reprice_steps"]
        self.assertEqual(
            [(s["step"], s["from_price"], s["price"]) for s in steps], [(1, "0.6500", "0.60")]
        )
        # The bid falls to 0.30: the take-profit chain stops at its floor, half of 0.65.
        *_, third = step("0.30")
        self.assertEqual((third.status, third.yes_price), ("acked", D("0.33")))
        self.assertEqual(len(step("0.30")), 3)  # at the floor: nothing more to do
        # The stop-loss still works while the exit rests: at 0.25, with buyers there, the
        # resting exit is re-priced to the bid, where it fills.
        *_, fourth = step("0.25", depth="100")
        self.assertEqual((fourth.status, fourth.yes_price), ("filled", D("0.25")))
        details = Decision.objects.get(pk=fourth.decision_id).details
        self.assertEqual(details["exit"], "stop_loss")
        self.assertEqual(details["reprice_steps"][0]["from_price"], "0.3300")
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        self.assertEqual(SimOrder.objects.filter(action="sell", status="resting").count(), 0)
        self.assertEqual(len(self.exchange.cancels), 3)
        self.assertEqual(len(set(self.exchange.cancels)), 3)


class ExitWithRestingEntryTests(LifecycleTestCase):
    def test_a_stop_loss_cancels_the_entry_remainder_and_exits_in_the_same_cycle(self):
        entry = self.rest_an_entry(depth_at_send="40")
        self.set_quote(bid="0.40", ask="0.42", depth="0")
        services.reconcile_run(exchange=self.exchange, mode="paper", now=T0)
        # Within the entry's lifetime the market collapses; nobody sells at the old price.
        self.quotes.clock = T0 + timedelta(seconds=60)
        self.set_quote(bid="0.20", ask="0.22", yes_ask_depth=D("0"), no_ask_depth=D("100"))
        self.cycle()
        entry.refresh_from_db()
        self.assertEqual((entry.status, entry.cancel_reason), ("canceled", "exit"))
        exit_order = Order.objects.get(purpose="exit")
        self.assertEqual((exit_order.status, exit_order.count), ("filled", D("40")))
        self.assertEqual(
            Decision.objects.get(pk=exit_order.decision_id).details["exit"], "stop_loss"
        )
        self.assertEqual(Position.objects.get().status, "closed")


class FlattenTests(LifecycleTestCase):
    def test_flatten_cancels_a_resting_exit_and_replaces_it(self):
        self.cycle()
        position = Position.objects.get(status="open")
        self.quotes.clock += timedelta(minutes=5)
        self.set_quote(bid="0.65", ask="0.67", no_ask_depth=D("0"))
        self.cycle()
        exit_order = Order.objects.get(purpose="exit")
        self.assertEqual(exit_order.status, "acked")
        self.market.yes_bid, self.market.yes_ask = D("0.64"), D("0.66")
        self.market.save()
        flatten = services.position_flatten(position=position, now=self.quotes.clock)
        self.assertEqual((flatten.purpose, flatten.status), ("flatten", "approved"))
        self.assertEqual(flatten.replaces_id, exit_order.pk)
        exit_order.refresh_from_db()
        self.assertEqual(exit_order.cancel_reason, "flatten")
        with self.assertRaises(ValueError):
            services.position_flatten(position=position)  # one flatten at a time
        # The next cycle cancels the exit, then sends the flatten, which fills.
        self.quotes.clock += timedelta(minutes=5)
        self.set_quote(bid="0.64", ask="0.66")
        self.cycle()
        exit_order.refresh_from_db()
        flatten.refresh_from_db()
        self.assertEqual(exit_order.status, "canceled")
        self.assertEqual(flatten.status, "filled")
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        self.assertEqual(self.exchange.cancels, [exit_order.exchange_order_id])


class HaltAndReduceOnlyTests(LifecycleTestCase):
    def test_reduce_only_cancels_resting_entries(self):
        order = self.rest_an_entry()
        trading_state_set(state=TradingState.State.REDUCE_ONLY, reason="test", user=None)
        self.cycle()  # before the entry's expiry
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("canceled", "reduce_only"))
        self.assertEqual(SimOrder.objects.get().status, "canceled")

    def test_halt_with_cancel_orders_cancels_resting_orders(self):
        order = self.rest_an_entry()
        with mock.patch("trading.exchanges.exchange_for", return_value=self.exchange):
            out = call_command("halt", "--reason", "stop everything", "--cancel-orders")
        self.assertIn("1 resting orders cancelled", out)
        self.assertEqual(TradingState.load().state, "halted")
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("canceled", "halt"))
        self.assertEqual(SimOrder.objects.get().status, "canceled")

    def test_halt_cancel_orders_keeps_the_halt_when_the_exchange_is_unreachable(self):
        order = self.rest_an_entry()
        with mock.patch("trading.exchanges.exchange_for", side_effect=RuntimeError("no keys")):
            out = call_command("halt", "--reason", "stop", "--cancel-orders")
        self.assertIn("the next cycle sends them", out)
        self.assertEqual(TradingState.load().state, "halted")
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("acked", "halt"))
        self.cycle()
        order.refresh_from_db()
        self.assertEqual(order.status, "canceled")

    def test_halt_without_the_option_leaves_resting_orders(self):
        order = self.rest_an_entry()
        call_command("halt", "--reason", "look first")
        order.refresh_from_db()
        self.assertEqual((order.status, order.cancel_reason), ("acked", ""))

    def test_the_dashboard_halt_form_can_cancel_resting_orders(self):
        from tests.dashboard.world import make_operator

        order = self.rest_an_entry()
        self.client.force_login(make_operator())
        self.client.post(reverse("dashboard:halt"), {"reason": "outage", "cancel_orders": "on"})
        self.assertEqual(TradingState.load().state, "halted")
        order.refresh_from_db()
        self.assertEqual(order.cancel_reason, "halt")
        # The next cycle sends the cancel even though trading is halted; nothing else goes out.
        self.cycle()
        order.refresh_from_db()
        self.assertEqual(order.status, "canceled")
        self.assertEqual(len(self.exchange.requests), 1)


class DecisionPageTests(LifecycleTestCase):
    def test_the_decision_page_shows_each_repricing_step(self):
        from tests.dashboard.world import make_operator

        self.cycle()
        for bid in ("0.65", "0.60", "0.55"):
            self.quotes.clock += timedelta(minutes=5)
            ask = str(D(bid) + D("0.02"))
            self.set_quote(bid=bid, ask=ask, no_ask_depth=D("0"))
            self.cycle()
        last = Order.objects.filter(action="sell").latest("pk")
        self.client.force_login(make_operator())
        page = self.client.get(reverse("dashboard:decision", args=[last.decision_id]))
        html = page.content.decode()
        self.assertIn("Re-priced toward the bid", html)
        self.assertIn('id="reprice-steps"', html)
        first, second = Order.objects.filter(action="sell").order_by("pk")[:2]
        self.assertIn(first.client_order_id, html)
        self.assertIn(second.client_order_id, html)
        self.assertIn("Re-priced toward the bid", html)
        self.assertIn(
            "Cancel: Re-priced toward the bid",
            self.client.get(
                reverse("dashboard:decision", args=[first.decision_id])
            ).content.decode(),
        )


class LifecycleConstraintTests(TestCase):
    def test_the_database_refuses_a_cancel_without_a_reason_and_limits_out_of_range(self):
        from django.db import IntegrityError, transaction

        from tests.base import make_decision, make_order

        order = make_order(make_decision(make_market()))
        with self.assertRaises(IntegrityError), transaction.atomic():
            Order.objects.filter(pk=order.pk).update(cancel_requested_at=_wall())
        RiskSettings.load()
        for bad in ({"exit_floor_pct": D("1.5")}, {"entry_order_ttl_seconds": 5}):
            with self.subTest(bad), self.assertRaises(IntegrityError), transaction.atomic():
                RiskSettings.objects.filter(pk=1).update(**bad)
