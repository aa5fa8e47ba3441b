"""Run one trading cycle now (the same service the worker's schedule runs)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from trading.services import job_exit
from trading.tasks import trading_cycle_job


class Command(BaseCommand):
    help = (
        "Run one full cycle: reconcile, decide, execute, track exits, reconcile. Exits 0 when "
        "the run finished, 1 when it failed, 75 when another run holds the lease."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mode", choices=["replay", "paper", "live"], default=None)
        parser.add_argument(
            "--burst",
            type=float,
            default=0,
            help="replay only: keep running cycles for this many seconds",
        )

    def handle(self, *args, mode: str | None, burst: float, **options) -> str:
        mode = mode or settings.TRADING_MODE
        if mode == "live" and settings.TRADING_MODE != "live":
            raise CommandError("Refusing --mode live: TRADING_MODE is not 'live'.")
        if not 0 <= burst <= 3600:  # NaN fails this too
            raise CommandError(f"--burst: {burst} is not from 0 to 3600 seconds")
        return job_exit(trading_cycle_job(mode, burst_seconds=burst))
