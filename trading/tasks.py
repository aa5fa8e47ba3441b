"""django-q2 tasks: a few lines each, resolving collaborators and calling one service."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

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


class _StopRequested:
    """Within a replay burst, SIGINT/SIGTERM end the burst after the current cycle (so Ctrl-C
    on ``make demo`` stops the worker at once instead of after the burst)."""

    requested = False

    def __enter__(self) -> _StopRequested:
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signals to catch here
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def run_trading_cycle(mode: str | None = None, *, burst_seconds: float | None = None) -> str:
    """The scheduled task: one cycle (a burst of them in replay); returns the run's summary."""
    return trading_cycle_job(mode, burst_seconds=burst_seconds).summary


def trading_cycle_job(mode: str | None = None, *, burst_seconds: float | None = None) -> JobRun:
    """Run the trading cycle under the lease (``services.run_job``); return its ``JobRun``."""
    mode = mode or settings.TRADING_MODE
    burst = REPLAY_BURST_SECONDS if burst_seconds is None else burst_seconds

    def cycle(run: JobRun, token: int) -> services.CycleReport:
        deadline = time.monotonic() + (burst if mode == "replay" else 0)
        report = None
        with _StopRequested() as stop:
            while True:
                if stop.requested:
                    break
                if mode == "replay":
                    _, finished = replay_clock_advance()
                    if finished:
                        break
                if mode in ("paper", "live") and _sync_due():
                    _sync_markets()
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
                if time.monotonic() >= deadline or not services.lease_held(
                    services.LEASE_NAME, token
                ):
                    break
        return report or services.CycleReport(mode, timezone.now(), {"replay_finished": 1})

    run = services.run_job("trading_cycle", mode, cycle)
    cycle_finished.send(sender=run_trading_cycle, mode=mode, summary=run.summary)
    return run


SYNC_INTERVAL = timedelta(minutes=5)


def _sync_due() -> bool:
    last = (
        JobRun.objects.filter(job="sync_markets", status=JobRun.Status.OK)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return last is None or timezone.now() - last >= SYNC_INTERVAL


def _sync_markets() -> None:
    """Open markets from Kalshi, then the results of closed markets we hold or forecast."""
    from markets.kalshi import kalshi_client
    from markets.services import market_sync

    run = JobRun.objects.create(
        job="sync_markets", mode=settings.TRADING_MODE, owner=services._owner()
    )
    try:
        with kalshi_client() as client:
            opened = market_sync(client=client)
            pending = services.tickers_awaiting_results(now=timezone.now())
            closed = market_sync(client=client, status=None, tickers=pending)
    except Exception as exc:
        run.status, run.error = JobRun.Status.FAILED, f"{type(exc).__name__}"
        run.finished_at = timezone.now()
        run.save()
        raise
    run.status = JobRun.Status.OK
    run.finished_at = run.heartbeat_at = timezone.now()
    run.summary = f"{opened.summary()}; results checked for {len(pending)} closed markets"[:500]
    run.counts = {
        "markets": opened.seen,
        "closed_checked": closed.seen,
        "skipped": opened.skipped + closed.skipped,  # unreadable or unstorable markets
    }
    run.save()


def heartbeat() -> str:
    now = timezone.now()
    if settings.TRADING_MODE in ("paper", "live"):
        # /health/ reads what this probe saw; it never calls Kalshi itself.
        from trading.health import exchange_probe

        exchange_probe(exchange_for(settings.TRADING_MODE), settings.TRADING_MODE)
    JobRun.objects.create(job="heartbeat", status=JobRun.Status.OK, finished_at=now, summary="ok")
    return f"heartbeat at {now:%H:%M:%S}"
