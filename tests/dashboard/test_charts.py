"""Chart data: downsampling keeps extremes and order; specs carry exact decimal strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from django.test import SimpleTestCase

from dashboard import charts

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class DownsampleTests(SimpleTestCase):
    def test_short_series_are_kept_whole(self):
        rows = [(i, D(i)) for i in range(10)]
        self.assertEqual(charts.downsample(rows, key=lambda r: r[1], max_points=10), rows)

    def test_long_series_are_thinned_in_order_keeping_spikes_and_the_last_row(self):
        rows = [(i, D("0.5")) for i in range(100_000)]
        rows[12_345] = (12_345, D("0.99"))
        rows[67_890] = (67_890, D("0.01"))
        kept = charts.downsample(rows, key=lambda r: r[1], max_points=400)
        self.assertLessEqual(len(kept), 400)
        self.assertEqual([r[0] for r in kept], sorted(r[0] for r in kept))
        self.assertIn(rows[12_345], kept)
        self.assertIn(rows[67_890], kept)
        self.assertEqual(kept[-1], rows[-1])

    def test_price_history_merges_forecasts_at_their_own_times(self):
        snaps = [
            (T0, D("0.40"), D("0.42"), None),
            (T0 + timedelta(minutes=5), None, None, D("0.41")),
        ]
        chart = charts.price_history(snaps, [(T0 + timedelta(minutes=2), D("0.97")), (T0, None)])
        spec = chart.as_json()
        self.assertEqual(len(spec["x"]), 3)
        bid, ask, last, forecast = (s["values"] for s in spec["series"])
        self.assertEqual(bid, ["0.40", None, None])
        self.assertEqual(forecast, [None, "0.97", None])
        self.assertEqual(last, [None, None, "0.41"])

    def test_drawdown_is_measured_on_every_row(self):
        rows = [(T0 + timedelta(minutes=i), D(v)) for i, v in enumerate([100, 120, 90, 130, 125])]
        result = charts.drawdown(rows)
        self.assertEqual(result.max_drawdown, D("-0.25"))
        self.assertEqual(result.max_drawdown_dollars, D("-30"))
        self.assertEqual(
            result.chart.series[0].values[-1], str((D(-5) / 130).quantize(D("0.000001")))
        )

    def test_empty_series_make_an_empty_chart(self):
        self.assertTrue(charts.equity_curve([]).empty)
        self.assertTrue(charts.drawdown([]).chart.empty)
        self.assertIsNone(charts.drawdown([]).max_drawdown)
