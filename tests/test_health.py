"""/health/: the public yes/no, the detailed view for staff or a token, each check, and never a
secret."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.test import TestCase, override_settings
from django.utils import timezone

from markets.exchange import ExchangeStatus
from trading.health import EXCHANGE_STATUS_JOB, exchange_probe, exchange_status_record
from trading.models import JobRun, TradingState

TOKEN = "health-token-for-tests-0123456789abcdef"


@override_settings(HEALTH_TOKEN=TOKEN, TRADING_MODE="paper")
class HealthTestCase(TestCase):
    def beat(self, age_seconds: int = 0) -> None:
        JobRun.objects.create(
            job="heartbeat",
            status=JobRun.Status.OK,
            heartbeat_at=timezone.now() - timedelta(seconds=age_seconds),
        )

    def cycle(self, age_seconds: int = 0, status: str = JobRun.Status.OK, mode="paper") -> None:
        at = timezone.now() - timedelta(seconds=age_seconds)
        JobRun.objects.create(
            job="trading_cycle",
            mode=mode,
            status=status,
            started_at=at - timedelta(seconds=5),
            heartbeat_at=at,
            finished_at=at,
        )

    def exchange(self, *, reachable=True, exchange_active=True, trading_active=True) -> None:
        exchange_status_record(
            reachable=reachable,
            exchange_active=exchange_active,
            trading_active=trading_active,
            mode="paper",
        )

    def all_well(self) -> None:
        self.beat()
        self.cycle()
        self.exchange()

    def public(self):
        return self.client.get("/health/")

    def detail(self, accept: str = "application/json", **extra):
        return self.client.get(
            "/health/detail/", HTTP_ACCEPT=accept, HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **extra
        )

    def messages(self) -> str:
        return " ".join(self.detail().json().values())


class PublicHealthTests(HealthTestCase):
    def test_it_says_ok_and_nothing_more_when_everything_is_well(self):
        self.all_well()
        response = self.public()
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"status": "ok"})
        self.assertIn("no-cache", response["Cache-Control"])

    def test_it_says_unhealthy_with_503_and_no_reason(self):
        response = self.public()  # no worker has ever run
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json(), {"status": "unhealthy"})
        for word in ("worker", "Heartbeat", "Database"):
            self.assertNotIn(word, response.content.decode())

    def test_it_ignores_the_accept_header(self):
        self.all_well()
        for accept in ("text/html", "text/plain", "application/json"):
            response = self.client.get("/health/", HTTP_ACCEPT=accept)
            self.assertEqual(response.json(), {"status": "ok"})

    def test_warnings_do_not_make_it_unhealthy(self):
        self.beat()
        self.cycle()  # no exchange status recorded: a warning
        TradingState.objects.update_or_create(
            pk=1, defaults={"state": TradingState.State.REDUCE_ONLY, "reason": "drawdown"}
        )
        self.assertEqual(self.public().status_code, 200)
        response = self.detail()
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertIn("Warning", body["ExchangeReachable()"])
        self.assertIn("drawdown", body["TradingStateCheck()"])

    @override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    )
    def test_a_broken_cache_is_only_a_warning(self):
        self.all_well()
        self.assertEqual(self.public().status_code, 200)
        body = self.detail().json()
        cache_message = [v for k, v in body.items() if k.startswith("CacheWarnOnly")][0]
        self.assertTrue(cache_message.startswith("Warning"), cache_message)


class DetailAccessTests(HealthTestCase):
    def test_anonymous_callers_are_refused(self):
        self.all_well()
        response = self.client.get("/health/detail/", HTTP_ACCEPT="application/json")
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("Heartbeat", response.content.decode())

    def test_a_wrong_token_is_refused(self):
        for header in ("Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
            response = self.client.get("/health/detail/", HTTP_AUTHORIZATION=header)
            self.assertEqual(response.status_code, 403, header)
        self.assertEqual(self.client.get("/health/detail/?token=nope").status_code, 403)

    def test_the_token_works_as_bearer_header_or_query_parameter(self):
        self.all_well()
        self.assertEqual(self.detail().status_code, 200)
        response = self.client.get(f"/health/detail/?token={TOKEN}&format=json")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(response.json()), 7)

    @override_settings(HEALTH_TOKEN=None)
    def test_without_a_configured_token_no_token_opens_it(self):
        for url in ("/health/detail/?token=", "/health/detail/?token=None"):
            self.assertEqual(self.client.get(url).status_code, 403)
        self.assertEqual(
            self.client.get("/health/detail/", HTTP_AUTHORIZATION="Bearer ").status_code, 403
        )

    def test_staff_sessions_see_the_html_page(self):
        self.all_well()
        staff = User.objects.create_user("ops", password="x-pass-1234567", is_staff=True)
        self.client.force_login(staff)
        response = self.client.get("/health/detail/", HTTP_ACCEPT="text/html")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "WorkerHeartbeat")

    def test_a_non_staff_session_is_refused(self):
        user = User.objects.create_user("viewer", password="x-pass-1234567")
        self.client.force_login(user)
        self.assertEqual(self.client.get("/health/detail/").status_code, 403)

    @override_settings(OTP_REQUIRED=True)
    def test_with_two_factor_on_an_unverified_staff_session_is_refused(self):
        staff = User.objects.create_user("ops", password="x-pass-1234567", is_staff=True)
        self.client.force_login(staff)
        self.assertEqual(self.client.get("/health/detail/").status_code, 403)
        self.all_well()
        self.assertEqual(self.detail().status_code, 200)  # the token still works


class CheckTests(HealthTestCase):
    def test_it_is_healthy_with_a_fresh_heartbeat_cycle_and_exchange(self):
        self.all_well()
        response = self.detail()
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertTrue(all(value == "OK" for value in body.values()), body)
        self.assertEqual(
            {key.split("(")[0] for key in body},
            {
                "Database",
                "CacheWarnOnly",
                "WorkerHeartbeat",
                "JobRunsAlive",
                "ReconcileFresh",
                "ExchangeReachable",
                "TradingStateCheck",
            },
        )

    def test_it_serves_text(self):
        self.all_well()
        response = self.detail(accept="text/plain")
        self.assertEqual(response.status_code, 200)
        self.assertIn("WorkerHeartbeat(): OK", response.content.decode())

    def test_it_is_unhealthy_without_any_worker_heartbeat(self):
        response = self.detail()
        self.assertEqual(response.status_code, 503)
        self.assertIn("worker", " ".join(response.json().values()))

    @override_settings(WORKER_HEARTBEAT_MAX_AGE_SECONDS=60)
    def test_it_is_unhealthy_with_a_stale_heartbeat(self):
        self.beat(age_seconds=600)
        self.cycle(age_seconds=600)
        response = self.detail()
        self.assertEqual(response.status_code, 503)
        self.assertIn("last worker heartbeat", response.json()["WorkerHeartbeat()"])
        self.assertEqual(self.public().status_code, 503)

    def test_it_is_unhealthy_when_trading_is_halted_and_says_why(self):
        self.all_well()
        TradingState.objects.update_or_create(
            pk=1, defaults={"state": TradingState.State.HALTED, "reason": "position mismatch"}
        )
        response = self.detail()
        self.assertEqual(response.status_code, 503)
        self.assertIn("position mismatch", " ".join(response.json().values()))
        self.assertEqual(self.public().json(), {"status": "unhealthy"})

    def test_reconcile_is_stale_without_any_successful_cycle(self):
        self.beat()
        self.exchange()
        self.cycle(status=JobRun.Status.FAILED)
        self.cycle(mode="live")  # another mode's cycle does not count
        self.assertIn("no successful paper trading cycle", self.messages())
        self.assertEqual(self.public().status_code, 503)

    @override_settings(RECONCILE_MAX_AGE_SECONDS=600)
    def test_reconcile_is_stale_when_the_last_good_cycle_is_old(self):
        self.beat()
        self.exchange()
        self.cycle(age_seconds=900)
        self.cycle(status=JobRun.Status.FAILED)
        self.assertIn("last successful reconcile 900s ago", self.messages())
        self.assertEqual(self.public().status_code, 503)

    @override_settings(TRADING_MODE="replay")
    def test_replay_needs_neither_reconcile_nor_exchange_status(self):
        self.beat()
        body = self.detail().json()
        self.assertEqual(body["ReconcileFresh()"], "OK")
        self.assertEqual(body["ExchangeReachable()"], "OK")
        self.assertEqual(self.public().status_code, 200)

    def test_an_unreachable_exchange_is_unhealthy(self):
        self.beat()
        self.cycle()
        self.exchange(reachable=False)
        self.assertIn("exchange unreachable", self.messages())
        self.assertEqual(self.public().status_code, 503)

    def test_a_closed_exchange_is_a_warning(self):
        self.beat()
        self.cycle()
        self.exchange(trading_active=False)
        self.assertIn("trading is paused", self.detail().json()["ExchangeReachable()"])
        self.assertEqual(self.public().status_code, 200)

    @override_settings(EXCHANGE_STATUS_MAX_AGE_SECONDS=60)
    def test_an_old_exchange_status_is_unknown(self):
        self.beat()
        self.cycle()
        self.exchange(reachable=False)
        JobRun.objects.filter(job=EXCHANGE_STATUS_JOB).update(
            heartbeat_at=timezone.now() - timedelta(minutes=5)
        )
        message = self.detail().json()["ExchangeReachable()"]
        self.assertTrue(message.startswith("Warning: exchange status unknown"), message)


class ExchangeProbeTests(TestCase):
    class Exchange:
        def __init__(self, result):
            self.result = result

        def status(self):
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    def test_it_keeps_one_row_up_to_date(self):
        self.assertTrue(exchange_probe(self.Exchange(ExchangeStatus(True, True)), "paper"))
        self.assertTrue(exchange_probe(self.Exchange(ExchangeStatus(True, False)), "paper"))
        rows = JobRun.objects.filter(job=EXCHANGE_STATUS_JOB)
        self.assertEqual(rows.count(), 1)
        self.assertEqual(rows.get().counts, {"exchange_active": 1, "trading_active": 0})

    def test_a_failure_is_recorded_without_its_message(self):
        secret = "https://user:hunter2-very-secret@example.invalid"
        self.assertFalse(exchange_probe(self.Exchange(ConnectionError(secret)), "live"))
        row = JobRun.objects.get(job=EXCHANGE_STATUS_JOB)
        self.assertEqual(row.status, JobRun.Status.FAILED)
        self.assertNotIn("hunter2", f"{row.summary} {row.error} {row.counts}")


class SecretTests(HealthTestCase):
    @override_settings(
        LLM_API_KEY="sk-test-secret-llm-key-123456",
        KALSHI_API_KEY_ID="key-id-abcdef-0001",
        DATABASE_URL="postgres://desk:db-password-secret-77@db/desk",
    )
    def test_it_never_shows_a_secret(self):
        self.all_well()
        TradingState.objects.update_or_create(
            pk=1, defaults={"state": TradingState.State.HALTED, "reason": "manual"}
        )
        secrets = (
            "sk-test-secret-llm-key-123456",
            "key-id-abcdef-0001",
            "db-password-secret-77",
            TOKEN,
            "SECRET_KEY",
            "test-secret-key-not-for-production",
        )
        bodies = [self.public().content.decode()]
        for accept in ("application/json", "text/html", "text/plain"):
            bodies.append(self.detail(accept=accept).content.decode())
        bodies.append(self.client.get(f"/health/detail/?token={TOKEN}").content.decode())
        for body in bodies:
            for secret in secrets:
                self.assertNotIn(secret, body)


class LivenessTests(TestCase):
    def test_liveness_needs_no_database(self):
        with self.assertNumQueries(0):
            response = self.client.get("/health/live/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, b"ok\n")

    @override_settings(ALLOWED_HOSTS=["trader.example.com"], SECURE_SSL_REDIRECT=True, DEBUG=False)
    def test_liveness_answers_the_container_probe_over_plain_http_on_any_host(self):
        response = self.client.get("/health/live/", HTTP_HOST="127.0.0.1:8000")
        self.assertEqual(response.status_code, 200)
        # The rest of the site still validates the host and redirects to https.
        self.assertEqual(self.client.get("/health/", HTTP_HOST="127.0.0.1:8000").status_code, 400)
        self.assertEqual(
            self.client.get("/health/", HTTP_HOST="trader.example.com").status_code, 301
        )
