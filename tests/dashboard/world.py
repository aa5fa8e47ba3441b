"""Data for the dashboard tests: a synthetic world of any size, and the replayed demo world."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from itertools import count
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from markets.models import Event, Market, MarketSnapshot, Series
from trading.models import (
    AccountSnapshot,
    DailyCost,
    Decision,
    Fill,
    Forecast,
    JobRun,
    Order,
    Position,
    RiskSettingsChange,
    Settlement,
    TradingStateChange,
)
from trading.roles import ROLES, grant

SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"
PASSWORD = "a-long-test-password-for-the-desk"

_seq = count(1)

CHECKS = [
    {"name": "daily_loss", "passed": True, "value": "0", "limit": "-150.00", "reason": "x"},
    {"name": "open_positions", "passed": True, "value": "3", "limit": "15", "reason": "x"},
    {"name": "position_size", "passed": True, "value": "4.2000", "limit": "50.00", "reason": "x"},
    {"name": "cash_reserve", "passed": True, "value": "900.00", "limit": "100.00", "reason": "x"},
    {"name": "category_exposure", "passed": True, "value": "4.2", "limit": "300", "reason": "x"},
]

TRADED_DETAILS = {
    "ticker": "X",
    "category": "Climate",
    "status": "active",
    "hours_to_close": "40.00",
    "volume": "1000.00",
    "yes_bid": "0.4000",
    "yes_ask": "0.4200",
    "no_bid": "0.5800",
    "no_ask": "0.6000",
    "trading_state": "active",
    "forecaster": "market",
    "probability": "0.55",
    "confidence": "0.7",
    "min_confidence": "0.5",
    "edge_yes": "0.12",
    "edge_no": "-0.2",
    "side": "yes",
    "price": "0.4200",
    "win_probability": "0.55",
    "raw_edge": "0.13",
    "fee_per_contract": "0.02",
    "edge": "0.11",
    "threshold": "0.08",
    "kelly_full": "0.2",
    "kelly": "0.15",
    "budget": "50",
    "limited_by": "position_pct",
    "proposed_count": "10",
    "cost": "4.37",
    "order_fee": "0.17",
    "checked_cost": "4.37",
    "checks": CHECKS,
    "reason": "traded",
}


def make_operator(username: str = "operator", roles: tuple[str, ...] = tuple(ROLES)):
    """A desk user (not staff, not superuser) holding ``roles``: by default every role."""
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    grant(user, *roles)
    return user


class World:
    """Rows of every kind the dashboard shows, ``n`` of each (call ``grow`` to add more).

    ``focus_market`` and ``focus_decision`` get ``n`` snapshots, forecasts, decisions, fills
    and exits of their own, so their detail pages grow with ``n`` too.
    """

    def __init__(self, mode: str = "paper", now=None) -> None:
        self.mode = mode
        self.now = now or timezone.now()
        series = Series.objects.create(ticker="KXWORLD", title="World", category="Climate")
        self.event = Event.objects.create(
            event_ticker="KXWORLD-E1", series=series, title="World event", category="Climate"
        )
        self.focus_market = self._market()
        self.focus_decision = Decision.objects.create(
            market=self.focus_market,
            mode=mode,
            reason="traded",
            side="yes",
            action="buy",
            price=D("0.4200"),
            count=D("10"),
            edge=D("0.11"),
            details=TRADED_DETAILS,
            decided_at=self.now - timedelta(hours=5),
            created_at=self.now - timedelta(hours=5),
            forecast=self._forecast(self.focus_market, scored=True),
        )
        self.focus_order = Order.objects.create(
            decision=self.focus_decision,
            market=self.focus_market,
            mode=mode,
            client_order_id=f"kd-{mode}-{self.focus_decision.pk}",
            exchange_order_id=f"ex-{next(_seq)}",
            side="yes",
            action="buy",
            yes_price=D("0.4200"),
            count=D("1000"),
            filled_count=D("0"),
            status="filled",
        )
        self.focus_position = Position.objects.create(
            mode=mode,
            market=self.focus_market,
            side="yes",
            count=D("10"),
            cost_basis=D("4.20"),
            opened_at=self.now - timedelta(hours=4),
        )
        Settlement.objects.create(
            mode=mode,
            market=self.focus_market,
            position=None,
            result="yes",
            settled_at=self.now,
        )
        self.size = 0

    def _market(self, **kw) -> Market:
        n = next(_seq)
        defaults = {
            "ticker": f"KXWORLD-E1-M{n}",
            "event": self.event,
            "title": f"Market {n}",
            "category": "Climate" if n % 2 else "Economics",
            "status": Market.Status.ACTIVE,
            "close_time": self.now + timedelta(hours=10 + n),
            "yes_bid": D("0.4000"),
            "yes_ask": D("0.4200"),
            "no_bid": D("0.5800"),
            "no_ask": D("0.6000"),
            "last_price": D("0.4100"),
            "volume": D("1000"),
        }
        defaults.update(kw)
        return Market.objects.create(**defaults)

    def _forecast(self, market: Market, *, scored: bool) -> Forecast:
        n = next(_seq)
        fields = {}
        if scored:
            fields = {
                "outcome": n % 2,
                "brier": D("0.2025"),
                "market_brier": D("0.1681"),
                "log_loss": D("0.6"),
                "scored_at": self.now - timedelta(days=n % 3),
            }
        return Forecast.objects.create(
            market=market,
            mode=self.mode,
            forecaster="market" if n % 2 else "baseline",
            probability=D(n % 10) / 10 + D("0.05"),
            confidence=D("0.7"),
            market_price=D("0.41"),
            rationale="Because.",
            created_at=self.now - timedelta(minutes=n),
            **fields,
        )

    def grow(self, to: int) -> World:
        """Add rows until there are ``to`` of each kind."""
        reasons = ["traded", "edge_too_small", "skip_volume", "risk_position_size", "exit"]
        for i in range(self.size, to):
            n = next(_seq)
            market = self._market()
            started = self.now - timedelta(minutes=n)
            run = JobRun.objects.create(
                job="trading_cycle",
                mode=self.mode,
                status="ok",
                started_at=started,
                heartbeat_at=started + timedelta(seconds=2),
                finished_at=started + timedelta(seconds=2),
                summary=f"{self.mode} cycle: {reasons[i % len(reasons)]}=1",
            )
            MarketSnapshot.objects.create(
                market=self.focus_market,
                ts=self.now - timedelta(minutes=5 * n),
                yes_bid=D("0.40"),
                yes_ask=D("0.42"),
                last_price=D("0.41"),
            )
            MarketSnapshot.objects.create(market=market, ts=self.now, yes_bid=D("0.30"))
            forecast = self._forecast(self.focus_market, scored=i % 2 == 0)
            self._forecast(market, scored=True)
            reason = reasons[i % len(reasons)]
            for target in (market, self.focus_market):
                decision = Decision.objects.create(
                    market=target,
                    mode=self.mode,
                    run=run,
                    reason=reason,
                    forecast=forecast,
                    side="yes",
                    price=D("0.42"),
                    count=D("5") if reason in ("traded", "exit") else None,
                    details=TRADED_DETAILS if reason == "traded" else {"filter": reason},
                    decided_at=self.now - timedelta(minutes=n),
                    created_at=self.now - timedelta(minutes=n),
                )
            order = Order.objects.create(
                decision=decision,
                market=market,
                mode=self.mode,
                client_order_id=f"kd-{self.mode}-w{n}",
                exchange_order_id=f"ex-w{n}",
                side="yes",
                action="buy",
                yes_price=D("0.42"),
                count=D("5"),
                status="unknown" if i % 4 == 0 else "acked",
            )
            Fill.objects.create(
                fill_id=f"fill-w{n}",
                mode=self.mode,
                order=self.focus_order,
                exchange_order_id=self.focus_order.exchange_order_id,
                market=self.focus_market,
                side="yes",
                action="buy",
                count=D("1"),
                yes_price=D("0.42"),
                executed_at=self.now - timedelta(hours=4),
            )
            Fill.objects.create(
                fill_id=f"fill-x{n}",
                mode=self.mode,
                order=order,
                exchange_order_id=order.exchange_order_id,
                market=market,
                side="no",
                action="sell",
                count=D("1"),
                yes_price=D("0.42"),
                executed_at=self.now,
            )
            exit_decision = Decision.objects.create(
                market=self.focus_market,
                mode=self.mode,
                reason="exit",
                side="yes",
                price=D("0.45"),
                count=D("1"),
                details={"exit": "take_profit", "bid": "0.45", "avg_price": "0.42"},
                decided_at=self.now - timedelta(hours=3, minutes=n),
            )
            Order.objects.create(
                decision=exit_decision,
                market=self.focus_market,
                mode=self.mode,
                client_order_id=f"kd-{self.mode}-x{n}",
                purpose="exit",
                side="yes",
                action="sell",
                yes_price=D("0.45"),
                count=D("1"),
                status="approved",
            )
            status = "open" if i % 2 else "closed"
            Position.objects.create(
                mode=self.mode,
                market=market,
                strategy="directional" if i % 3 else "scalping",
                status=status,
                side="yes" if i % 2 else "no",
                count=D("5") if status == "open" else D("0"),
                cost_basis=D("2.10") if status == "open" else D("0"),
                realized_pnl=D("1.5") if i % 3 else D("-0.7"),
                opened_at=self.now - timedelta(hours=n),
            )
            Settlement.objects.create(
                mode=self.mode, market=market, result="no", settled_at=self.now
            )
            AccountSnapshot.objects.create(
                mode=self.mode,
                ts=self.now - timedelta(minutes=n),
                cash=D("1000") - n,
                equity=D("1000") + (n % 7) - 3,
            )
            DailyCost.objects.get_or_create(
                date=timezone.localdate() - timedelta(days=i), defaults={"llm_cost": D("0.5")}
            )
            # Equity snapshots a minute apart, before the replay's own ones when ``now`` is the
            # replay clock (unique per mode and time).
            RiskSettingsChange.objects.create(
                field="max_open_positions", old_value="1", new_value="2"
            )
            TradingStateChange.objects.create(old_state="active", new_state="halted", reason="x")
        self.size = to
        return self


def replay_world(cycles: int = 30) -> None:
    """The demo's data: the small recorded set, traded for ``cycles`` replay cycles by a
    bullish test forecaster (needs ``TRADING_MODE=replay``)."""
    from tests.forecasters import Bullish
    from trading import services
    from trading.exchanges import exchange_for, replay_clock_advance

    call_command("load_recorded_markets", data=str(SMALL), verbosity=0)
    for _ in range(cycles):
        _, finished = replay_clock_advance()
        if finished:
            break
        services.run_job(
            "trading_cycle",
            "replay",
            lambda run, token: services.trading_cycle_run(
                exchange=exchange_for("replay"),
                forecaster=Bullish(),
                mode="replay",
                token=token,
                run=run,
            ),
        )
