"""market_sync, the sync_markets task and command, against FakeKalshi (a few hundred markets)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

from django.core.management import call_command
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from markets import kalshi
from markets.models import Event, Market, MarketSnapshot, Series
from markets.services import market_sync
from markets.tasks import sync_markets
from tests.base import make_series
from tests.fakes import FakeKalshi

N_EVENTS, PER_EVENT = 30, 10  # 300 markets


def world() -> FakeKalshi:
    fake = FakeKalshi()
    fake.max_page_size = 100
    for e in range(N_EVENTS):
        series = f"KXS{e % 7}"
        for k in range(PER_EVENT):
            fake.add_market(
                f"{series}-26SEP{e:02d}-T{k}",
                event_ticker=f"{series}-26SEP{e:02d}",
                yes_bid="0.4000",
                yes_ask="0.4300",
                volume=str(e * 10 + k),
            )
    fake.add_market("KXS0-26SEP99-T1", yes_bid="0.1", yes_ask="0.2", status="closed")
    return fake


class MarketSyncTests(TestCase):
    def setUp(self):
        self.fake = world()
        self.client_ = self.fake.public_client()

    def test_it_adds_series_events_markets_and_one_snapshot_each(self):
        summary = market_sync(client=self.client_)
        n = N_EVENTS * PER_EVENT
        self.assertEqual((summary.seen, summary.added, summary.updated), (n, n, 0))
        self.assertEqual(
            (summary.snapshotted, summary.series_added, summary.events_added), (n, 7, N_EVENTS)
        )
        self.assertEqual(Market.objects.count(), n)
        self.assertEqual(Series.objects.count(), 7)
        self.assertEqual(Event.objects.count(), N_EVENTS)
        self.assertEqual(MarketSnapshot.objects.count(), n)
        self.assertGreaterEqual(self.fake.count("GET /markets"), 3)  # paged
        m = Market.objects.get(ticker="KXS3-26SEP03-T4")
        self.assertEqual((m.event.event_ticker, m.event.series.ticker), ("KXS3-26SEP03", "KXS3"))
        self.assertEqual(
            (m.yes_bid, m.yes_ask, m.no_bid, m.no_ask), (D("0.40"), D("0.43"), D("0.57"), D("0.60"))
        )
        self.assertEqual((m.status, m.volume, m.last_price), ("active", D("34"), None))
        snap = m.snapshots.get()
        self.assertEqual(
            (snap.ts, snap.yes_bid, snap.yes_ask, snap.volume),
            (summary.ts, D("0.40"), D("0.43"), D("34")),
        )
        self.assertFalse(Market.objects.filter(ticker="KXS0-26SEP99-T1").exists())

    def test_a_second_sync_of_unchanged_data_updates_nothing_and_snapshots_at_the_new_ts(self):
        first = market_sync(client=self.client_)
        again = market_sync(client=self.client_, now=first.ts)
        self.assertEqual(
            (again.added, again.updated, again.unchanged, again.snapshotted), (0, 0, 300, 0)
        )
        later = market_sync(client=self.client_, now=first.ts + timedelta(minutes=5))
        self.assertEqual((later.updated, later.snapshotted), (0, 300))
        self.assertEqual(MarketSnapshot.objects.count(), 600)

    def test_changes_are_updated_and_category_is_kept(self):
        market_sync(client=self.client_)
        Market.objects.filter(ticker="KXS1-26SEP01-T2").update(category="Politics")
        self.fake.set_orderbook("KXS1-26SEP01-T2", yes=[("0.50", "5")], no=[("0.45", "5")])
        self.fake.markets["KXS2-26SEP02-T3"]["status"] = "closed"
        summary = market_sync(client=self.client_)
        self.assertEqual((summary.seen, summary.added, summary.updated), (299, 0, 1))
        m = Market.objects.get(ticker="KXS1-26SEP01-T2")
        self.assertEqual((m.yes_bid, m.yes_ask, m.category), (D("0.50"), D("0.55"), "Politics"))
        summary = market_sync(client=self.client_, status="closed")
        self.assertEqual((summary.added, summary.updated), (1, 1))
        self.assertEqual(Market.objects.get(ticker="KXS2-26SEP02-T3").status, "closed")

    def test_existing_series_are_reused(self):
        make_series(ticker="KXS0", title="Kept", category="Climate")
        summary = market_sync(client=self.client_)
        self.assertEqual(summary.series_added, 6)
        self.assertEqual(Series.objects.get(ticker="KXS0").title, "Kept")

    def test_the_query_count_does_not_grow_per_market(self):
        with CaptureQueriesContext(connection) as queries:
            market_sync(client=self.client_)
        # SQLite splits the market INSERT by its variable limit; reading fees adds 3 queries.
        self.assertLess(len(queries), 33)
        with CaptureQueriesContext(connection) as queries:
            market_sync(client=self.client_)
        self.assertLess(len(queries), 15)

    def test_a_failed_fetch_writes_nothing(self):
        self.fake.fail_next("GET /markets", 400)
        with self.assertRaises(kalshi.KalshiError):
            market_sync(client=self.client_)
        self.assertEqual(Market.objects.count(), 0)

    def test_task_and_command_use_the_configured_client(self):
        original = kalshi.kalshi_client
        kalshi.kalshi_client = lambda **kw: self.fake.public_client()
        try:
            self.assertIn("300 added", sync_markets())
            out = StringIO()
            call_command("sync_markets", "--no-progress", stdout=out)
        finally:
            kalshi.kalshi_client = original
        self.assertIn("Synced 300 markets", out.getvalue())
        self.assertIn("0 updated, 300 unchanged, 300 snapshots", out.getvalue())


class MalformedMarketTests(TestCase):
    """One bad market is skipped (logged with its ticker and field, counted); the rest is synced."""

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.max_page_size = 3
        for k in range(6):
            self.fake.add_market(f"KXGOOD-26SEP01-T{k}", yes_bid="0.4000", yes_ask="0.4300")
        self.client_ = self.fake.public_client()

    def sync(self, **kwargs):
        with self.assertLogs("markets.services", "WARNING") as logs:
            summary = market_sync(client=self.client_, **kwargs)
        return summary, "\n".join(logs.output)

    def assert_only_good_markets_synced(self, summary):
        good = {f"KXGOOD-26SEP01-T{k}" for k in range(6)}
        self.assertEqual(set(Market.objects.values_list("ticker", flat=True)), good)
        self.assertEqual(MarketSnapshot.objects.count(), 6)
        self.assertEqual((summary.seen, summary.added, summary.skipped), (6, 6, 1))
        self.assertIn("1 skipped", summary.summary())

    def test_a_floor_strike_of_minus_1_8e308_skips_that_market_and_syncs_the_others(self):
        # The most negative double (about -1.8e308): a value the spec allows; the column holds
        # 15 digits.
        self.fake.add_market("KXBAD-26SEP01-T1", floor_strike=-1.7976931348623157e308)
        summary, logged = self.sync()
        self.assert_only_good_markets_synced(summary)
        self.assertIn("KXBAD-26SEP01-T1", logged)
        self.assertIn("floor_strike", logged)
        self.assertIn("floor_strike", summary.problems[0])
        self.assertFalse(Event.objects.filter(event_ticker="KXBAD-26SEP01").exists())

    def test_one_malformed_market_among_good_ones_is_skipped(self):
        self.fake.add_market("KXBAD-26SEP01-T2", yes_bid="0.4000", yes_ask="0.4300")
        self.fake.markets["KXBAD-26SEP01-T2"]["updated_time"] = "next tuesday"
        summary, logged = self.sync()
        self.assert_only_good_markets_synced(summary)
        self.assertIn("KXBAD-26SEP01-T2", logged)
        self.assertIn("updated_time", logged)

    def test_values_the_database_cannot_hold_are_refused_per_record(self):
        cases = {
            "volume_fp": "1000000000000000.00",  # CountField: 14 digits
            "rules_primary": "nul \x00 byte",  # PostgreSQL text cannot hold NUL
            "strike_type": "s" * 33,  # CharField(max_length=32)
            "status": "a-status-longer-than-16",
            "open_interest_fp": "-5.00",  # check constraint: counts are not negative
        }
        for field, value in cases.items():
            with self.subTest(field=field):
                ticker = f"KXBAD-26SEP01-{field.upper().replace('_', '')}"
                self.fake.add_market(ticker, **{field: value})
                summary, logged = self.sync(status=None)  # the odd status is in no filter
                del self.fake.markets[ticker]
                self.assertEqual(summary.skipped, 1, summary.summary())
                self.assertIn(ticker, logged)
                self.assertIn(field.removesuffix("_fp"), logged)
                self.assertFalse(Market.objects.filter(ticker=ticker).exists())
                self.assertEqual(Market.objects.count(), 6)

    def test_an_over_long_ticker_is_refused_not_cut(self):
        long_ticker = "KXLONG-26SEP01-" + "T" * 130
        self.fake.add_market(long_ticker)
        summary, logged = self.sync()
        self.assert_only_good_markets_synced(summary)
        self.assertIn("ticker", logged)
        self.assertFalse(Market.objects.filter(ticker=long_ticker[:128]).exists())

    def test_the_job_run_counts_the_skipped_markets(self):
        from trading import tasks as trading_tasks
        from trading.models import JobRun

        self.fake.add_market("KXBAD-26SEP01-T1", floor_strike=-1.7976931348623157e308)
        original = kalshi.kalshi_client
        kalshi.kalshi_client = lambda **kw: self.fake.public_client()
        try:
            with self.assertLogs("markets.services", "WARNING"):
                trading_tasks._sync_markets()
        finally:
            kalshi.kalshi_client = original
        run = JobRun.objects.get(job="sync_markets")
        self.assertEqual(run.status, JobRun.Status.OK)
        self.assertEqual(run.counts["skipped"], 1)
        self.assertIn("1 skipped", run.summary)

    def test_the_command_reports_the_skipped_markets(self):
        self.fake.add_market("KXBAD-26SEP01-T1", floor_strike=-1.7976931348623157e308)
        original = kalshi.kalshi_client
        kalshi.kalshi_client = lambda **kw: self.fake.public_client()
        out = StringIO()
        try:
            with self.assertLogs("markets.services", "WARNING"):
                call_command("sync_markets", "--no-progress", stdout=out)
        finally:
            kalshi.kalshi_client = original
        self.assertIn("6 added", out.getvalue())
        self.assertIn("1 skipped", out.getvalue())
        self.assertIn("KXBAD-26SEP01-T1", out.getvalue())
