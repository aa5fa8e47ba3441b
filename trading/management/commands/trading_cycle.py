"""Run one trading cycle now (the same service the worker's schedule runs)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from trading.tasks import run_trading_cycle


class Command(BaseCommand):
    help = "Run one full cycle: reconcile, decide, execute, track exits, reconcile."

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
            self.stderr.write("Refusing --mode live: TRADING_MODE is not 'live'.")
            return ""
        return run_trading_cycle(mode, burst_seconds=burst)
