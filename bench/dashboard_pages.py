"""Benchmark: requests per second of each dashboard page under gunicorn, on a large data set,
beside a trivial view (/health/live/) in the same run.

The data set: 10,000 markets, 1,000,000 market snapshots, 50,000 decisions (each with a
forecast, 30% of them scored), 5,000 cycles, orders, fills, positions, settlements and 10,000
account snapshots, written with COPY (PostgreSQL) in about a minute, once: a second run reuses
it. The pages are measured warm (their cached parts built, as between two trading cycles), and
each page's cold time (right after a cache reset, as after a cycle) is printed too.

    createdb -h 127.0.0.1 -U postgres kd_bench   # or let the script create it
    SECRET_KEY=x DATABASE_URL=postgres://postgres@127.0.0.1:5432/kd_bench \\
        .venv/bin/python bench/dashboard_pages.py [--seconds 2] [--rounds 3] [--clients 2]

Only 127.0.0.1 is contacted; every loop is bounded in time and in requests. Goal: each page
at least half the trivial view's rate.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

N_MARKETS = 10_000
N_SNAPSHOTS_PER_MARKET = 100  # 1,000,000 snapshots
N_DECISIONS = 50_000
N_RUNS = 5_000
N_ACCOUNT_SNAPSHOTS = 10_000
PREFIX = "BD"
NOW = datetime.now(UTC).replace(microsecond=0)
MAX_REQUESTS_PER_CLIENT = 20_000


# --- The database ---------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist."""
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[-1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def generate() -> None:
    """The large data set, in the paper books (the dashboard's default mode)."""
    from markets.bulk import copy_dicts
    from markets.models import Event, Market, MarketSnapshot, Series
    from trading.models import (
        AccountSnapshot,
        Decision,
        Fill,
        Forecast,
        JobRun,
        Order,
        Position,
        Settlement,
    )
    from trading.reasons import Reason

    rng = random.Random(7)
    started = time.perf_counter()
    categories = ["Climate", "Economics", "Politics", "Sports", "Financials"]
    copy_dicts(
        Series, ({"ticker": f"{PREFIX}S{i}", "category": categories[i % 5]} for i in range(50))
    )
    series = list(
        Series.objects.filter(ticker__startswith=f"{PREFIX}S").values_list("id", flat=True)
    )
    copy_dicts(
        Event,
        (
            {
                "event_ticker": f"{PREFIX}E{i}",
                "series_id": series[i % 50],
                "title": f"Event {i}",
                "category": categories[i % 5],
            }
            for i in range(1000)
        ),
    )
    events = list(
        Event.objects.filter(event_ticker__startswith=PREFIX).values_list("id", flat=True)
    )

    def market(i: int) -> dict:
        bid = Decimal(rng.randint(2, 95)) / 100
        settled = i % 4 == 0
        return {
            "ticker": f"{PREFIX}E{i // 10}-M{i}",
            "event_id": events[i // 10],
            "title": f"Will bench thing {i} happen?",
            "category": categories[i % 5],
            "status": "finalized" if settled else "active",
            "open_time": NOW - timedelta(days=10),
            "close_time": NOW + timedelta(hours=(i % 900) - 100),
            "yes_bid": bid,
            "yes_ask": bid + Decimal("0.02"),
            "no_bid": 1 - bid - Decimal("0.02"),
            "no_ask": 1 - bid,
            "last_price": bid + Decimal("0.01"),
            "volume": Decimal(rng.randint(0, 50_000)),
            "result": ("yes" if i % 8 == 0 else "no") if settled else "",
        }

    copy_dicts(Market, (market(i) for i in range(N_MARKETS)))
    markets = list(
        Market.objects.filter(ticker__startswith=PREFIX).order_by("id").values_list("id", "result")
    )
    print(f"  markets: {time.perf_counter() - started:.1f} s")

    def snapshots():
        for market_id, _ in markets:
            price = rng.randint(10, 90)
            for k in range(N_SNAPSHOTS_PER_MARKET):
                price = min(97, max(2, price + rng.randint(-2, 2)))
                bid = Decimal(price) / 100
                yield {
                    "market_id": market_id,
                    "ts": NOW - timedelta(minutes=5 * (N_SNAPSHOTS_PER_MARKET - k)),
                    "yes_bid": bid,
                    "yes_ask": bid + Decimal("0.02"),
                    "last_price": bid + Decimal("0.01"),
                    "volume": Decimal(k * 10),
                }

    copy_dicts(MarketSnapshot, snapshots())
    print(f"  1,000,000 snapshots: {time.perf_counter() - started:.1f} s")

    copy_dicts(
        JobRun,
        (
            {
                "job": "trading_cycle",
                "mode": "paper",
                "status": "ok",
                "started_at": NOW - timedelta(minutes=N_RUNS - i),
                "heartbeat_at": NOW - timedelta(minutes=N_RUNS - i),
                "finished_at": NOW - timedelta(minutes=N_RUNS - i) + timedelta(seconds=3),
                "summary": "paper cycle",
                "counts": {},
            }
            for i in range(N_RUNS)
        ),
    )
    runs = list(
        JobRun.objects.filter(job="trading_cycle").order_by("id").values_list("id", flat=True)
    )

    def forecasts():
        for i in range(N_DECISIONS):
            market_id, result = markets[i % N_MARKETS]
            p = Decimal(rng.randint(1, 99)) / 100
            row = {
                "market_id": market_id,
                "mode": "paper",
                "forecaster": ("baseline", "llm")[i % 2],
                "probability": p,
                "confidence": Decimal("0.7"),
                "market_price": p,
                "rationale": "bench",
                "key_factors": [],
                "created_at": NOW - timedelta(minutes=(N_DECISIONS - i) // 10),
            }
            if result and i % 10 < 3:
                y = 1 if result == "yes" else 0
                row.update(
                    outcome=y,
                    brier=(p - y) ** 2,
                    market_brier=(p - y) ** 2,
                    log_loss=Decimal("0.5"),
                    scored_at=row["created_at"],
                )
            yield row

    copy_dicts(Forecast, forecasts())
    forecast_ids = list(
        Forecast.objects.filter(mode="paper").order_by("id").values_list("id", flat=True)
    )
    reasons = [r.value for r in Reason if r not in (Reason.EXIT,)]

    def decisions():
        for i in range(N_DECISIONS):
            reason = "traded" if i % 10 == 0 else reasons[i % len(reasons)]
            moment = NOW - timedelta(minutes=(N_DECISIONS - i) // 10)
            yield {
                "market_id": markets[i % N_MARKETS][0],
                "mode": "paper",
                "run_id": runs[i // 10],
                "forecast_id": forecast_ids[i],
                "reason": reason,
                "side": "yes",
                "price": Decimal("0.42"),
                "count": Decimal("10") if reason == "traded" else None,
                "action": "buy" if reason == "traded" else "",
                "edge": Decimal("0.1"),
                "details": {"reason": reason, "probability": "0.6", "edge": "0.1"},
                "created_at": moment,
                "decided_at": moment,
            }

    copy_dicts(Decision, decisions())
    traded = list(
        Decision.objects.filter(reason="traded", mode="paper")
        .order_by("id")
        .values_list("id", "market_id")
    )
    print(f"  50,000 decisions and forecasts: {time.perf_counter() - started:.1f} s")

    copy_dicts(
        Order,
        (
            {
                "decision_id": d,
                "market_id": m,
                "mode": "paper",
                "client_order_id": f"kd-paper-{d}",
                "exchange_order_id": f"{PREFIX}X{d}",
                "side": "yes",
                "action": "buy",
                "yes_price": Decimal("0.42"),
                "count": Decimal("10"),
                "filled_count": Decimal("10"),
                "status": "filled",
                "created_at": NOW - timedelta(minutes=k),
            }
            for k, (d, m) in enumerate(traded)
        ),
    )
    orders = list(
        Order.objects.filter(mode="paper")
        .order_by("id")
        .values_list("id", "market_id", "exchange_order_id")
    )
    copy_dicts(
        Fill,
        (
            {
                "fill_id": f"{PREFIX}F{o}",
                "mode": "paper",
                "order_id": o,
                "exchange_order_id": x,
                "market_id": m,
                "side": "yes",
                "action": "buy",
                "count": Decimal("10"),
                "yes_price": Decimal("0.42"),
                "fee": Decimal("0.17"),
                "executed_at": NOW - timedelta(minutes=k),
            }
            for k, (o, m, x) in enumerate(orders)
        ),
    )
    seen: set[int] = set()
    position_rows = []
    for k, (_, m, _) in enumerate(orders):
        if m in seen:
            continue
        seen.add(m)
        closed = k % 3 != 0
        position_rows.append(
            {
                "mode": "paper",
                "market_id": m,
                "status": "closed" if closed else "open",
                "side": "yes",
                "count": Decimal("0") if closed else Decimal("10"),
                "cost_basis": Decimal("0") if closed else Decimal("4.20"),
                "realized_pnl": Decimal(rng.randint(-400, 600)) / 100 if closed else Decimal("0"),
                "fees_paid": Decimal("0.17"),
                "opened_at": NOW - timedelta(hours=k % 500),
                "closed_at": NOW - timedelta(hours=k % 400) if closed else None,
                "strategy": ("directional", "scalping")[k % 2],
            }
        )
    copy_dicts(Position, position_rows)
    copy_dicts(
        Settlement,
        (
            {
                "mode": "paper",
                "market_id": p["market_id"],
                "result": "no",
                "settled_at": NOW,
                "realized_pnl": p["realized_pnl"],
            }
            for p in position_rows[::4]
        ),
    )
    copy_dicts(
        AccountSnapshot,
        (
            {
                "mode": "paper",
                "ts": NOW - timedelta(minutes=N_ACCOUNT_SNAPSHOTS - i),
                "cash": Decimal("900") + Decimal(i % 50),
                "equity": Decimal("1000") + Decimal(rng.randint(-80, 80)),
            }
            for i in range(N_ACCOUNT_SNAPSHOTS)
        ),
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  data set ready: {time.perf_counter() - started:.1f} s")


def ensure_data(fresh: bool) -> None:
    from django.core.management import call_command

    from markets.models import Market
    from trading.models import RiskSettings, TradingState

    call_command("migrate", verbosity=0)
    # The two single rows every running installation has (its first cycle creates them).
    TradingState.load()
    RiskSettings.load()
    present = Market.objects.filter(ticker__startswith=PREFIX).count()
    if present == N_MARKETS and not fresh:
        print("reusing the data set already in this database")
        return
    if present:
        raise SystemExit("the database holds part of a data set: drop it or use a fresh database")
    print("generating the data set (once)...")
    generate()


def session_cookie() -> str:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench-operator")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def pages() -> dict[str, str]:
    from markets.models import Market
    from trading.models import Decision

    ticker = (
        Market.objects.filter(ticker__startswith=PREFIX)
        .order_by("id")
        .values_list("ticker", flat=True)[500]
    )
    decision = (
        Decision.objects.filter(reason="traded")
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return {
        "trivial /health/live/": "/health/live/",
        "trivial, full stack": "/bench/ping/",
        "overview": "/",
        "markets": "/markets/",
        "markets (filtered)": "/markets/?q=M1&status=active&category=Climate&min_volume=100",
        "market detail": f"/markets/{ticker}/",
        "decisions": "/decisions/",
        "decisions (filtered)": "/decisions/?reason=edge_too_small&mode=paper",
        "decision detail": f"/decisions/{decision}/",
        "funnel": "/funnel/",
        "positions": "/positions/",
        "orders": "/orders/",
        "fills": "/fills/",
        "performance": "/performance/",
        "calibration": "/calibration/",
        "settings": "/settings/",
    }


# --- The server and the load ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, cookie: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}", "Host": "127.0.0.1"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _client(args: tuple[int, str, str, float]) -> int:
    port, path, cookie, seconds = args
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline and done < MAX_REQUESTS_PER_CLIENT:
        status = get(port, path, cookie)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        done += 1
    return done


def rate(pool, port: int, path: str, cookie: str, seconds: float, clients: int) -> float:
    started = time.perf_counter()
    done = sum(pool.map(_client, [(port, path, cookie, seconds)] * clients))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per run")
    parser.add_argument("--clients", type=int, default=2, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each page")
    parser.add_argument("--fresh", action="store_true", help="refuse to reuse existing data")
    options = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        raise SystemExit(
            "set DATABASE_URL to a PostgreSQL database (the data set is written with COPY)"
        )
    ensure_database(url)

    import django

    django.setup()
    from django.conf import settings

    ensure_data(options.fresh)
    cookie = session_cookie()
    urls = pages()

    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "0",
        "TRADING_MODE": "paper",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "bench.bench_wsgi",
        "-c",
        "/dev/null",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(options.workers),
        "--worker-class",
        "sync",
        "--log-level",
        "warning",
    ]
    # An empty config file: the project's gunicorn.conf.py (access log, worker count from the
    # cores) is not what is measured here.
    config = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)  # noqa: SIM115
    config.close()
    command[command.index("/dev/null")] = config.name
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        for _ in range(100):  # up to 10 s for the workers to start
            try:
                if get(port, "/health/live/", cookie) == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start")

        from dashboard.cache import reset_generation_key

        cache_name = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        print(
            f"database: PostgreSQL · cache: {cache_name} · gunicorn: {options.workers} sync "
            f"workers · {options.clients} client processes · {options.seconds:g} s per page"
        )
        cold = {}
        for name, path in urls.items():
            reset_generation_key()  # as after a trading cycle (shared caches only)
            started = time.perf_counter()
            for _ in range(options.workers):  # warm every worker's cache
                assert get(port, path, cookie) == 200, path
            cold[name] = (time.perf_counter() - started) / options.workers * 1000

        # Interleaved: each page is measured right after the trivial view, in several rounds,
        # and compared with that neighbouring figure; the machine's load drifts otherwise.
        trivial_path = urls.pop("trivial /health/live/")
        stack_path = urls.pop("trivial, full stack")
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
        with multiprocessing.get_context("fork").Pool(options.clients) as pool:
            for _ in range(options.rounds):
                for name, path in urls.items():
                    base = rate(pool, port, trivial_path, cookie, options.seconds, options.clients)
                    stack = rate(pool, port, stack_path, cookie, options.seconds, options.clients)
                    rps = rate(pool, port, path, cookie, options.seconds, options.clients)
                    results[name].append((rps, base, stack))
        trivial_all = [base for runs in results.values() for _, base, _ in runs]
        stack_all = [stack for runs in results.values() for _, _, stack in runs]
        print(
            f"trivial /health/live/ (first middleware only): median "
            f"{statistics.median(trivial_all):.0f} req/s "
            f"(from {min(trivial_all):.0f} to {max(trivial_all):.0f} over the run)"
        )
        print(
            f"trivial page through the full stack, logged in (/bench/ping/): median "
            f"{statistics.median(stack_all):.0f} req/s"
        )
        print(
            f"{'page':<22} {'req/s':>7} {'vs live':>9} {'vs full-stack':>14} {'first request':>14}"
        )
        worst = worst_stack = 1.0
        for name, runs in results.items():
            rps = statistics.median(r for r, _, _ in runs)
            ratio = statistics.median(r / b for r, b, _ in runs)
            ratio_stack = statistics.median(r / s for r, _, s in runs)
            worst, worst_stack = min(worst, ratio), min(worst_stack, ratio_stack)
            print(
                f"{name:<22} {rps:>7.0f} {ratio:>8.2f}x {ratio_stack:>13.2f}x "
                f"{cold[name]:>11.0f} ms"
            )
        print(
            f"worst page: {worst:.2f}x /health/live/, {worst_stack:.2f}x the full-stack trivial "
            "page (goal: at least 0.50x)"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        os.unlink(config.name)


if __name__ == "__main__":
    main()
