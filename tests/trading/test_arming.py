from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import TestCase

from trading.audit import ARM_CONFIRMATION, live_trading_arm, live_trading_disarm
from trading.models import TradingState, TradingStateChange
from trading.services import halt


class ArmingTests(TestCase):
    def setUp(self):
        self.user = get_user_model().objects.create_user("op", password="x")

    def test_arming_needs_the_exact_typed_confirmation(self):
        for typed in ("", "arm", "ARM LIVE", "yes"):
            with self.subTest(typed=typed), self.assertRaises(ValidationError):
                live_trading_arm(user=self.user, confirmation=typed)
        self.assertFalse(TradingState.load().live_armed)
        self.assertFalse(TradingStateChange.objects.exists())

    def test_arming_records_who_and_when_and_disarming_clears_it(self):
        state = live_trading_arm(user=self.user, confirmation=ARM_CONFIRMATION)
        self.assertTrue(state.live_armed)
        self.assertEqual(state.armed_by, self.user)
        self.assertIsNotNone(state.armed_at)
        state = live_trading_disarm(user=self.user)
        self.assertFalse(state.live_armed)
        self.assertEqual(
            list(TradingStateChange.objects.order_by("id").values_list("live_armed", flat=True)),
            [True, False],
        )

    def test_halt_is_recorded_once_and_repeating_it_writes_nothing(self):
        halt("mismatch")
        halt("mismatch")
        self.assertEqual(TradingState.load().state, "halted")
        self.assertEqual(TradingStateChange.objects.count(), 1)
