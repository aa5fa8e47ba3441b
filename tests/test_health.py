"""/health/: healthy and unhealthy, JSON and HTML, and never a secret."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone

from trading.models import JobRun, TradingState


class HealthTests(TestCase):
    def beat(self, age_seconds: int = 0) -> None:
        JobRun.objects.create(
            job="heartbeat",
            status=JobRun.Status.OK,
            heartbeat_at=timezone.now() - timedelta(seconds=age_seconds),
        )

    def get_json(self):
        return self.client.get("/health/", HTTP_ACCEPT="application/json")

    def test_it_is_healthy_with_a_fresh_heartbeat_and_active_trading(self):
        self.beat()
        response = self.get_json()
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertTrue(all(value == "OK" for value in body.values()), body)
        self.assertEqual(len(body), 4)

    def test_it_serves_html(self):
        self.beat()
        response = self.client.get("/health/", HTTP_ACCEPT="text/html")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "WorkerHeartbeat")

    def test_it_is_unhealthy_without_any_worker_heartbeat(self):
        response = self.get_json()
        self.assertEqual(response.status_code, 500)
        self.assertIn("worker", " ".join(response.json().values()))

    @override_settings(WORKER_HEARTBEAT_MAX_AGE_SECONDS=60)
    def test_it_is_unhealthy_with_a_stale_heartbeat(self):
        self.beat(age_seconds=600)
        response = self.get_json()
        self.assertEqual(response.status_code, 500)

    def test_it_is_unhealthy_when_trading_is_halted_and_says_why(self):
        self.beat()
        TradingState.objects.update_or_create(
            pk=1, defaults={"state": TradingState.State.HALTED, "reason": "position mismatch"}
        )
        response = self.get_json()
        self.assertEqual(response.status_code, 500)
        self.assertIn("position mismatch", " ".join(response.json().values()))

    @override_settings(
        LLM_API_KEY="sk-test-secret-llm-key-123456", KALSHI_API_KEY_ID="key-id-abcdef-0001"
    )
    def test_it_never_shows_a_secret(self):
        self.beat()
        for accept in ("application/json", "text/html", "text/plain"):
            body = self.client.get("/health/", HTTP_ACCEPT=accept).content.decode()
            for secret in ("sk-test-secret-llm-key-123456", "key-id-abcdef-0001", "SECRET_KEY"):
                self.assertNotIn(secret, body)

    def test_liveness_needs_no_database(self):
        with self.assertNumQueries(0):
            response = self.client.get("/health/live/")
        self.assertEqual(response.status_code, 200)
