"""The kill switch always works: whatever reason is given, from the command line, the dashboard
or the service, trading ends up halted, and "Trading halted" is logged only once it is."""

from __future__ import annotations

import logging
from io import StringIO

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import TestCase, override_settings
from django.urls import reverse

from trading.audit import REASON_CUT_NOTE, trading_state_set
from trading.models import TradingState, TradingStateChange
from trading.services import halt

REASON_LENGTH = TradingState._meta.get_field("reason").max_length


class HaltCommandTests(TestCase):
    def halt(self, reason: str) -> str:
        out = StringIO()
        call_command("halt", "--reason", reason, stdout=out, stderr=StringIO())
        return out.getvalue()

    def test_a_blank_reason_still_halts_with_a_default_reason(self):
        for reason in ("", "   ", "\t\n"):
            with self.subTest(reason=reason):
                TradingState.objects.update_or_create(
                    pk=TradingState.SINGLETON_PK, defaults={"state": "active", "reason": ""}
                )
                out = self.halt(reason)
                state = TradingState.load()
                self.assertEqual(state.state, "halted")
                self.assertEqual(state.reason, "halted from the command line (no reason given)")
                self.assertIn("Trading halted", out)

    def test_a_long_reason_is_cut_to_the_field_with_a_note(self):
        out = self.halt("x" * 600)
        state = TradingState.load()
        self.assertEqual(state.state, "halted")
        self.assertEqual(len(state.reason), REASON_LENGTH)
        self.assertTrue(state.reason.endswith(REASON_CUT_NOTE))
        self.assertTrue(state.reason.startswith("x" * 100))
        change = TradingStateChange.objects.get()
        self.assertEqual((change.new_state, change.reason), ("halted", state.reason))
        self.assertIn("cut", out)

    def test_a_reason_is_trimmed_and_nul_bytes_dropped(self):
        self.halt("  drill\x00 now  ")
        self.assertEqual(TradingState.load().reason, "drill now")


class HaltServiceTests(TestCase):
    def test_halted_is_logged_after_the_halt_is_stored(self):
        seen: list[str] = []

        class Probe(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(TradingState.load().state)

        probe = Probe(level=logging.WARNING)
        logger = logging.getLogger("trading.services")
        logger.addHandler(probe)
        try:
            state = halt("   ")
        finally:
            logger.removeHandler(probe)
        self.assertEqual(state.state, "halted")
        self.assertEqual(seen, ["halted"])

    def test_the_audit_service_halts_on_any_reason(self):
        user = get_user_model().objects.create_user("op")
        row = trading_state_set(state="halted", reason=" ", user=user)
        self.assertEqual((row.state, row.reason), ("halted", "halted by op (no reason given)"))
        row = trading_state_set(state="halted", reason="y" * 2000, user=user)
        self.assertEqual(len(row.reason), REASON_LENGTH)
        self.assertEqual(TradingStateChange.objects.count(), 2)


@override_settings(TRADING_MODE="paper")
class DashboardHaltTests(TestCase):
    def setUp(self):
        cache.clear()
        self.user = get_user_model().objects.create_user("op", is_staff=True, is_superuser=True)
        self.client.force_login(self.user)

    def test_a_501_character_reason_halts(self):
        self.client.post(reverse("dashboard:halt"), {"reason": "r" * 501})
        state = TradingState.load()
        self.assertEqual(state.state, "halted")
        self.assertEqual(len(state.reason), REASON_LENGTH)
        self.assertTrue(state.reason.endswith(REASON_CUT_NOTE))

    def test_a_blank_or_nul_reason_halts(self):
        for reason in ("", "  ", "\x00"):
            with self.subTest(reason=reason):
                TradingState.objects.update_or_create(
                    pk=TradingState.SINGLETON_PK, defaults={"state": "active", "reason": ""}
                )
                self.client.post(reverse("dashboard:halt"), {"reason": reason})
                state = TradingState.load()
                self.assertEqual(state.state, "halted")
                self.assertEqual(state.reason, "halted by op (no reason given)")
