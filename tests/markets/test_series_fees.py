"""Series fee structures from Kalshi to every MarketQuote: parsing, sync, the recorded loader
and the quote sources (issue 12, finding 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import TestCase

from markets import kalshi
from markets.exchange_kalshi import KalshiExchange
from markets.fees import DEFAULT_FEES, FeeSchedule, stored_fee_schedules
from markets.models import Event, Market, MarketSnapshot, Series
from markets.paper import PaperQuotes
from markets.services import FEES_MAX_AGE, market_sync
from markets.simulator import ReplayQuotes
from tests.base import make_event, make_market, make_series
from tests.fakes import FakeKalshi, iso

QM, QC = "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees"
SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"


def series_json(**overrides):
    data = FakeKalshi()._series_json("KXA")
    data.update(overrides)
    return data


# --- Parsing -----------------------------------------------------------------------------------


def test_series_fees_are_parsed_exactly_from_the_json_number():
    fake = FakeKalshi()
    fake.add_series("KXA", fee_type=QM, fee_multiplier=0.1)
    series = fake.client().get_series("KXA")
    assert (series.ticker, series.fee_type, series.fee_multiplier) == ("KXA", QM, D("0.1"))
    # A float (a double in the spec) converts through its text, never its binary value.
    assert kalshi.Series.from_json(series_json(fee_multiplier=0.35)).fee_multiplier == D("0.35")
    assert kalshi.Series.from_json(series_json(fee_multiplier=2)).fee_multiplier == D(2)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (-0.5, "not a finite number >= 0"),
        ("1", "expected a number"),
        (True, "expected a number"),
        (None, "is null"),
        (0.0000001, "more than 6 decimal places"),
        (1e6, "too large"),
    ],
)
def test_a_bad_fee_multiplier_is_a_parse_error_naming_the_record(value, problem):
    with pytest.raises(kalshi.KalshiParseError, match=r"Series\[KXA\]\.fee_multiplier") as info:
        kalshi.Series.from_json(series_json(fee_multiplier=value))
    assert problem in str(info.value)


def test_an_unknown_fee_type_is_a_parse_error_naming_the_record():
    with pytest.raises(kalshi.KalshiParseError, match=r"Series\[KXA\]\.fee_type: unknown fee"):
        kalshi.Series.from_json(series_json(fee_type="cubic"))
    event = {
        "event_ticker": "KXA-1",
        "series_ticker": "KXA",
        "title": "",
        "sub_title": "",
        "mutually_exclusive": False,
        "collateral_return_type": "",
    }
    with pytest.raises(kalshi.KalshiParseError, match=r"Event\[KXA-1\]\.fee_type_override"):
        kalshi.Event.from_json({**event, "fee_type_override": "cubic"})
    parsed = kalshi.Event.from_json(
        {**event, "fee_type_override": QC, "fee_multiplier_override": 0.5}
    )
    assert (parsed.fee_type_override, parsed.fee_multiplier_override) == (QC, D("0.5"))
    cleared = kalshi.Event.from_json(
        {**event, "fee_type_override": None, "fee_multiplier_override": None}
    )
    assert (cleared.fee_type_override, cleared.fee_multiplier_override) == (None, None)


def test_a_market_fee_waiver_is_parsed():
    fake = FakeKalshi()
    until = fake.now + timedelta(days=2)
    fake.add_market("KXA-1-T1", fee_waiver_expiration_time=iso(until))
    fake.add_market("KXA-1-T2")
    client = fake.client()
    assert client.get_market("KXA-1-T1").fee_waiver_expiration_time == until
    assert client.get_market("KXA-1-T2").fee_waiver_expiration_time is None


# --- Sync --------------------------------------------------------------------------------------


def fee_world() -> FakeKalshi:
    fake = FakeKalshi()
    fake.add_series("KXM", fee_type=QM, fee_multiplier=2)
    fake.add_series("KXH", fee_type="quadratic", fee_multiplier=0.5)
    fake.add_event("KXM-26SEP02", fee_type_override=QC, fee_multiplier_override=0.25)
    fake.add_market("KXM-26SEP01-T1", yes_bid="0.40", yes_ask="0.45")
    fake.add_market(
        "KXM-26SEP02-T1",
        yes_bid="0.40",
        yes_ask="0.45",
        fee_waiver_expiration_time=iso(fake.now + timedelta(days=1)),
    )
    fake.add_market("KXH-26SEP01-T1", yes_bid="0.40", yes_ask="0.45")
    fake.add_market("KXQ-26SEP01-T1", yes_bid="0.40", yes_ask="0.45")  # never configured
    return fake


class FeeSyncTests(TestCase):
    def setUp(self):
        self.fake = fee_world()
        self.client_ = self.fake.public_client()

    def schedule(self, ticker):
        return Market.objects.select_related("event__series").get(ticker=ticker).fee_schedule()

    def test_sync_stores_series_fees_event_overrides_and_waivers(self):
        summary = market_sync(client=self.client_, now=self.fake.now)
        self.assertEqual((summary.fees_refreshed, summary.fee_errors), (3, 0))
        self.assertIn("fees of 3 series read", summary.summary())
        series = Series.objects.get(ticker="KXM")
        self.assertEqual((series.fee_type, series.fee_multiplier), (QM, D(2)))
        self.assertEqual(series.fees_synced_at, self.fake.now)
        event = Event.objects.get(event_ticker="KXM-26SEP02")
        self.assertEqual((event.fee_type_override, event.fee_multiplier_override), (QC, D("0.25")))
        until = self.fake.now + timedelta(days=1)
        self.assertEqual(self.schedule("KXM-26SEP01-T1"), FeeSchedule(QM, D(2)))
        self.assertEqual(self.schedule("KXM-26SEP02-T1"), FeeSchedule(QC, D("0.25"), until))
        self.assertEqual(self.schedule("KXH-26SEP01-T1"), FeeSchedule("quadratic", D("0.5")))
        self.assertEqual(self.schedule("KXQ-26SEP01-T1"), DEFAULT_FEES)
        self.assertEqual(
            stored_fee_schedules(["KXM-26SEP02-T1", "KXH-26SEP01-T1", "NOPE"]),
            {
                "KXM-26SEP02-T1": FeeSchedule(QC, D("0.25"), until),
                "KXH-26SEP01-T1": FeeSchedule("quadratic", D("0.5")),
            },
        )

    def test_fees_are_read_again_only_when_stale_and_a_cleared_override_is_cleared(self):
        first = market_sync(client=self.client_, now=self.fake.now)
        calls = self.fake.count("GET /series/{series_ticker}")
        self.assertEqual(calls, 3)
        again = market_sync(client=self.client_, now=first.ts + FEES_MAX_AGE / 2)
        self.assertEqual(again.fees_refreshed, 0)
        self.assertEqual(self.fake.count("GET /series/{series_ticker}"), calls)
        self.fake.events["KXM-26SEP02"].update(fee_type_override=None, fee_multiplier_override=None)
        self.fake.add_series("KXM", fee_type="quadratic", fee_multiplier=1)
        later = market_sync(client=self.client_, now=first.ts + FEES_MAX_AGE)
        self.assertEqual(later.fees_refreshed, 3)
        self.assertEqual(self.schedule("KXM-26SEP01-T1"), DEFAULT_FEES)
        self.assertEqual(
            self.schedule("KXM-26SEP02-T1"),
            FeeSchedule(waived_until=self.fake.now + timedelta(days=1)),
        )

    def test_a_series_that_cannot_be_read_is_reported_and_the_others_are_stored(self):
        self.fake.add_series("KXH", fee_type="cubic", fee_multiplier=1)
        with self.assertLogs("markets.services", "WARNING") as logs:
            summary = market_sync(client=self.client_, now=self.fake.now)
        self.assertEqual((summary.seen, summary.fees_refreshed, summary.fee_errors), (4, 2, 1))
        self.assertIn("1 failed", summary.summary())
        self.assertIn("Series[KXH].fee_type: unknown fee type 'cubic'", logs.output[0])
        series = Series.objects.get(ticker="KXH")
        self.assertEqual(
            (series.fee_type, series.fee_multiplier, series.fees_synced_at), ("", None, None)
        )
        self.assertEqual(Series.objects.get(ticker="KXM").fee_type, QM)
        # Tried again on the next sync, however recent the last one.
        self.fake.add_series("KXH", fee_type=QM, fee_multiplier=1)
        again = market_sync(client=self.client_, now=self.fake.now + timedelta(minutes=1))
        self.assertEqual((again.fees_refreshed, again.fee_errors), (1, 0))
        self.assertEqual(Series.objects.get(ticker="KXH").fee_type, QM)


# --- Quotes carry their market's schedule ------------------------------------------------------


class QuoteFeeTests(TestCase):
    def test_live_and_paper_quotes_carry_the_stored_schedule_and_the_live_waiver(self):
        fake = fee_world()
        client = fake.client()
        market_sync(client=client, now=fake.now)
        # The waiver moves after the sync: the live market's own value wins.
        later = fake.now + timedelta(days=3)
        fake.markets["KXM-26SEP02-T1"]["fee_waiver_expiration_time"] = iso(later)
        expected = {
            "KXM-26SEP01-T1": FeeSchedule(QM, D(2)),
            "KXM-26SEP02-T1": FeeSchedule(QC, D("0.25"), later),
            "KXH-26SEP01-T1": FeeSchedule("quadratic", D("0.5")),
            "KXQ-26SEP01-T1": DEFAULT_FEES,
        }
        for source in (KalshiExchange(client), PaperQuotes(client)):
            self.assertEqual({q.ticker: q.fees for q in source.open_markets()}, expected)
            self.assertEqual(source.quote("KXM-26SEP02-T1").fees, expected["KXM-26SEP02-T1"])
        # A market on an event never synced still gets its known series' fees.
        fake.add_market("KXM-26SEP09-T1", yes_bid="0.40", yes_ask="0.45")
        self.assertEqual(
            KalshiExchange(client).quote("KXM-26SEP09-T1").fees, expected["KXM-26SEP01-T1"]
        )

    def test_replay_quotes_carry_the_stored_schedule_and_no_volume(self):
        now = datetime(2026, 3, 1, 12, tzinfo=UTC)
        series = make_series(fee_type=QM, fee_multiplier=D("1.5"))
        market = make_market(
            event=make_event(series=series, fee_multiplier_override=D(3)),
            ticker="KXR-1",
            open_time=now - timedelta(days=1),
            close_time=now + timedelta(days=1),
            fee_waiver_expiration_time=now + timedelta(hours=1),
        )
        MarketSnapshot.objects.create(
            market=market, ts=now - timedelta(minutes=5), yes_bid=D("0.4"), yes_ask=D("0.45")
        )
        quote = ReplayQuotes(lambda: now).quote("KXR-1")
        self.assertEqual(quote.fees, FeeSchedule(QM, D(3), now + timedelta(hours=1)))
        self.assertIsNone(quote.volume)

    def test_recorded_series_are_stored_with_the_default_schedule(self):
        call_command("load_recorded_markets", "--data", str(SMALL), "--no-progress")
        self.assertTrue(Series.objects.exists())
        for series in Series.objects.all():
            self.assertEqual((series.fee_type, series.fee_multiplier), ("quadratic", D(1)))
        market = Market.objects.select_related("event__series").first()
        self.assertEqual(market.fee_schedule(), DEFAULT_FEES)
