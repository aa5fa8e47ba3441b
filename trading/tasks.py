"""django-q2 tasks: a few lines each, resolving collaborators and calling one service (G7)."""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from trading import services
from trading.exchanges import exchange_for, replay_clock_advance
from trading.forecasters import forecaster_for
from trading.models import JobRun
from trading.signals import cycle_finished

# In replay the worker runs cycles back to back for up to this long per scheduled run, so the
# simulated clock moves much faster than the wall clock (below the django-q2 timeout).
REPLAY_BURST_SECONDS = 90


def run_trading_cycle(mode: str | None = None, *, burst_seconds: float | None = None) -> str:
    mode = mode or settings.TRADING_MODE
    burst = REPLAY_BURST_SECONDS if burst_seconds is None else burst_seconds

    def cycle(run: JobRun, token: int) -> services.CycleReport:
        deadline = time.monotonic() + (burst if mode == "replay" else 0)
        report = None
        while True:
            if mode == "replay":
                _, finished = replay_clock_advance()
                if finished:
                    break
            exchange = exchange_for(mode)
            step = services.trading_cycle_run(
                exchange=exchange, forecaster=forecaster_for(), mode=mode, token=token, run=run
            )
            if report is None:
                report = step
            else:
                report.now = step.now
                for key, value in step.counts.items():
                    report.add(key, value)
            JobRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
            if time.monotonic() >= deadline or not services.lease_held(services.LEASE_NAME, token):
                break
        return report or services.CycleReport(mode, timezone.now(), {"replay_finished": 1})

    summary = services.run_job("trading_cycle", mode, cycle).summary
    cycle_finished.send(sender=run_trading_cycle, mode=mode, summary=summary)
    return summary


def heartbeat() -> str:
    now = timezone.now()
    if settings.TRADING_MODE in ("paper", "live"):
        # /health/ reads what this probe saw; it never calls Kalshi itself.
        from trading.health import exchange_probe

        exchange_probe(exchange_for(settings.TRADING_MODE), settings.TRADING_MODE)
    JobRun.objects.create(job="heartbeat", status=JobRun.Status.OK, finished_at=now, summary="ok")
    return f"heartbeat at {now:%H:%M:%S}"
