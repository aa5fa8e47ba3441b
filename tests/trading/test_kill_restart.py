"""Fault test (docs/ORDER_PROTOCOL.md): a real ``trading_cycle`` process is SIGKILLed at each step
of execute and of cancel, and restarted, many times. The simulated exchange's ledger of
accepted orders is the oracle: no client_order_id is ever accepted twice, every accepted order
is known to our books (no orphans), and no order stays of unknown outcome once reconciliation
has run. Cancels: twelve entries of ours rest on the exchange past their expiry, so cycles
cancel them; killed before the cancel is sent, after, and after its commit, no order is ever
cancelled twice (the processes' "Cancel sent" log lines), and every one ends cancelled on the
exchange and in our books, with no cancel left in flight.

Each run is a separate ``manage.py trading_cycle`` process on a file database, in replay mode
with a forecaster that wants to buy everything, so every cycle sends orders.
``KILL_CYCLES`` (default 4) sets the kills per crash point.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Cancel points first: their supply is the resting entries set up below, which any cycle not
# killed at a cancel point cancels all at once.
CANCEL_POINTS = ("before_cancel_send", "after_cancel_send", "after_cancel_commit")
CRASH_POINTS = (*CANCEL_POINTS, "before_send", "after_send", "after_commit")
RESTING = 12

SETUP = """
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from markets.models import Event, Market, MarketSnapshot, Series, Source
from trading.models import RiskSettings
t0 = datetime(2025, 6, 1, 14, 0, tzinfo=timezone.utc)
series = Series.objects.create(ticker="KXKILL", category="Test")
event = Event.objects.create(event_ticker="KXKILL-1", series=series, source=Source.RECORDED)
snaps = []
for i in range(40):
    m = Market.objects.create(
        ticker=f"KXKILL-1-M{i}", event=event, status="finalized", category="Test",
        open_time=t0, close_time=t0 + timedelta(days=2), result="no",
        settlement_value=Decimal("0"), source=Source.RECORDED,
    )
    for step in range(0, 48 * 12, 3):
        price = Decimal("0.20") + Decimal(i % 10) / 100
        snaps.append(MarketSnapshot(market=m, ts=t0 + timedelta(minutes=5 * step),
                                    yes_bid=price, yes_ask=price + Decimal("0.02")))
MarketSnapshot.objects.bulk_create(snaps)
RiskSettings.objects.update_or_create(pk=1, defaults={"max_open_positions": 1000,
    "max_category_exposure_pct": Decimal("1"), "max_position_pct": Decimal("0.01")})
# Entries of ours resting far below the book, already past their expiry: cycles cancel them.
from markets.models import SimAccount, SimOrder
from trading.models import Decision, Order
account, _ = SimAccount.objects.get_or_create(
    name="replay", defaults={"cash": Decimal("1000"), "starting_cash": Decimal("1000")})
for i in range(12):
    m = Market.objects.get(ticker=f"KXKILL-1-M{i}")
    d = Decision.objects.create(mode="replay", market=m, reason="traded", side="yes",
        action="buy", price=Decimal("0.05"), count=Decimal("10"), created_at=t0, decided_at=t0)
    cid = f"kd-replay-{d.pk}"
    SimOrder.objects.create(account=account, order_id=f"SIM-REST-{i}", client_order_id=cid,
        ticker=m.ticker, side="yes", action="buy", yes_price=Decimal("0.05"),
        count=Decimal("10"), created_time=t0)
    Order.objects.create(mode="replay", decision=d, market=m, client_order_id=cid,
        exchange_order_id=f"SIM-REST-{i}", side="yes", action="buy",
        yes_price=Decimal("0.05"), count=Decimal("10"), status="acked", created_at=t0,
        submitted_at=t0, expires_at=t0)
"""


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{db}",
        TRADING_MODE="replay",
        FORECASTER="tests.forecasters.Bullish",
        TRADING_LEASE_TTL="1",
        SECRET_KEY=env.get("SECRET_KEY") or "kill-test-secret-key-0123456789-abcdefghijklmnop",
        DEBUG="0",
        **extra,
    )
    env.pop("KD_CRASH_POINT", None) if "KD_CRASH_POINT" not in extra else None
    return env


def _manage(db: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(db, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_killed_and_restarted_cycles_never_duplicate_or_orphan_an_order(tmp_path):
    db = tmp_path / "kill.sqlite3"
    assert _manage(db, "migrate", "-v0").returncode == 0
    setup = _manage(db, "shell", "-c", SETUP)
    assert setup.returncode == 0, setup.stderr
    kills_per_point = int(os.environ.get("KILL_CYCLES", "4"))
    kills = dict.fromkeys(CRASH_POINTS, 0)
    logs = []
    for point in CRASH_POINTS:
        for _ in range(kills_per_point):
            result = _manage(db, "trading_cycle", KD_CRASH_POINT=point)
            logs.append(result.stderr)
            if result.returncode == -signal.SIGKILL:
                kills[point] += 1
            else:
                assert result.returncode == 0, result.stderr
            time.sleep(1.1)  # the killed run's lease expires
    # Restart cleanly; reconciliation resolves whatever the kills left behind.
    for _ in range(3):
        result = _manage(db, "trading_cycle")
        logs.append(result.stderr)
        assert result.returncode == 0, result.stderr

    assert all(n == kills_per_point for n in kills.values()), kills
    with sqlite3.connect(db) as conn:
        duplicates = conn.execute(
            "SELECT client_order_id, COUNT(*) FROM markets_simorder "
            "GROUP BY client_order_id HAVING COUNT(*) > 1"
        ).fetchall()
        orphans = conn.execute(
            "SELECT client_order_id FROM markets_simorder WHERE client_order_id NOT IN "
            "(SELECT client_order_id FROM trading_order)"
        ).fetchall()
        unresolved = conn.execute(
            "SELECT client_order_id, status FROM trading_order "
            "WHERE status IN ('submitting', 'unknown')"
        ).fetchall()
        accepted = conn.execute("SELECT COUNT(*) FROM markets_simorder").fetchone()[0]
        per_decision = conn.execute(
            "SELECT decision_id, COUNT(*) FROM trading_order GROUP BY decision_id "
            "HAVING COUNT(*) > 1"
        ).fetchall()
        halted = conn.execute("SELECT state, reason FROM trading_tradingstate").fetchall()
        resting_ours = conn.execute(
            "SELECT o.client_order_id, o.status, s.status FROM trading_order o "
            "JOIN markets_simorder s ON s.client_order_id = o.client_order_id "
            "WHERE s.order_id LIKE 'SIM-REST-%'"
        ).fetchall()
        in_flight = conn.execute(
            "SELECT client_order_id FROM trading_order WHERE cancel_requested_at IS NOT NULL "
            "AND status IN ('acked', 'partially_filled')"
        ).fetchall()
        lost = conn.execute(
            "SELECT o.client_order_id FROM trading_order o JOIN markets_simorder s "
            "ON s.client_order_id = o.client_order_id WHERE s.status = 'resting' "
            "AND o.status NOT IN ('acked', 'partially_filled')"
        ).fetchall()
    cancels_sent = Counter(
        line.rsplit("Cancel sent: ", 1)[1].split()[0]
        for text in logs
        for line in text.splitlines()
        if "Cancel sent: " in line
    )
    assert {cid: n for cid, n in cancels_sent.items() if n > 1} == {}
    assert len(resting_ours) == RESTING
    assert all(ours == theirs == "canceled" for _, ours, theirs in resting_ours), resting_ours
    assert set(cancels_sent) == {cid for cid, _, _ in resting_ours}
    assert in_flight == []
    assert lost == []
    assert duplicates == []
    assert orphans == []
    assert unresolved == []
    assert per_decision == []
    assert accepted > 0
    assert all(state == "active" for state, _ in halted), halted
