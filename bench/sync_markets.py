"""Benchmark ``market_sync``: 10,000 markets through KalshiClient (FakeKalshi over
``httpx.MockTransport``) into the database, against a raw bulk insert of the same rows.

    .venv/bin/python bench/sync_markets.py [--markets 10000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/sync_markets.py

It creates a throwaway test database (``test_<name>``, as the test runner does), and reports:

- fetch: paging and parsing every market through the client alone (no database);
- sync: a first ``market_sync`` (all added, one snapshot each) and a second one with
  unchanged data (compare only, new snapshots), in markets per second;
- raw: the same market and snapshot rows, already converted to database values, written with
  COPY (PostgreSQL) or ``executemany`` (SQLite), and the ratio of the sync's database time
  (sync minus fetch) to it. Every figure comes from the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789abcdef")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from markets.models import Market, MarketSnapshot  # noqa: E402
from markets.services import market_sync  # noqa: E402
from tests.fakes import FakeKalshi  # noqa: E402

PER_EVENT = 10


def build_fake(n: int) -> FakeKalshi:
    fake = FakeKalshi()
    for i in range(n):
        event = f"KXB{i // 1000}-26SEP{(i // PER_EVENT) % 100:02d}X{i // PER_EVENT}"
        fake.add_market(
            f"{event}-T{i % PER_EVENT}",
            event_ticker=event,
            yes_bid=f"0.{10 + i % 40:02d}00",
            yes_ask=f"0.{55 + i % 40:02d}00",
            volume=str(i % 997),
            last_price="0.5000",
        )
    return fake


def db_rows(model, fields) -> list[tuple]:
    """Every row of ``model`` as database-ready values (prepared outside the timing)."""
    names = [f.attname for f in fields]
    prepared = []
    for values in model.objects.values_list(*names):
        prepared.append(
            tuple(f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True))
        )
    return prepared


def raw_insert(model, fields, rows) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", type=int, default=10_000)
    n = parser.parse_args().markets

    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        fake = build_fake(n)
        client = fake.public_client()

        start = time.perf_counter()
        fetched = sum(1 for _ in client.iter_markets(status="open"))
        fetch = time.perf_counter() - start
        assert fetched == n, fetched

        first = market_sync(client=client)
        second = market_sync(client=client)
        assert (first.added, second.updated, second.snapshotted) == (n, 0, n), (first, second)

        market_fields = [f for f in Market._meta.concrete_fields]
        snap_fields = [f for f in MarketSnapshot._meta.concrete_fields]
        markets = db_rows(Market, market_fields)
        snapshots = db_rows(MarketSnapshot, snap_fields)[:n]  # one per market, as one sync writes
        MarketSnapshot.objects.all().delete()
        Market.objects.all().delete()
        start = time.perf_counter()
        raw_insert(Market, market_fields, markets)
        raw_insert(MarketSnapshot, snap_fields, snapshots)
        raw = time.perf_counter() - start
        assert Market.objects.count() == n and MarketSnapshot.objects.count() == n
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    first_db = first.seconds - fetch
    second_db = second.seconds - fetch
    print(f"database: {connection.vendor}; {n} markets, {n // PER_EVENT} events")
    print(f"fetch only (client + FakeKalshi paging): {fetch:.2f}s = {n / fetch:,.0f} markets/s")
    print(
        f"sync #1 (all added + snapshots): {first.seconds:.2f}s = {n / first.seconds:,.0f} "
        f"markets/s end to end; database part {first_db:.2f}s = {n / first_db:,.0f} markets/s"
    )
    print(
        f"sync #2 (unchanged, snapshots only): {second.seconds:.2f}s = "
        f"{n / second.seconds:,.0f} markets/s; database part {second_db:.2f}s"
    )
    method = "COPY" if connection.vendor == "postgresql" else "executemany"
    print(
        f"raw {method} of the same {n} market + {n} snapshot rows: {raw:.2f}s = "
        f"{n / raw:,.0f} markets/s"
    )
    print(f"ratio sync #1 database part / raw: {first_db / raw:.1f}x")


if __name__ == "__main__":
    main()
