"""Benchmark: replay speed in market-steps per second (goal: at least 20,000).

A market-step is one open market seen at one step of the simulated clock. Runs the backtest
over all shipped recorded data with the baseline forecaster, and, as the baseline measured in
the same run, the database-backed trading cycle over the first simulated day of the same data
(on a throwaway SQLite file), so the ratio between the two is printed too.

    .venv/bin/python bench/replay_speed.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_tmp = tempfile.mkdtemp(prefix="replay-bench-")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuv")
os.environ["DATABASE_URL"] = f"sqlite:///{_tmp}/bench.sqlite3"
os.environ["TRADING_MODE"] = "replay"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from markets.recorded import recorded_data_parse  # noqa: E402
from trading import backtest, services  # noqa: E402
from trading.baseline import BaselineForecaster  # noqa: E402
from trading.exchanges import exchange_for, replay_clock_advance  # noqa: E402


def main() -> None:
    data = recorded_data_parse(data_dir=settings.RECORDED_DATA_DIR)
    book = backtest.RecordedBook(data)
    result = backtest.Backtest(book, BaselineForecaster(), backtest.BacktestParams()).run()
    fast = result.market_steps / result.elapsed_s
    print(
        f"backtest: {result.steps:,} steps, {result.market_steps:,} market-steps in "
        f"{result.elapsed_s:.1f} s = {fast:,.0f} market-steps/s (goal 20,000)"
    )

    call_command("migrate", verbosity=0)
    call_command("load_recorded_markets", verbosity=0)
    end = book.start + timedelta(days=1)
    market_steps = steps = 0
    started = time.perf_counter()
    while True:
        now, finished = replay_clock_advance()
        if finished or now > end:
            break
        exchange = exchange_for("replay")
        market_steps += len(exchange.open_markets())
        services.trading_cycle_run(
            exchange=exchange, forecaster=BaselineForecaster(), mode="replay"
        )
        steps += 1
    elapsed = time.perf_counter() - started
    slow = market_steps / elapsed if elapsed else 0
    print(
        f"database cycle (first simulated day): {steps} steps, {market_steps:,} market-steps "
        f"in {elapsed:.1f} s = {slow:,.0f} market-steps/s"
    )
    if slow:
        print(f"ratio backtest / database cycle: {fast / slow:,.0f}x")


if __name__ == "__main__":
    main()
