"""``manage.py load_recorded_markets [--data DIR]``: load the recorded Kalshi data.

A thin wrapper over ``markets.recorded.recorded_markets_load``; see that module for the files,
the assumptions (open/close times, time zones, results) and the guarantees (idempotent, one
transaction, nothing written when a file is missing or malformed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from markets.recorded import RecordedDataError, recorded_markets_load


class Command(BaseCommand):
    help = (
        "Load the recorded Kalshi markets (series, events, markets, snapshots, results) from "
        "settings.RECORDED_DATA_DIR or --data. Idempotent; all or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            type=Path,
            default=None,
            help="folder in the layout of markets/data/kalshi (default: RECORDED_DATA_DIR)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar (it is off without a TTY)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = Path(options["data"] or settings.RECORDED_DATA_DIR)
        try:
            summary = recorded_markets_load(data_dir=data_dir, progress=not options["no_progress"])
        except RecordedDataError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summary.summary())
