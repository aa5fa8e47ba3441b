"""Benchmark: one decide cycle over N candidate markets with the market-price forecaster.

Prints seconds and database queries for two sizes; the query count must not grow with the
number of markets (issue 4's goal: 5,000 markets in under 0.5 s).

    SECRET_KEY=x DATABASE_URL=sqlite:////tmp/bench.sqlite3 .venv/bin/python bench/decide_cycle.py
    (any DATABASE_URL works; the script makes and drops its own rows)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from markets.exchange import MarketQuote  # noqa: E402
from markets.models import Event, Market, Series  # noqa: E402
from markets.simulator import SimulatedExchange  # noqa: E402
from trading import services  # noqa: E402
from trading.forecasters import MarketPriceForecaster  # noqa: E402
from trading.models import Decision, Forecast  # noqa: E402

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Quotes:
    def __init__(self, quotes):
        self.quotes = quotes

    def now(self):
        return NOW

    def open_markets(self):
        return self.quotes

    def quote(self, ticker):
        return None

    def outcomes(self, tickers):
        return {}


def world(n: int, prefix: str) -> list[MarketQuote]:
    series, _ = Series.objects.get_or_create(ticker=f"BENCH{prefix}")
    event, _ = Event.objects.get_or_create(event_ticker=f"BENCH{prefix}-1", series=series)
    Market.objects.bulk_create(
        [
            Market(
                ticker=f"BENCH{prefix}-{i}",
                event=event,
                status="active",
                category="Bench",
                close_time=NOW + timedelta(days=3),
            )
            for i in range(n)
        ],
        batch_size=1000,
    )
    return [
        MarketQuote(
            ticker=f"BENCH{prefix}-{i}",
            event_ticker=event.event_ticker,
            status="active",
            close_time=NOW + timedelta(days=3),
            yes_bid=Decimal("0.40"),
            yes_ask=Decimal("0.42"),
            volume=Decimal("5000"),
            category="Bench",
            yes_ask_depth=Decimal("100"),
            no_ask_depth=Decimal("100"),
        )
        for i in range(n)
    ]


def measure(n: int, prefix: str) -> list[tuple[float, int]]:
    quotes = world(n, prefix)
    exchange = SimulatedExchange(
        name="bench",
        quotes=Quotes(quotes),
        account=f"bench-{prefix}",
        starting_cash=Decimal("1000"),
    )
    results = []
    for now in (NOW, NOW + timedelta(minutes=1)):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            services.decide_run(
                exchange=exchange,
                forecaster=MarketPriceForecaster(),
                mode="paper",
                now=now,
                quotes=quotes,
            )
            elapsed = time.perf_counter() - start
        results.append((elapsed, len(ctx.captured_queries)))
    return results


def cleanup() -> None:
    Decision.objects.filter(market__ticker__startswith="BENCH").delete()
    Forecast.objects.filter(market__ticker__startswith="BENCH").delete()
    Market.objects.filter(ticker__startswith="BENCH").delete()
    Event.objects.filter(event_ticker__startswith="BENCH").delete()
    Series.objects.filter(ticker__startswith="BENCH").delete()
    if connection.vendor == "postgresql":
        # The deleted rows leave dead tuples that autovacuum reaches only later; each round
        # should meet tables like a running installation's (which only ever inserts them).
        with connection.cursor() as cursor:
            for model in (Decision, Forecast, Market):
                cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="fresh worlds per size (median)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}; {args.rounds} rounds per size, each on fresh markets")
    cleanup()
    try:
        for n in (500, 5000):
            firsts, agains = [], []
            for round_ in range(args.rounds):
                (first, first_q), (again, again_q) = measure(n, f"{n}R{round_}")
                firsts.append(first)
                agains.append(again)
                print(
                    f"  {n:>5} markets, round {round_ + 1}: {first:6.3f} s ({first_q} queries), "
                    f"a minute later {again:6.3f} s ({again_q} queries)",
                    flush=True,
                )
                cleanup()
            first = statistics.median(firsts)
            print(
                f"decide cycle, {n:>5} markets, all forecast and decided: median {first:6.3f} s "
                f"(range {min(firsts):.3f}–{max(firsts):.3f}), {first_q} queries, "
                f"{n / first:,.0f} markets/s"
            )
            print(
                f"decide cycle, {n:>5} markets, a minute later (analysed recently): "
                f"median {statistics.median(agains):6.3f} s, {again_q} queries"
            )
    finally:
        cleanup()


if __name__ == "__main__":
    main()
