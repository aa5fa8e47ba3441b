"""``manage.py load_recorded_markets`` on the small fixture in tests/data/recorded-small/.

The fixture is cut from the shipped files (whole rows, original order):
- candles: event KXHIGHNY-25AUG02 (6 markets, first and last candle each; settled: 79° to 80°)
  and 2 markets of KXHIGHNY-25APR14 (no recorded result); 14 candles.
- settlement csv: 2025-08-02 (has candles) and 2025-08-01 (no candles: skipped).
- market_logs: KXHIGHNY-25DEC05, 17 rows (first quotes, each market's final quote, the empty
  books after settlement); B32.5 ends at yes bid 99.
- juliettemorrell: KXHIGHNY-26APR22 (lower tail wins) and KXHIGHLAX-26APR23, 12 markets.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path
from unittest import mock

from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.db.models import Q
from django.test import TestCase, override_settings

from markets.models import Event, Market, MarketSnapshot, Series

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "recorded-small"
CANDLES = "jetpackjules-kalshi-trader/KXHIGHNY_candles_5m.csv"
SETTLEMENT = "jetpackjules-kalshi-trader/kalshi_settlement_vs_actual_weather.csv"
LOG = "jetpackjules-kalshi-trader/market_logs/market_data_KXHIGHNY-25DEC05.csv"
JULIETTE = "juliettemorrell-kalshi-test/kalshi_markets.csv"
PRICE_FIELDS = ("yes_bid", "yes_ask", "no_bid", "no_ask", "last_price")


def load(data: Path = FIXTURE) -> str:
    out = StringIO()
    call_command("load_recorded_markets", "--data", str(data), "--no-progress", stdout=out)
    return out.getvalue().strip()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class FixtureCopy:
    """A temporary copy of the fixture to break on purpose."""

    def __enter__(self) -> FixtureCopy:
        self._tmp = tempfile.TemporaryDirectory()
        self.path = Path(self._tmp.name) / "data"
        shutil.copytree(FIXTURE, self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def edit(self, rel: str, old: str, new: str) -> None:
        file = self.path / rel
        text = file.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur once in {rel}"
        file.write_text(text.replace(old, new), encoding="utf-8")


class LoadSmallFixtureTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.summary = load()

    def market(self, ticker: str) -> Market:
        return Market.objects.get(ticker=ticker)

    def test_it_loads_the_right_counts(self) -> None:
        self.assertEqual(Series.objects.count(), 2)
        self.assertEqual(Event.objects.count(), 5)
        self.assertEqual(Market.objects.count(), 26)
        self.assertEqual(MarketSnapshot.objects.count(), 14 + 17 + 24)
        self.assertEqual(Market.objects.filter(result="yes").count(), 4)
        self.assertEqual(Market.objects.filter(result="no").count(), 20)
        self.assertEqual(
            self.summary,
            "Loaded 2 series (+2 added, ~0 updated), 5 events (+5 added, ~0 updated), "
            "26 markets (+26 added, ~0 updated), 55 snapshots (+55 added), "
            "24 results (4 yes, 20 no)",
        )

    def test_series_and_events(self) -> None:
        series = Series.objects.get(ticker="KXHIGHLAX")
        self.assertEqual(series.title, "Highest temperature in Los Angeles")
        self.assertEqual(series.category, "Climate and Weather")
        event = Event.objects.get(event_ticker="KXHIGHNY-25AUG02")
        self.assertEqual(event.series.ticker, "KXHIGHNY")
        self.assertEqual(event.title, "Highest temperature in NYC on Aug 2, 2025")
        self.assertTrue(event.mutually_exclusive)
        self.assertEqual(event.source, "recorded")
        self.assertEqual(event.markets.count(), 6)

    def test_titles_and_strikes_follow_the_ticker(self) -> None:
        cases = {
            # ticker: (yes_sub_title, strike_type, floor, cap)
            "KXHIGHNY-25AUG02-B79.5": ("79° to 80°", "between", Decimal(79), Decimal(80)),
            "KXHIGHNY-25AUG02-T77": ("76° or below", "less", None, Decimal(77)),
            "KXHIGHNY-25AUG02-T84": ("85° or above", "greater", Decimal(84), None),
            # Only one tail recorded for Apr 14: above the event's bracket, so the upper tail.
            "KXHIGHNY-25APR14-T68": ("69° or above", "greater", Decimal(68), None),
            "KXHIGHNY-26APR22-T57": ("56° or below", "less", None, Decimal(57)),
            "KXHIGHNY-26APR22-T64": ("65° or above", "greater", Decimal(64), None),
            "KXHIGHNY-25DEC05-T30": ("29° or below", "less", None, Decimal(30)),
        }
        for ticker, (sub_title, strike_type, floor, cap) in cases.items():
            with self.subTest(ticker):
                market = self.market(ticker)
                self.assertEqual(market.yes_sub_title, sub_title)
                self.assertEqual(market.strike_type, strike_type)
                self.assertEqual(market.floor_strike, floor)
                self.assertEqual(market.cap_strike, cap)
        market = self.market("KXHIGHNY-25AUG02-B79.5")
        self.assertEqual(market.title, "Highest temperature in NYC on Aug 2, 2025")
        self.assertEqual(market.category, "Climate and Weather")
        self.assertEqual(market.source, "recorded")
        self.assertIn("Central Park", market.rules_primary)
        lax = self.market("KXHIGHLAX-26APR23-B72.5")
        self.assertEqual(lax.title, "Highest temperature in Los Angeles on Apr 23, 2026")
        self.assertEqual(lax.yes_sub_title, "72° to 73°")

    def test_results_from_each_source(self) -> None:
        expected_yes = {
            "KXHIGHNY-25AUG02-B79.5",  # settlement csv: "79° to 80°"
            "KXHIGHNY-25DEC05-B32.5",  # market log: final yes bid 99
            "KXHIGHNY-26APR22-T57",  # juliettemorrell `result`
            "KXHIGHLAX-26APR23-B72.5",
        }
        self.assertEqual(
            set(Market.objects.filter(result="yes").values_list("ticker", flat=True)),
            expected_yes,
        )
        winner = self.market("KXHIGHNY-25AUG02-B79.5")
        self.assertEqual(winner.status, Market.Status.FINALIZED)
        self.assertEqual(winner.settlement_value, Decimal(1))
        loser = self.market("KXHIGHNY-25AUG02-T77")
        self.assertEqual((loser.result, loser.settlement_value), ("no", Decimal(0)))
        self.assertEqual(loser.status, Market.Status.FINALIZED)
        # Apr 14 is not in the settlement csv: no result is guessed.
        for market in Market.objects.filter(event__event_ticker="KXHIGHNY-25APR14"):
            self.assertEqual((market.result, market.status), ("", Market.Status.CLOSED))
            self.assertIsNone(market.settlement_value)
        self.assertEqual(
            Market.objects.filter(event__event_ticker="KXHIGHNY-25DEC05", result="no").count(), 5
        )

    def test_open_and_close_times(self) -> None:
        summer = self.market("KXHIGHNY-25AUG02-B79.5")
        self.assertEqual(summer.open_time, utc(2025, 8, 1, 14))  # 10:00 EDT the day before
        self.assertEqual(summer.close_time, utc(2025, 8, 3, 5))  # midnight EST = 01:00 EDT
        winter = self.market("KXHIGHNY-25DEC05-B32.5")
        self.assertEqual(winter.open_time, utc(2025, 12, 4, 15))  # 10:00 EST
        self.assertEqual(winter.close_time, utc(2025, 12, 6, 5))
        lax = self.market("KXHIGHLAX-26APR23-B72.5")
        self.assertEqual(lax.open_time, utc(2026, 4, 22, 14))
        self.assertEqual(lax.close_time, utc(2026, 4, 24, 8))  # midnight PST
        # Every recorded trade and quote (except the emptied books) falls inside the window.
        priced = MarketSnapshot.objects.exclude(
            yes_bid__isnull=True, no_bid__isnull=True, last_price__isnull=True
        )
        for snap in priced.select_related("market"):
            self.assertLessEqual(snap.market.open_time, snap.ts, snap)
            self.assertLessEqual(snap.ts, snap.market.close_time, snap)

    def test_candle_snapshot_is_at_the_bucket_end(self) -> None:
        # 2025-08-03T03:40:00+00:00, close 99.0 → observed at 03:45 UTC, $0.99.
        snaps = MarketSnapshot.objects.filter(market__ticker="KXHIGHNY-25AUG02-B79.5")
        self.assertEqual(
            [(s.ts, s.last_price) for s in snaps],
            [
                (utc(2025, 8, 2, 19, 25), Decimal("0.80")),
                (utc(2025, 8, 3, 3, 45), Decimal("0.99")),
            ],
        )
        snap = snaps.last()
        assert snap is not None
        self.assertEqual(
            [snap.yes_bid, snap.yes_ask, snap.no_bid, snap.no_ask, snap.volume], [None] * 5
        )
        self.assertEqual(snap.source, "recorded")

    def test_market_log_pacific_time_and_quotes(self) -> None:
        snaps = MarketSnapshot.objects.filter(market__ticker="KXHIGHNY-25DEC05-T37")
        first = snaps.first()
        assert first is not None
        # 2025-12-04T12:27:16.079996 PST (UTC-8) → 20:27:16.079996 UTC; bids 1 and 96.
        self.assertEqual(first.ts, utc(2025, 12, 4, 20, 27, 16, 79996))
        self.assertEqual(
            [first.yes_bid, first.yes_ask, first.no_bid, first.no_ask, first.last_price],
            [Decimal("0.01"), Decimal("0.04"), Decimal("0.96"), Decimal("0.99"), None],
        )
        # The winner's final quote: yes bid 99, no bid 0 (no quote) → no yes ask either.
        final = MarketSnapshot.objects.get(
            market__ticker="KXHIGHNY-25DEC05-B32.5", ts=utc(2025, 12, 6, 4, 47, 18, 497504)
        )
        self.assertEqual(
            [final.yes_bid, final.yes_ask, final.no_bid, final.no_ask],
            [Decimal("0.99"), None, None, Decimal("0.01")],
        )
        # The emptied book after settlement is stored with no quote at all.
        empty = snaps.last()
        assert empty is not None
        self.assertEqual(empty.ts, utc(2025, 12, 6, 12, 1, 34, 30369))
        self.assertEqual([getattr(empty, f) for f in PRICE_FIELDS], [None] * 5)

    def test_juliette_snapshots_are_the_first_and_last_trade(self) -> None:
        snaps = MarketSnapshot.objects.filter(market__ticker="KXHIGHNY-26APR22-T57")
        self.assertEqual(
            [(s.ts, s.last_price) for s in snaps],
            [
                (utc(2026, 4, 22, 17, 55, 23, 47052), Decimal("0.39")),
                (utc(2026, 4, 23, 4, 45, 14, 106562), Decimal("0.99")),
            ],
        )

    def test_no_stored_price_is_zero_or_one(self) -> None:
        for name in PRICE_FIELDS:
            outside = Q(**{f"{name}__lte": 0}) | Q(**{f"{name}__gte": 1})
            with self.subTest(name):
                self.assertFalse(MarketSnapshot.objects.filter(outside).exists())
                self.assertFalse(Market.objects.filter(outside).exists())
        self.assertTrue(MarketSnapshot.objects.filter(no_bid=Decimal("0.96")).exists())

    def test_a_second_run_changes_nothing(self) -> None:
        stamps = dict(Market.objects.values_list("ticker", "updated_at"))
        summary = load()
        self.assertEqual(
            summary,
            "Loaded 2 series (+0 added, ~0 updated), 5 events (+0 added, ~0 updated), "
            "26 markets (+0 added, ~0 updated), 55 snapshots (+0 added), "
            "24 results (4 yes, 20 no)",
        )
        self.assertEqual(MarketSnapshot.objects.count(), 55)
        self.assertEqual(Market.objects.count(), 26)
        self.assertEqual(dict(Market.objects.values_list("ticker", "updated_at")), stamps)

    def test_a_changed_market_is_put_back(self) -> None:
        Market.objects.filter(ticker="KXHIGHNY-25AUG02-T84").update(title="edited", result="")
        summary = load()
        self.assertIn("26 markets (+0 added, ~1 updated)", summary)
        market = self.market("KXHIGHNY-25AUG02-T84")
        self.assertEqual(
            (market.title, market.result), ("Highest temperature in NYC on Aug 2, 2025", "no")
        )


@override_settings(RECORDED_DATA_DIR=FIXTURE)
class DefaultDataDirTests(TestCase):
    def test_it_reads_settings_recorded_data_dir_by_default(self) -> None:
        out = StringIO()
        call_command("load_recorded_markets", "--no-progress", stdout=out)
        self.assertIn("26 markets (+26 added", out.getvalue())


class MalformedDataTests(TestCase):
    def assert_rejected(self, data: Path, *fragments: str) -> None:
        with self.assertRaises(CommandError) as caught:
            load(data)
        message = str(caught.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertEqual(Series.objects.count(), 0)
        self.assertEqual(Event.objects.count(), 0)
        self.assertEqual(Market.objects.count(), 0)
        self.assertEqual(MarketSnapshot.objects.count(), 0)

    def test_a_bad_price_in_the_last_file_writes_nothing(self) -> None:
        with FixtureCopy() as data:
            data.edit(JULIETTE, "0.13,2026-04-22T14:09:47", "0.1x,2026-04-22T14:09:47")
            self.assert_rejected(data.path, "kalshi_markets.csv, row 13", "'open_yes'", "'0.1x'")

    def test_a_price_out_of_range(self) -> None:
        with FixtureCopy() as data:
            data.edit(CANDLES, "99.0,99.0,99.0,99.0,3", "99.0,99.0,99.0,101.0,3")
            self.assert_rejected(data.path, "KXHIGHNY_candles_5m.csv, row 9", "'close'", "101.0")

    def test_a_bad_timestamp(self) -> None:
        with FixtureCopy() as data:
            data.edit(LOG, "2025-12-04T12:27:16.080631", "2025-12-04T25:27:16.080631")
            self.assert_rejected(
                data.path, "market_data_KXHIGHNY-25DEC05.csv, row 5", "'timestamp'", "T25:27"
            )

    def test_a_missing_column(self) -> None:
        with FixtureCopy() as data:
            data.edit(CANDLES, "low,close,count", "low,closing,count")
            self.assert_rejected(data.path, "KXHIGHNY_candles_5m.csv, row 1", "'close'")

    def test_a_short_row(self) -> None:
        with FixtureCopy() as data:
            data.edit(
                SETTLEMENT, "2025-08-01,73.5,73° to 74°,73.0,,72.5,2,72.0,1.0,1.0", "2025-08-01"
            )
            self.assert_rejected(data.path, "kalshi_settlement_vs_actual_weather.csv, row 3")

    def test_a_file_that_is_not_utf8(self) -> None:
        with FixtureCopy() as data:
            with (data.path / LOG).open("ab") as handle:
                handle.write(b"2025-12-06T04:01:35,KXHIGHNY-25DEC05-B32.5,\xff,0,100,100\n")
            self.assert_rejected(data.path, "market_data_KXHIGHNY-25DEC05.csv", "unreadable")

    def test_a_missing_file(self) -> None:
        with FixtureCopy() as data:
            (data.path / SETTLEMENT).unlink()
            self.assert_rejected(data.path, "kalshi_settlement_vs_actual_weather.csv", "missing")

    def test_a_missing_data_folder(self) -> None:
        self.assert_rejected(FIXTURE / "nowhere", "nowhere", "missing")

    def test_a_database_error_rolls_everything_back(self) -> None:
        with mock.patch.object(
            MarketSnapshot.objects, "bulk_create", side_effect=DatabaseError("disk full")
        ):
            with self.assertRaises(DatabaseError):
                load()
        self.assertEqual(Market.objects.count(), 0)
        self.assertEqual(Series.objects.count(), 0)


class EdgeCaseTests(TestCase):
    def test_the_last_row_at_one_timestamp_wins(self) -> None:
        with FixtureCopy() as data:
            first = "2025-12-04T12:27:16.079996,KXHIGHNY-25DEC05-T37,1,96,99,4\n"
            data.edit(LOG, first, first + first.replace(",1,96,99,4", ",2,95,98,5"))
            load(data.path)
        snap = MarketSnapshot.objects.get(
            market__ticker="KXHIGHNY-25DEC05-T37", ts=utc(2025, 12, 4, 20, 27, 16, 79996)
        )
        self.assertEqual((snap.yes_bid, snap.no_bid), (Decimal("0.02"), Decimal("0.95")))

    def test_a_log_without_a_clear_winner_gets_no_result(self) -> None:
        with FixtureCopy() as data:
            data.edit(
                LOG,
                "2025-12-05T20:47:18.497504,KXHIGHNY-25DEC05-B32.5,99,0,1,100",
                "2025-12-05T20:47:18.497504,KXHIGHNY-25DEC05-B32.5,90,5,10,95",
            )
            load(data.path)
        markets = Market.objects.filter(event__event_ticker="KXHIGHNY-25DEC05")
        self.assertEqual(markets.count(), 6)
        self.assertEqual(set(markets.values_list("result", "status")), {("", "closed")})

    def test_an_emptied_book_after_settlement_is_not_the_final_quote(self) -> None:
        with FixtureCopy() as data:
            last = "2025-12-06T04:01:34.030369,KXHIGHNY-25DEC05-T37,0,0,100,100\n"
            data.edit(LOG, last, last + "2025-12-06T04:01:35,KXHIGHNY-25DEC05-B32.5,0,0,100,100\n")
            load(data.path)
        winner = Market.objects.get(ticker="KXHIGHNY-25DEC05-B32.5")
        self.assertEqual(winner.result, "yes")
        self.assertEqual(winner.snapshots.count(), 3)

    def test_a_settled_winner_without_candles_is_still_created(self) -> None:
        with FixtureCopy() as data:
            text = (data.path / CANDLES).read_text(encoding="utf-8")
            kept = [line for line in text.splitlines(True) if "AUG02-B79.5" not in line]
            (data.path / CANDLES).write_text("".join(kept), encoding="utf-8")
            load(data.path)
        winner = Market.objects.get(ticker="KXHIGHNY-25AUG02-B79.5")
        self.assertEqual((winner.result, winner.yes_sub_title), ("yes", "79° to 80°"))
        self.assertFalse(winner.snapshots.exists())
