"""The page cache: a page served again is the page a fresh render would give this request.

What can change without a new generation (the trading state, the heartbeat, the limits, the
user, the request's CSRF token, a one-time message) must show at once.
"""

from __future__ import annotations

import re
from decimal import Decimal as D

from django.core.cache import cache
from django.db import connection
from django.test import Client, TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard import queries
from dashboard.cache import CSRF_PLACEHOLDER, forget_generation
from tests.dashboard.world import World, make_operator
from trading.audit import risk_settings_update, trading_state_set
from trading.models import JobRun, RiskSettings, TradingState

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@override_settings(TRADING_MODE="paper")
class PageCacheTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = make_operator()
        cls.world = World().grow(2)
        TradingState.load()
        RiskSettings.load()

    def setUp(self):
        cache.clear()
        forget_generation()
        self.client.force_login(self.user)

    def get(self, name: str, client: Client | None = None):
        response = (client or self.client).get(reverse(f"dashboard:{name}"))
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, CSRF_PLACEHOLDER)
        return response

    def test_a_page_served_again_reads_only_the_live_state(self):
        self.get("performance")
        with CaptureQueriesContext(connection) as warm:
            again = self.get("performance")
        tables = [q["sql"] for q in warm.captured_queries]
        # The session's user, their permissions (one query) and the live state.
        self.assertEqual(len(tables), 3, tables)
        self.assertIn("auth_user", tables[0])
        self.assertIn("auth_permission", tables[1])
        self.assertIn("trading_tradingstate", tables[2])
        self.assertContains(again, "Performance")

    def test_a_halt_made_outside_the_dashboard_shows_at_once(self):
        self.assertNotContains(self.get("performance"), "Halted")
        # The service alone: no dashboard control, no cycle, so no new cache generation.
        trading_state_set(state="halted", reason="operator on the phone", user=None)
        page = self.get("performance")
        self.assertContains(page, "Halted")
        self.assertContains(page, "operator on the phone")

    def test_a_limit_changed_from_the_command_line_shows_at_once(self):
        self.get("settings")
        risk_settings_update(
            settings_obj=RiskSettings.load(),
            changes={"max_open_positions": 7},
            user=None,
            via="command",
        )
        page = self.get("settings")
        self.assertRegex(page.content.decode(), r'name="max_open_positions"[^>]*value="7"')

    def test_the_overview_follows_the_worker_heartbeat(self):
        JobRun.objects.all().delete()
        self.assertContains(self.get("index"), "never")
        JobRun.objects.create(job="trading_cycle", heartbeat_at=timezone.now())
        page = self.get("index")
        self.assertNotContains(page, "worker heartbeat never")
        self.assertContains(page, "healthy")

    def test_each_user_sees_their_own_name(self):
        other = make_operator("second-operator")
        client = Client()
        client.force_login(other)
        self.assertContains(self.get("orders"), "operator")
        page = self.get("orders", client)
        self.assertContains(page, "second-operator")

    def test_each_session_gets_a_working_csrf_token_of_its_own(self):
        first = Client(enforce_csrf_checks=True)
        second = Client(enforce_csrf_checks=True)
        for client in (first, second):
            client.force_login(self.user)
        first_token = TOKEN.search(self.get("fills", first).content.decode()).group(1)
        # The second session is served the cached page, with its own token put in.
        second_page = self.get("fills", second).content.decode()
        second_token = TOKEN.search(second_page).group(1)
        self.assertNotEqual(first_token, second_token)
        response = second.post(
            reverse("dashboard:pause"),
            {"csrfmiddlewaretoken": second_token, "reason": "checking"},
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(TradingState.load().state, "reduce_only")

    def test_a_message_is_shown_once_and_never_cached(self):
        self.get("orders")
        response = self.client.post(
            reverse("dashboard:pause"), {"reason": "lunch", "next": "/orders/"}
        )
        self.assertEqual(response.status_code, 302)
        self.assertContains(self.get("orders"), "Trading paused")
        self.assertNotContains(self.get("orders"), "Trading paused")

    def test_a_changed_limit_row_is_not_mistaken_for_the_cached_one(self):
        # Same values, different row version: the key follows updated_at, not the values.
        self.get("settings")
        before = RiskSettings.load().updated_at
        risk_settings_update(
            settings_obj=RiskSettings.load(),
            changes={"min_volume": D("201")},
            user=None,
            via="command",
        )
        self.assertNotEqual(RiskSettings.load().updated_at, before)
        self.assertRegex(self.get("settings").content.decode(), r'name="min_volume"[^>]*value="201')


class LiveStateTests(TestCase):
    def test_it_reads_the_row_the_heartbeat_and_the_limits_change_exactly(self):
        beat = timezone.now().replace(microsecond=123456)
        JobRun.objects.create(job="trading_cycle", heartbeat_at=beat)
        JobRun.objects.create(job="reconcile", heartbeat_at=beat - timezone.timedelta(hours=1))
        limits = RiskSettings.load()
        trading_state_set(state="reduce_only", reason="checking", user=None)
        state = queries.live_state(heartbeat=True, risk=True)
        self.assertEqual((state.state, state.reason), ("reduce_only", "checking"))
        self.assertEqual(state.last_heartbeat, beat)
        self.assertEqual(state.risk_updated_at, limits.updated_at)
        self.assertFalse(hasattr(queries.live_state(), "last_heartbeat"))

    def test_a_new_installation_reads_the_defaults(self):
        state = queries.live_state(heartbeat=True, risk=True)
        self.assertIsNone(state.pk)
        self.assertEqual(state.state, "active")
        self.assertIsNone(state.last_heartbeat)
        self.assertIsNone(state.risk_updated_at)


@override_settings(TRADING_MODE="paper")
class PrivatePagesTests(TestCase):
    def test_no_browser_or_proxy_keeps_a_copy_of_a_page(self):
        world = World()
        client = Client()
        client.force_login(make_operator())
        for url in ("/", "/orders/", f"/positions/{world.focus_position.pk}/"):
            for attempt in ("built", "from the page cache"):
                with self.subTest(url=url, attempt=attempt):
                    response = client.get(url)
                    self.assertEqual(response.status_code, 200)
                    self.assertIn("no-store", response["Cache-Control"])
                    self.assertIn("private", response["Cache-Control"])
