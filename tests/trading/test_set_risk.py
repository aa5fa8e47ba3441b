from __future__ import annotations

from decimal import Decimal

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from trading.models import RiskSettings, RiskSettingsChange


class SetRiskTests(TestCase):
    def test_it_changes_and_audits_a_limit(self):
        out = call_command("set_risk", "max_position_pct=0.02", "skill_min_settled=10")
        self.assertIn("max_position_pct", out)
        settings = RiskSettings.load()
        self.assertEqual(settings.max_position_pct, Decimal("0.02"))
        self.assertEqual(settings.skill_min_settled, 10)
        self.assertEqual(set(RiskSettingsChange.objects.values_list("via", flat=True)), {"cli"})

    def test_it_refuses_bad_input_and_changes_nothing(self):
        for args in (["max_position_pct=1.5"], ["nonsense=1"], ["max_position_pct"]):
            with self.subTest(args=args), self.assertRaises(CommandError):
                call_command("set_risk", *args)
        self.assertFalse(RiskSettingsChange.objects.exists())
        self.assertEqual(RiskSettings.load().max_position_pct, Decimal("0.05"))
