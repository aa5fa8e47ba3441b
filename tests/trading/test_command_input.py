"""Command arguments are validated up front: a bad one is a CommandError naming the argument
(no traceback, nothing stored), with the same limits as ``set_risk`` and the admin."""

from __future__ import annotations

import shutil
import tempfile
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from markets.recorded import RecordedDataError, recorded_data_parse
from trading.models import BacktestRun

SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"


class BacktestArgumentTests(TestCase):
    def backtest(self, *args: str) -> str:
        return call_command(
            "backtest", "--data", str(SMALL), "--no-progress", *args, stderr=StringIO()
        )

    def refused(self, *args: str, naming: str) -> None:
        with self.assertRaises(CommandError) as caught:
            self.backtest(*args)
        self.assertIn(naming, str(caught.exception))
        self.assertFalse(BacktestRun.objects.exists())

    def test_from_after_to_is_refused(self):
        self.refused("--from", "2025-09-01", "--to", "2025-08-01", naming="--from")
        self.refused("--from", "2025-08-01", "--to", "2025-08-01", naming="--from")

    def test_a_step_must_be_a_positive_number_of_minutes(self):
        for step in ("0", "-5", "100000000"):
            with self.subTest(step=step):
                self.refused("--step", step, naming="--step")

    def test_cash_must_be_a_positive_finite_amount(self):
        for cash in ("NaN", "sNaN", "Infinity", "-100", "0", "1e400", "abc", "0.001"):
            with self.subTest(cash=cash):
                self.refused("--cash", cash, naming="--cash")

    def test_limits_are_checked_like_set_risk(self):
        for pair in (
            "max_position_pct=-1",
            "max_position_pct=5",
            "max_position_pct=NaN",
            "kelly_fraction=2",
            "max_open_positions=-3",
            "edge_high=0.5",  # the edge tiers must stay ordered (RiskSettings.clean)
            "high_confidence=7",
            "nonsense=1",
        ):
            with self.subTest(pair=pair):
                self.refused("--set", pair, naming="--set")

    def test_valid_arguments_still_run(self):
        text = self.backtest(
            "--step", "60", "--cash", "250", "--set", "max_position_pct=0.02", "--no-store"
        )
        self.assertIn("P&L after fees", text)


class RecordedTickerTests(TestCase):
    def test_a_huge_strike_is_a_located_data_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            shutil.copytree(SMALL, data)
            path = data / "juliettemorrell-kalshi-test" / "kalshi_markets.csv"
            lines = path.read_text().splitlines()
            huge = "9" * 300 + ".5"
            lines.append(
                f"NY,2026-04-22,KXHIGHNY-26APR22,KXHIGHNY-26APR22-B{huge},1,2,bracket,"
                "0.02,2026-04-21T14:00:41Z,0.01,2026-04-22T20:56:20Z,no"
            )
            path.write_text("\n".join(lines) + "\n")
            with self.assertRaises(RecordedDataError) as caught:
                recorded_data_parse(data_dir=data)
        self.assertIn("strike", str(caught.exception))
        self.assertIn("kalshi_markets.csv", str(caught.exception))


class FarDateArgumentTests(TestCase):
    def test_times_out_of_range_are_refused(self):
        for value in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
            with self.subTest(value=value):
                with self.assertRaises(CommandError) as caught:
                    call_command("forecast_report", "--since", value, stdout=StringIO())
                self.assertIn("--since", str(caught.exception))
                with self.assertRaises(CommandError) as caught:
                    call_command("backtest", "--data", str(SMALL), "--no-progress", "--from", value)
                self.assertIn("--from", str(caught.exception))
