from __future__ import annotations

from django.core.management.base import BaseCommand

from trading.audit import REASON_CUT_NOTE
from trading.services import halt


class Command(BaseCommand):
    help = (
        "Halt trading (the kill switch): no order is sent until resume. Any reason halts: a "
        "blank one gets a default, a long one is cut to fit."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", required=True, help="why trading stops")

    def handle(self, *args, reason: str, **options) -> str:
        state = halt(reason)
        note = " (the reason was cut to fit)" if state.reason.endswith(REASON_CUT_NOTE) else ""
        return f"Trading halted{note}: {state.reason}"
