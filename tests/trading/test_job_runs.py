"""Failures do not look like success: job commands exit non-zero when their run failed and with
``EXIT_SKIPPED`` when another run holds the lease; a run whose process died is marked
abandoned (shown by ``trading_status``, the dashboard and /health/detail/), and a lease whose
holder is provably dead on this host is taken over at once."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase, override_settings
from django.utils import timezone

from trading import services
from trading.models import JobLease, JobRun


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


HOST = socket.gethostname()


def hold_lease(owner: str, *, seconds: int = 600) -> None:
    now = timezone.now()
    JobLease.objects.update_or_create(
        name=services.LEASE_NAME,
        defaults={
            "owner": owner,
            "token": 7,
            "acquired_at": now,
            "expires_at": now + timedelta(seconds=seconds),
        },
    )


def running_run(owner: str, job: str = "trading_cycle") -> JobRun:
    started = timezone.now() - timedelta(minutes=3)
    return JobRun.objects.create(
        job=job, mode="replay", owner=owner, started_at=started, heartbeat_at=started
    )


@override_settings(TRADING_MODE="replay")
class ExitCodeTests(TestCase):
    def test_a_skipped_cycle_exits_with_the_skipped_code(self):
        hold_lease("elsewhere.example:1")
        with self.assertRaises(CommandError) as caught:
            call_command("trading_cycle", stdout=StringIO(), stderr=StringIO())
        self.assertEqual(caught.exception.returncode, services.EXIT_SKIPPED)
        self.assertIn("lease", str(caught.exception))
        self.assertEqual(JobRun.objects.get().status, JobRun.Status.SKIPPED)

    def test_a_failed_cycle_exits_non_zero(self):
        with (
            mock.patch.object(services, "trading_cycle_run", side_effect=RuntimeError("boom")),
            self.assertRaises(CommandError) as caught,
        ):
            call_command("trading_cycle", "--burst", "0", stdout=StringIO(), stderr=StringIO())
        self.assertEqual(caught.exception.returncode, services.EXIT_FAILED)
        self.assertEqual(JobRun.objects.get().status, JobRun.Status.FAILED)

    def test_a_failed_or_skipped_reconcile_exits_non_zero(self):
        with (
            mock.patch(
                "trading.management.commands.reconcile.exchange_for",
                side_effect=RuntimeError("boom"),
            ),
            self.assertRaises(CommandError) as caught,
        ):
            call_command("reconcile", stdout=StringIO())
        self.assertEqual(caught.exception.returncode, services.EXIT_FAILED)
        hold_lease("elsewhere.example:1")
        with self.assertRaises(CommandError) as caught:
            call_command("reconcile", stdout=StringIO())
        self.assertEqual(caught.exception.returncode, services.EXIT_SKIPPED)

    def test_refusing_live_mode_exits_non_zero(self):
        with self.assertRaises(CommandError):
            call_command("trading_cycle", "--mode", "live", stdout=StringIO(), stderr=StringIO())


class AbandonedRunTests(TestCase):
    def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_at_once(self):
        hold_lease(f"{HOST}:{dead_pid()}")
        token = services.lease_acquire(services.LEASE_NAME, owner=services._owner())
        self.assertEqual(token, 8)
        self.assertEqual(JobLease.objects.get().owner, services._owner())

    def test_a_lease_held_by_a_live_process_or_another_host_is_not(self):
        for owner in (f"{HOST}:{subprocess.os.getppid()}", "elsewhere.example:1", "garbage"):
            with self.subTest(owner=owner):
                hold_lease(owner)
                self.assertIsNone(services.lease_acquire(services.LEASE_NAME, owner="me:1"))

    def test_the_next_run_marks_a_dead_processs_run_abandoned(self):
        dead = running_run(f"{HOST}:{dead_pid()}")
        sync = running_run(f"{HOST}:{dead_pid()}", job="sync_markets")
        hold_lease(dead.owner)
        run = services.run_job("trading_cycle", "replay", lambda run, token: _report())
        self.assertEqual(run.status, JobRun.Status.OK)
        self.assertEqual(run.owner, services._owner())
        for row in (dead, sync):
            row.refresh_from_db()
            self.assertEqual(row.status, JobRun.Status.ABANDONED)
            self.assertIsNotNone(row.finished_at)

    def test_a_run_on_another_host_is_abandoned_once_its_lease_expired(self):
        other = running_run("elsewhere.example:42")
        hold_lease(other.owner, seconds=600)
        self.assertEqual(services.runs_abandon(), 0)  # its holder may be alive
        JobLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        self.assertEqual(services.runs_abandon(), 1)
        other.refresh_from_db()
        self.assertEqual(other.status, JobRun.Status.ABANDONED)

    def test_a_live_run_is_left_alone(self):
        me = running_run(services._owner())
        hold_lease(me.owner)
        self.assertEqual(services.runs_abandon(), 0)
        me.refresh_from_db()
        self.assertEqual(me.status, JobRun.Status.RUNNING)

    def test_trading_status_and_health_show_an_abandoned_run(self):
        dead = running_run(f"{HOST}:{dead_pid()}")
        hold_lease(dead.owner)
        out = call_command("trading_status", stdout=StringIO())
        self.assertIn("trading_cycle abandoned", out)
        staff = get_user_model().objects.create_user("staff", is_staff=True)
        self.client.force_login(staff)
        detail = self.client.get("/health/detail/", HTTP_ACCEPT="application/json").json()
        self.assertIn("abandoned", str(detail).lower())
        staff.is_superuser = True
        staff.save()
        self.assertContains(self.client.get("/"), "Abandoned (its process died)")


def _report() -> services.CycleReport:
    return services.CycleReport("replay", timezone.now())


@pytest.mark.slow
def test_a_killed_cycle_is_abandoned_and_the_next_starts_at_once(tmp_path):
    """A real ``trading_cycle`` process SIGKILLed mid-cycle with a 10-minute lease: the next
    one takes the lease at once (its holder is gone), marks the killed run abandoned, and exits
    0; with the lease held by a live process elsewhere, a cycle exits ``EXIT_SKIPPED``."""
    from tests.trading.test_kill_restart import ROOT, SETUP

    db = tmp_path / "runs.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db}",
        TRADING_MODE="replay",
        FORECASTER="tests.forecasters.Bullish",
        TRADING_LEASE_TTL="600",
        SECRET_KEY="runs-test-secret-key-0123456789-abcdefghijklmnopq",
        DEBUG="0",
    )

    def manage(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "-v0").returncode == 0
    assert manage("shell", "-c", SETUP).returncode == 0
    killed = manage("trading_cycle", "--burst", "0", KD_CRASH_POINT="before_send")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    status = manage("trading_status")
    assert "trading_cycle abandoned" in status.stdout, status.stdout

    again = manage("trading_cycle", "--burst", "0")
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as conn:
        statuses = [row[0] for row in conn.execute("SELECT status FROM trading_jobrun ORDER BY id")]
        conn.execute(
            "UPDATE trading_joblease SET owner = 'elsewhere.example:1', "
            "expires_at = datetime('now', '+1 hour')"
        )
    assert statuses[:2] == ["abandoned", "ok"], statuses
    skipped = manage("trading_cycle", "--burst", "0")
    assert skipped.returncode == services.EXIT_SKIPPED, skipped.stderr
    assert "lease" in skipped.stderr
