"""The dashboard's pages: they render every kind of row, refuse anonymous users, and run a
query count that does not grow with the data."""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.cache import forget_generation
from tests.dashboard.urls import POST_ONLY, all_urls, dashboard_url_names
from tests.dashboard.world import World, make_operator
from trading.models import TradingState


def page_urls(world: World) -> dict[str, str]:
    """Every GET page (walked from the resolver), plus filtered variants of the lists."""
    urls = all_urls(
        ticker=world.focus_market.ticker,
        decision=world.focus_decision.pk,
        position=world.focus_position.pk,
    )
    pages = {name: url for name, url in urls.items() if name not in POST_ONLY}
    pages.update(
        {
            "markets?filters": reverse("dashboard:markets")
            + "?q=KXWORLD&status=active&category=Climate&closing=168&min_volume=10&series=KXWORLD",
            "markets?page=2": reverse("dashboard:markets") + "?page=2",
            "decisions?filters": reverse("dashboard:decisions") + "?reason=traded&q=KX&mode=",
            "positions?open": reverse("dashboard:positions") + "?status=open&strategy=directional",
            "orders?unknown": reverse("dashboard:orders") + "?status=unknown&purpose=open",
            "fills?sell": reverse("dashboard:fills") + "?side=no&action=sell",
            "calibration?market": reverse("dashboard:calibration") + "?forecaster=market",
            "funnel?day": reverse("dashboard:funnel") + "?day=2020-01-01&mode=paper",
            "exit-decision": reverse(
                "dashboard:decision",
                args=[world.focus_market.decisions.filter(reason="exit").first().pk],
            ),
        }
    )
    return pages


@override_settings(TRADING_MODE="paper")
class PageTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = make_operator()
        cls.world = World().grow(6)

    def setUp(self):
        cache.clear()
        forget_generation()  # and this process's recent pages
        self.client.force_login(self.user)

    def test_every_page_renders_with_data(self):
        for name, url in page_urls(self.world).items():
            with self.subTest(name):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 200, url)
                self.assertContains(response, "Kalshi trading desk")

    def test_every_page_renders_on_an_empty_database(self):
        world = self.world
        urls = page_urls(world)
        for model in ("decision", "market"):
            urls.pop(model)
        urls.pop("exit-decision")
        with self.settings(TRADING_MODE="live"):  # no rows at all in live mode
            for name, url in urls.items():
                with self.subTest(name):
                    self.assertEqual(self.client.get(url).status_code, 200, url)

    def test_the_decision_page_explains_a_trade(self):
        response = self.client.get(
            reverse("dashboard:decision", args=[self.world.focus_decision.pk])
        )
        for text in (
            "Candidate filters",
            "Edge after fees",
            "Risk checks",
            "Position size",
            "11.00%",
        ):
            self.assertContains(response, text)
        self.assertContains(response, self.world.focus_order.client_order_id)

    def test_the_overview_shows_state_and_alerts(self):
        TradingState.objects.update_or_create(
            pk=1, defaults={"state": "halted", "reason": "reconcile mismatch on KXWORLD"}
        )
        response = self.client.get(reverse("dashboard:index"))
        self.assertContains(response, "Trading halted:")
        self.assertContains(response, "reconcile mismatch on KXWORLD")
        self.assertContains(response, "of unknown outcome")

    def test_unknown_rows_are_404(self):
        self.assertEqual(self.client.get("/markets/NOPE/").status_code, 404)
        self.assertEqual(self.client.get("/decisions/999999/").status_code, 404)


class AnonymousTests(TestCase):
    """Every URL of the dashboard sends an anonymous visitor to the login page, with nothing
    of the data in the answer, whatever the method."""

    @classmethod
    def setUpTestData(cls):
        cls.world = World().grow(2)

    def test_every_url_redirects_anonymous_users_to_login(self):
        world = self.world
        urls = all_urls(
            ticker=world.focus_market.ticker,
            decision=world.focus_decision.pk,
            position=world.focus_position.pk,
        )
        self.assertEqual(set(urls), dashboard_url_names())
        for name, url in urls.items():
            for method in ("get", "post"):
                with self.subTest(name=name, method=method):
                    response = getattr(self.client, method)(url)
                    self.assertEqual(response.status_code, 302)
                    self.assertTrue(response["Location"].startswith("/accounts/login/?next="))
                    self.assertEqual(response.content, b"")
        self.assertEqual(TradingState.objects.filter(state="halted").count(), 0)


@override_settings(TRADING_MODE="paper")
class QueryCountTests(TestCase):
    """A page's query count is a constant: the same at 3 and at 30 rows of every kind."""

    def setUp(self):
        self.client.force_login(make_operator())

    def counts(self, world: World) -> dict[str, int]:
        result = {}
        for name, url in page_urls(world).items():
            cache.clear()  # a cold cache: every part is built
            forget_generation()  # and this process's recent pages
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(url)
            self.assertEqual(response.status_code, 200, url)
            result[name] = len(queries)
        return result

    def test_each_page_runs_the_same_number_of_queries_at_two_data_sizes(self):
        world = World().grow(3)
        small = self.counts(world)
        world.grow(30)
        large = self.counts(world)
        self.assertEqual(small, large)

    def test_a_warm_cache_saves_queries(self):
        world = World().grow(3)
        url = reverse("dashboard:index")
        cache.clear()
        forget_generation()  # and this process's recent pages
        with CaptureQueriesContext(connection) as cold:
            self.client.get(url)
        with CaptureQueriesContext(connection) as warm:
            self.client.get(url)
        self.assertLess(len(warm), len(cold))
        del world
