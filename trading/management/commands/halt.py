from __future__ import annotations

from django.core.management.base import BaseCommand

from trading.services import halt


class Command(BaseCommand):
    help = "Halt trading (the kill switch): no order is sent until resume."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", required=True)

    def handle(self, *args, reason: str, **options) -> str:
        state = halt(reason)
        return f"Trading halted: {state.reason}"
