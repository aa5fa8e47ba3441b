"""The dashboard's controls: POST only, CSRF-protected, one audited service each."""

from __future__ import annotations

from decimal import Decimal as D

from django.contrib.messages import get_messages
from django.core.cache import cache
from django.test import Client, TestCase, override_settings
from django.urls import reverse

from dashboard.cache import forget_generation, generation_key
from tests.dashboard.urls import POST_ONLY, all_urls
from tests.dashboard.world import PASSWORD, World, make_operator
from trading.audit import ARM_CONFIRMATION
from trading.models import (
    Order,
    RiskSettings,
    RiskSettingsChange,
    TradingState,
    TradingStateChange,
)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@override_settings(TRADING_MODE="paper")
class ControlTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = make_operator()
        cls.world = World()  # a market, a traded decision, its order and an open position

    def setUp(self):
        cache.clear()
        forget_generation()  # and this process's recent pages
        self.client.force_login(self.user)

    def post(self, name: str, data: dict | None = None, *args):
        return self.client.post(reverse(f"dashboard:{name}", args=args), data or {})

    def test_every_control_refuses_a_post_without_a_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.user)
        world = self.world
        urls = all_urls(
            ticker=world.focus_market.ticker,
            decision=world.focus_decision.pk,
            position=world.focus_position.pk,
        )
        data = {"reason": "x", "confirmation": ARM_CONFIRMATION, "max_open_positions": "3"}
        before = (
            TradingStateChange.objects.count(),
            RiskSettingsChange.objects.count(),
            Order.objects.count(),
        )
        for name in POST_ONLY:
            with self.subTest(name):
                self.assertEqual(client.post(urls[name], data).status_code, 403)
        after = (
            TradingStateChange.objects.count(),
            RiskSettingsChange.objects.count(),
            Order.objects.count(),
        )
        self.assertEqual(after, before)
        self.assertEqual(TradingState.load().state, "active")

    def test_controls_refuse_get(self):
        for name in POST_ONLY - {"position-flatten"}:
            with self.subTest(name):
                self.assertEqual(self.client.get(reverse(f"dashboard:{name}")).status_code, 405)

    def test_halt_halts_and_is_audited(self):
        before = generation_key()
        response = self.post("halt", {"reason": "exchange outage"})
        self.assertRedirects(response, reverse("dashboard:settings"))
        state = TradingState.load()
        self.assertEqual(
            (state.state, state.reason, state.changed_by), ("halted", "exchange outage", self.user)
        )
        change = TradingStateChange.objects.get()
        self.assertEqual((change.new_state, change.changed_by), ("halted", self.user))
        self.assertNotEqual(generation_key(), before)  # cached pages are invalidated

    def test_pause_and_resume(self):
        self.post("pause", {"reason": ""})
        self.assertEqual(TradingState.load().state, "reduce_only")
        response = self.post("resume")
        self.assertIn("Trading resumed.", messages_of(response))
        self.assertEqual(TradingState.load().state, "active")
        self.assertEqual(
            list(TradingStateChange.objects.order_by("id").values_list("new_state", flat=True)),
            ["reduce_only", "active"],
        )

    def test_arming_needs_the_typed_confirmation(self):
        response = self.post("arm", {"confirmation": "arm it", "password": PASSWORD})
        self.assertFalse(TradingState.load().live_armed)
        self.assertTrue(any("exactly" in m for m in messages_of(response)))
        self.post("arm", {"confirmation": ARM_CONFIRMATION, "password": PASSWORD})
        state = TradingState.load()
        self.assertTrue(state.live_armed)
        self.assertEqual(state.armed_by, self.user)
        self.post("disarm")
        self.assertFalse(TradingState.load().live_armed)

    def test_a_control_returns_to_a_safe_next_url_only(self):
        response = self.post("pause", {"next": "/positions/?status=open"})
        self.assertRedirects(response, "/positions/?status=open", fetch_redirect_response=False)
        response = self.post("resume", {"next": "https://evil.example/"})
        self.assertRedirects(response, reverse("dashboard:settings"))

    def test_risk_settings_are_saved_through_the_audited_service(self):
        data = {name: getattr(RiskSettings(), name) for name in RiskSettings.AUDITED_FIELDS}
        data.update(max_open_positions=9, edge_low=D("0.15"))
        response = self.post("settings-risk", data)
        self.assertRedirects(response, reverse("dashboard:settings"))
        limits = RiskSettings.load()
        self.assertEqual((limits.max_open_positions, limits.edge_low), (9, D("0.15")))
        changes = RiskSettingsChange.objects.order_by("field")
        self.assertEqual(
            [(c.field, c.old_value, c.new_value, c.via, c.changed_by) for c in changes],
            [
                ("edge_low", "0.120000", "0.150000", "dashboard", self.user),
                ("max_open_positions", "15", "9", "dashboard", self.user),
            ],
        )

    def test_invalid_risk_settings_are_refused_with_their_reasons(self):
        data = {name: getattr(RiskSettings(), name) for name in RiskSettings.AUDITED_FIELDS}
        data.update(edge_high=D("0.5"), max_position_pct=D("2"))
        response = self.post("settings-risk", data)
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "were not saved")
        self.assertContains(response, "Ensure this value is less than or equal to 1")
        self.assertEqual(RiskSettingsChange.objects.count(), 0)
        self.assertEqual(RiskSettings.load().max_position_pct, D("0.05"))

        data.update(max_position_pct=D("0.05"))  # only the edge tiers are wrong now
        response = self.post("settings-risk", data)
        self.assertContains(response, "Edge thresholds must not decrease")
        self.assertEqual(RiskSettingsChange.objects.count(), 0)

    def test_the_form_covers_every_audited_field_once(self):
        from dashboard.forms import RiskSettingsForm

        grouped = [name for _, names in RiskSettingsForm.GROUPS for name in names]
        self.assertEqual(sorted(grouped), sorted(RiskSettings.AUDITED_FIELDS))

    def test_flattening_a_position_queues_one_exit_order(self):
        position = self.world.focus_position
        Order.objects.filter(market=position.market).update(status="filled")
        response = self.post("position-flatten", {}, position.pk)
        self.assertIn(
            f"Exit order queued for {position.market.ticker}", " ".join(messages_of(response))
        )
        order = Order.objects.get(market=position.market, status="approved", purpose="flatten")
        self.assertEqual((order.action, order.side, order.count), ("sell", "yes", D("10")))
        self.assertEqual(order.decision.details["by"], self.user.username)

        response = self.post("position-flatten", {}, position.pk)  # an order is open now
        self.assertIn("still open", " ".join(messages_of(response)))
        self.assertEqual(Order.objects.filter(market=position.market, status="approved").count(), 1)
