"""The data model's invariants are database constraints, and money round-trips exactly.

Run on SQLite and on PostgreSQL (CI runs the suite on both).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.test import TestCase

from markets.models import Market
from tests.base import make_decision, make_market, make_order
from trading.models import (
    AccountSnapshot,
    DailyCost,
    Fill,
    Forecast,
    IllegalTransition,
    Order,
    Position,
    RiskSettings,
    TradingState,
)


class ConstraintTests(TestCase):
    def setUp(self):
        self.market = make_market()
        self.decision = make_decision(self.market)

    def assertViolates(self, fn):
        with self.assertRaises(IntegrityError), transaction.atomic():
            fn()

    def test_it_refuses_market_prices_outside_the_open_unit_interval(self):
        for bad in (Decimal("0"), Decimal("1"), Decimal("1.5"), Decimal("-0.01")):
            with self.subTest(bad=bad):
                self.assertViolates(
                    lambda bad=bad: Market.objects.filter(pk=self.market.pk).update(yes_bid=bad)
                )

    def test_it_accepts_a_subpenny_price(self):
        Market.objects.filter(pk=self.market.pk).update(yes_ask=Decimal("0.0001"))
        self.market.refresh_from_db()
        self.assertEqual(self.market.yes_ask, Decimal("0.0001"))

    def test_it_refuses_an_order_with_a_non_positive_count(self):
        self.assertViolates(lambda: make_order(self.decision, count=Decimal("0")))
        self.assertViolates(lambda: make_order(self.decision, count=Decimal("-1")))

    def test_it_refuses_an_order_price_of_zero_or_one(self):
        self.assertViolates(lambda: make_order(self.decision, yes_price=Decimal("0")))
        self.assertViolates(lambda: make_order(self.decision, yes_price=Decimal("1")))

    def test_it_refuses_a_duplicate_client_order_id(self):
        make_order(self.decision, client_order_id="kd-1")
        self.assertViolates(lambda: make_order(self.decision, client_order_id="kd-1"))

    def test_it_refuses_a_duplicate_exchange_order_id(self):
        make_order(self.decision, client_order_id="kd-1", exchange_order_id="ex-1")
        self.assertViolates(
            lambda: make_order(self.decision, client_order_id="kd-2", exchange_order_id="ex-1")
        )

    def test_it_refuses_an_acked_order_without_exchange_id(self):
        self.assertViolates(lambda: make_order(self.decision, status=Order.Status.ACKED))

    def test_it_refuses_overfilling_an_order(self):
        self.assertViolates(
            lambda: make_order(self.decision, count=Decimal("5"), filled_count=Decimal("6"))
        )

    def test_it_refuses_a_duplicate_fill_id(self):
        order = make_order(self.decision, exchange_order_id="ex-9", status=Order.Status.ACKED)

        def fill():
            Fill.objects.create(
                fill_id="f-1",
                order=order,
                exchange_order_id="ex-9",
                market=self.market,
                side="yes",
                action="buy",
                count=Decimal("1"),
                yes_price=Decimal("0.42"),
                executed_at=order.created_at,
            )

        fill()
        self.assertViolates(fill)

    def test_it_allows_one_open_position_per_market_and_mode(self):
        Position.objects.create(market=self.market, side="yes", count=Decimal("3"))
        self.assertViolates(
            lambda: Position.objects.create(market=self.market, side="no", count=Decimal("1"))
        )
        # Another mode's book is separate.
        Position.objects.create(market=self.market, side="yes", count=Decimal("1"), mode="live")

    def test_it_refuses_a_forecast_probability_above_one(self):
        self.assertViolates(
            lambda: Forecast.objects.create(
                market=self.market, forecaster="llm", probability=Decimal("1.7")
            )
        )

    def test_it_refuses_a_valid_forecast_without_probability(self):
        self.assertViolates(
            lambda: Forecast.objects.create(market=self.market, forecaster="llm", valid=True)
        )

    def test_risk_settings_and_trading_state_are_single_rows(self):
        RiskSettings.load()
        self.assertViolates(lambda: RiskSettings.objects.create(pk=2))
        TradingState.load()
        self.assertViolates(lambda: TradingState.objects.create(pk=2))

    def test_a_halt_needs_a_reason(self):
        TradingState.load()
        self.assertViolates(lambda: TradingState.objects.filter(pk=1).update(state="halted"))

    def test_edge_tiers_must_be_ordered(self):
        RiskSettings.load()
        self.assertViolates(
            lambda: RiskSettings.objects.filter(pk=1).update(edge_high=Decimal("0.5"))
        )


class MoneyRoundTripTests(TestCase):
    def test_a_tenth_of_a_cent_price_round_trips(self):
        market = make_market(yes_bid=Decimal("0.0001"), yes_ask=Decimal("0.9999"))
        market.refresh_from_db()
        self.assertEqual(market.yes_bid, Decimal("0.0001"))
        self.assertEqual(market.yes_ask, Decimal("0.9999"))

    def test_a_six_decimal_fee_round_trips(self):
        market = make_market()
        order = make_order(make_decision(market), fees_paid=Decimal("0.010915"))
        order.refresh_from_db()
        self.assertEqual(order.fees_paid, Decimal("0.010915"))

    def test_a_large_balance_round_trips(self):
        snap = AccountSnapshot.objects.create(
            ts="2026-01-01T00:00:00Z",
            cash=Decimal("987654321.123456"),
            equity=Decimal("999999999.999999"),
        )
        snap.refresh_from_db()
        self.assertEqual(snap.cash, Decimal("987654321.123456"))
        self.assertEqual(snap.equity, Decimal("999999999.999999"))

    def test_concurrent_style_cost_increments_are_exact(self):
        from django.db.models import F

        row = DailyCost.objects.create(date="2026-01-01")
        for _ in range(10):
            DailyCost.objects.filter(pk=row.pk).update(llm_cost=F("llm_cost") + Decimal("0.000123"))
        row.refresh_from_db()
        self.assertEqual(row.llm_cost, Decimal("0.001230"))


class OrderStateMachineTests(TestCase):
    def test_every_pair_outside_the_table_raises(self):
        statuses = [s.value for s in Order.Status]
        for old in statuses:
            for new in statuses:
                allowed = new in Order.TRANSITIONS[old]
                with self.subTest(old=old, new=new):
                    if allowed:
                        Order.check_transition(old, new)
                    else:
                        with self.assertRaises(IllegalTransition):
                            Order.check_transition(old, new)

    def test_unknown_is_left_only_by_reconciliation_outcomes(self):
        self.assertNotIn(Order.Status.SUBMITTING, Order.TRANSITIONS[Order.Status.UNKNOWN])
        self.assertNotIn(Order.Status.APPROVED, Order.TRANSITIONS[Order.Status.UNKNOWN])

    def test_transition_is_a_conditional_update(self):
        order = make_order(make_decision(make_market()))
        stale = Order.objects.get(pk=order.pk)
        self.assertTrue(order.transition(Order.Status.SUBMITTING))
        # Another process still holding the APPROVED copy loses the race and writes nothing.
        self.assertFalse(stale.transition(Order.Status.SUBMITTING))
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.SUBMITTING)

    def test_book_side_follows_kalshi_v2(self):
        decision = make_decision(make_market())
        cases = {
            ("yes", "buy"): "bid",
            ("no", "sell"): "bid",
            ("no", "buy"): "ask",
            ("yes", "sell"): "ask",
        }
        for (side, action), book in cases.items():
            order = Order(decision=decision, side=side, action=action)
            self.assertEqual(order.book_side, book)
