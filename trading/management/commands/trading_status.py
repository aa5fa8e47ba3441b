"""Print trading state, mode, positions, P&L and the last job runs."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Sum

from markets.money import format_dollars
from trading import services
from trading.models import AccountSnapshot, JobRun, Order, Position, TradingState


class Command(BaseCommand):
    help = "Trading state, mode, open positions, P&L and the last job runs."

    def handle(self, *args, **options) -> str:
        mode = settings.TRADING_MODE
        services.runs_abandon()  # a run whose process died shows as abandoned, not running
        state = TradingState.load()
        lines = [
            f"Mode: {mode}   State: {state.get_state_display()}"
            + (f" ({state.reason})" if state.reason else "")
            + f"   Live armed: {'yes' if state.live_armed else 'no'}",
        ]
        if mode == "replay":
            lines.append(f"Replay clock: {state.replay_clock or 'not started'}")
        snap = AccountSnapshot.objects.filter(mode=mode).order_by("-ts").first()
        if snap:
            lines.append(
                f"Cash: {format_dollars(snap.cash)}   Equity: {format_dollars(snap.equity)}"
            )
        realized = Position.objects.filter(mode=mode).aggregate(s=Sum("realized_pnl"))["s"]
        lines.append(f"Realized P&L: {format_dollars(realized or Decimal(0))}")
        open_positions = Position.objects.open().filter(mode=mode).select_related("market")
        lines.append(f"Open positions: {open_positions.count()}")
        for p in open_positions[:20]:
            lines.append(f"  {p.market.ticker}: {p.count} {p.side.upper()} @ {p.avg_price:.4f}")
        blocking = Order.objects.blocking().filter(mode=mode).count()
        lines.append(f"Orders of unknown outcome or being cancelled: {blocking}")
        lines.append("Last runs:")
        for run in JobRun.objects.exclude(job="heartbeat")[:5]:
            lines.append(
                f"  {run.started_at:%Y-%m-%d %H:%M:%S} {run.job} {run.status}: {run.summary}"
            )
        return "\n".join(lines)
