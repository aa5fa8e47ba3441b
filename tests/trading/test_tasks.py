"""The scheduled trading job: replay bursts stop at a signal, after the cycle in progress."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from unittest import mock

from django.core.management import call_command
from django.test import TestCase, override_settings

from trading import services, tasks
from trading.models import JobRun

SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"


@override_settings(TRADING_MODE="replay")
class ReplayBurstTests(TestCase):
    def test_a_sigterm_ends_the_burst_after_the_current_cycle(self):
        call_command("load_recorded_markets", data=str(SMALL), verbosity=0)
        real = services.trading_cycle_run
        calls = []

        def cycle_then_signal(**kwargs):
            calls.append(1)
            report = real(**kwargs)
            os.kill(os.getpid(), signal.SIGTERM)  # what Ctrl-C / a stop sends the worker
            return report

        previous = signal.getsignal(signal.SIGTERM)
        with mock.patch.object(services, "trading_cycle_run", cycle_then_signal):
            tasks.run_trading_cycle("replay", burst_seconds=60)
        self.assertEqual(len(calls), 1)
        self.assertEqual(JobRun.objects.get(job="trading_cycle").status, "ok")
        self.assertIs(signal.getsignal(signal.SIGTERM), previous)  # handlers restored
