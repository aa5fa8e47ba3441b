"""Formatting filters: money through format_dollars, prices, percentages, durations."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.test import SimpleTestCase

from dashboard.templatetags import dashboard_extras as x


class FilterTests(SimpleTestCase):
    def test_dollars_goes_through_format_dollars(self):
        self.assertEqual(x.dollars(D("-1234.5")), "-$1,234.50")
        self.assertEqual(x.dollars("0.000001", 6), "$0.000001")
        self.assertEqual(x.dollars(None), "—")
        self.assertEqual(x.dollars("not a number"), "—")

    def test_signed_dollars_and_pnl_class(self):
        self.assertEqual(x.signed_dollars(D("12")), "+$12.00")
        self.assertEqual(x.signed_dollars(D("-3.5")), "-$3.50")
        self.assertEqual(x.signed_dollars(D("0.001")), "$0.00")
        self.assertEqual(
            (x.pnl_class("1"), x.pnl_class("-1"), x.pnl_class("0")), ("pos", "neg", "")
        )

    def test_prices_as_dollars_or_cents(self):
        self.assertEqual(x.price(D("0.42")), "0.4200")
        self.assertEqual(x.cents(D("0.42")), "42¢")
        self.assertEqual(x.cents(D("0.4250")), "42.5¢")
        self.assertEqual(x.cents(D("0.0010")), "0.1¢")
        self.assertEqual(x.cents(None), "—")

    def test_percentages_and_numbers(self):
        self.assertEqual(x.pct(D("0.0525")), "5.2%")  # half-even
        self.assertEqual(x.pct(D("0.0525"), 2), "5.25%")
        self.assertEqual(x.pct("-0.1"), "-10.0%")
        self.assertEqual(x.num(D("0.20251"), 4), "0.2025")
        self.assertEqual(x.contracts(D("10.00")), "10")
        self.assertEqual(x.contracts(D("10.50")), "10.5")
        self.assertEqual(x.contracts(D("1234")), "1,234")

    def test_durations(self):
        self.assertEqual(x.duration(timedelta(seconds=45)), "45s")
        self.assertEqual(x.duration(timedelta(minutes=12, seconds=5)), "12m 05s")
        self.assertEqual(x.duration(timedelta(hours=3, minutes=20)), "3h 20m")
        self.assertEqual(x.duration(timedelta(days=2, hours=4, minutes=1)), "2d 4h")
        self.assertEqual(x.hours("40.50"), "1d 16h")
        self.assertEqual(x.duration(None), "—")

    def test_reason_labels_and_words(self):
        self.assertEqual(x.reason_label("edge_too_small"), "Edge after fees too small")
        self.assertEqual(x.reason_label("something_new"), "Something new")
        self.assertEqual(x.words("max_position_pct"), "Max position pct")

    def test_arithmetic_is_exact(self):
        self.assertEqual(x.times("3", D("0.4200")), D("1.2600"))
        self.assertEqual(x.minus(D("0.55"), "0.41"), D("0.14"))
        self.assertIsNone(x.minus(None, "1"))
        self.assertEqual(x.bar_width(1, 4), "25.0")
        self.assertEqual(x.bar_width(1, 0), "0")
