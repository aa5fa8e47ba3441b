from __future__ import annotations

from django.core.management.base import BaseCommand

from trading.audit import trading_state_set
from trading.models import TradingState


class Command(BaseCommand):
    help = "Resume trading (active), or --reduce-only to allow exits only."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reduce-only", action="store_true")
        parser.add_argument("--reason", default="resumed by operator")

    def handle(self, *args, reduce_only: bool, reason: str, **options) -> str:
        state = TradingState.State.REDUCE_ONLY if reduce_only else TradingState.State.ACTIVE
        row = trading_state_set(state=state, reason=reason, user=None)
        return f"Trading is {row.get_state_display().lower()}."
