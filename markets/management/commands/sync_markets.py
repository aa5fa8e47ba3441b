"""``manage.py sync_markets [--status open]``: copy Kalshi's markets into the database.

A thin wrapper over ``markets.services.market_sync`` (bulk upserts plus one snapshot per market
per run); prints a progress bar on a terminal and one summary line.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.logging import redact
from markets import kalshi
from markets.services import market_sync


class Command(BaseCommand):
    help = "Sync Kalshi markets (default: the open ones) into the database, with a snapshot each."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            default="open",
            choices=[*kalshi.MARKET_STATUS_FILTERS, "all"],
            help="Kalshi's market status filter (default: open; 'all' for no filter)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar (it is off without a TTY)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        status = None if options["status"] == "all" else options["status"]
        try:
            with kalshi.kalshi_client() as client:
                summary = market_sync(
                    client=client, status=status, progress=not options["no_progress"]
                )
        except kalshi.KalshiError as exc:
            # Through the log redaction: an exchange's error text may echo our request headers.
            raise CommandError(redact(f"Kalshi sync failed: {exc.message}")) from None
        self.stdout.write(summary.summary())
