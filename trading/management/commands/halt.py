from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from trading.audit import REASON_CUT_NOTE
from trading.services import cancels_send, halt


class Command(BaseCommand):
    help = (
        "Halt trading (the kill switch): no order is sent until resume. Any reason halts: a "
        "blank one gets a default, a long one is cut to fit. With --cancel-orders, also cancel "
        "all our resting orders."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--reason", required=True, help="why trading stops")
        parser.add_argument(
            "--cancel-orders",
            action="store_true",
            help=(
                "withdraw unsent orders and cancel every resting order: those of TRADING_MODE "
                "at once, any other mode's at its next cycle"
            ),
        )

    def handle(self, *args, reason: str, cancel_orders: bool = False, **options) -> str:
        state = halt(reason, cancel_orders=cancel_orders)
        note = " (the reason was cut to fit)" if state.reason.endswith(REASON_CUT_NOTE) else ""
        message = f"Trading halted{note}: {state.reason}"
        if cancel_orders:
            from trading.exchanges import exchange_for

            mode = settings.TRADING_MODE
            try:
                exchange = exchange_for(mode)
                report = cancels_send(exchange=exchange, mode=mode, now=exchange.now())
            except Exception as exc:  # the halt and the cancel requests are committed already
                return (
                    f"{message}; cancels recorded but not sent now ({type(exc).__name__}): "
                    "the next cycle sends them"
                )
            sent = report.counts.get("orders_canceled", 0)
            unsure = report.counts.get("cancels_unknown", 0) + report.counts.get(
                "cancels_refused", 0
            )
            message += f"; {sent} resting orders cancelled"
            if unsure:
                message += f", {unsure} left for reconcile to resolve"
        return message
