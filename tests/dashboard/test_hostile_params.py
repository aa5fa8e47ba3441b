"""Query parameters and path arguments no page can use answer 400 or 404, never 500: far
dates, NUL bytes, huge or negative page numbers and ids, values outside a filter's choices."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import TestCase, override_settings
from django.urls import reverse

from dashboard.cache import forget_generation
from tests.dashboard.world import World


@override_settings(TRADING_MODE="paper")
class HostileParamsTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_superuser("boss", "boss@example.com", None)
        cls.world = World().grow(2)

    def setUp(self):
        cache.clear()
        forget_generation()
        self.client.force_login(self.user)
        self.client.raise_request_exception = False

    def status(self, name: str, params: dict[str, str], *args: object) -> int:
        url = reverse(f"dashboard:{name}", args=args)
        return self.client.get(f"{url}?{urlencode(params)}").status_code

    def test_far_days_are_refused(self):
        for name in ("decisions", "funnel"):
            for day in ("9999-12-31", "0001-01-01", "1000-01-01", "3000-01-01"):
                with self.subTest(name=name, day=day):
                    self.assertEqual(self.status(name, {"day": day}), 400)

    def test_a_day_in_range_still_filters(self):
        for name in ("decisions", "funnel"):
            with self.subTest(name=name):
                self.assertEqual(self.status(name, {"day": "2025-06-01"}), 200)

    def test_a_nul_byte_in_a_path_argument_or_a_query(self):
        self.assertEqual(self.client.get("/markets/%00/").status_code, 400)
        self.assertEqual(self.client.get("/markets/" + quote("KX\x00Y") + "/").status_code, 400)
        for name in ("markets", "decisions", "orders", "fills", "positions", "calibration"):
            with self.subTest(name=name):
                self.assertEqual(self.status(name, {"q": "a\x00"}), 400)

    def test_page_numbers_are_bounded(self):
        for page in ("0", "-1", "1" * 40, "1e3", "x", "99999999"):
            for name in ("markets", "decisions", "orders", "fills", "positions"):
                with self.subTest(name=name, page=page):
                    self.assertEqual(self.status(name, {"page": page}), 400)
        self.assertEqual(self.status("decisions", {"page": "2"}), 200)

    def test_a_category_or_forecaster_not_listed_matches_nothing(self):
        self.assertEqual(self.status("markets", {"category": "Nowhere"}), 200)
        self.assertEqual(self.status("calibration", {"forecaster": "nobody"}), 200)

    def test_values_outside_a_filter_are_refused(self):
        cases = {
            "decisions": {"run": "1" * 30},
            "markets": {"min_volume": "1e400"},
            "orders": {"status": "nope"},
            "calibration": {"forecaster": "x" * 500},
        }
        for name, params in cases.items():
            with self.subTest(name=name):
                self.assertEqual(self.status(name, params), 400)

    def test_huge_or_unknown_ids_are_not_found(self):
        for name in ("decision", "position"):
            for pk in (10**30, 2**63, 2**31):
                with self.subTest(name=name, pk=pk):
                    self.assertEqual(self.status(name, {}, pk), 404)
        self.assertEqual(self.status("market", {}, "X" * 500), 404)

    def test_a_refused_parameter_logs_one_line_not_a_traceback(self):
        # An attacker's bad query must not fill the log with stack traces.
        with self.assertLogs("django.request", "WARNING") as logs:
            self.assertEqual(self.status("decisions", {"day": "9999-12-31"}), 400)
        self.assertTrue(logs.records)
        self.assertTrue(all(record.exc_info is None for record in logs.records), logs.output)
