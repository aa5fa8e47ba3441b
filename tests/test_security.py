"""Login throttling, two-factor, the client address behind a proxy, JSON logs and error pages:
none of them lets a guess through or a secret out."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, SimpleTestCase, TestCase, override_settings
from django.urls import include, path
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from config.logging import JsonFormatter, RedactSecretsFilter, _secret_values_reset
from config.security import client_ip
from trading.models import TradingState

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("exploded while holding sk-live-llm-key-abcdef123456")


# ROOT_URLCONF for the error-page tests: the site plus one view that fails.
urlpatterns = [path("boom/", boom), path("", include("config.urls"))]


# --- The client address -------------------------------------------------------------------------


class ClientIpTests(SimpleTestCase):
    def request(self, remote: str, forwarded: str | None = None) -> HttpRequest:
        extra = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            extra["HTTP_X_FORWARDED_FOR"] = forwarded
        return RequestFactory().get("/", **extra)

    @override_settings(TRUSTED_PROXIES=[])
    def test_without_trusted_proxies_the_header_is_ignored(self):
        self.assertEqual(client_ip(self.request("198.51.100.7", "203.0.113.9")), "198.51.100.7")

    @override_settings(TRUSTED_PROXIES=["127.0.0.1"])
    def test_a_trusted_proxy_is_believed(self):
        self.assertEqual(client_ip(self.request("127.0.0.1", "203.0.113.9")), "203.0.113.9")

    @override_settings(TRUSTED_PROXIES=["127.0.0.1", "10.0.0.0/8"])
    def test_the_right_most_untrusted_hop_wins_over_a_forged_prefix(self):
        request = self.request("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3")
        self.assertEqual(client_ip(request), "203.0.113.9")

    @override_settings(TRUSTED_PROXIES=["127.0.0.1"])
    def test_an_untrusted_peer_cannot_pick_its_address(self):
        self.assertEqual(client_ip(self.request("198.51.100.7", "127.0.0.1")), "198.51.100.7")

    @override_settings(TRUSTED_PROXIES=["127.0.0.1"])
    def test_garbage_in_the_header_falls_back_to_the_peer(self):
        self.assertEqual(client_ip(self.request("127.0.0.1", "not-an-ip")), "127.0.0.1")
        self.assertEqual(client_ip(self.request("127.0.0.1", "")), "127.0.0.1")


# --- Login throttling ---------------------------------------------------------------------------


@override_settings(AXES_FAILURE_LIMIT=3, TRUSTED_PROXIES=[])
class LockoutTests(TestCase):
    def setUp(self):
        self.user = User.objects.create_user(
            "ops", password=PASSWORD, is_staff=True, is_superuser=True
        )

    def dashboard_login(self, password: str, username: str = "ops", **extra):
        return self.client.post(
            "/accounts/login/", {"username": username, "password": password}, **extra
        )

    def admin_login(self, password: str, username: str = "ops", **extra):
        return self.client.post(
            "/admin/login/?next=/admin/", {"username": username, "password": password}, **extra
        )

    def logged_in(self) -> bool:
        return "_auth_user_id" in self.client.session

    def test_the_dashboard_login_locks_after_the_limit_even_for_the_right_password(self):
        for _ in range(2):
            self.assertEqual(self.dashboard_login("wrong").status_code, 200)
        self.assertEqual(self.dashboard_login("wrong").status_code, 429)
        response = self.dashboard_login(PASSWORD)
        self.assertEqual(response.status_code, 429)
        self.assertIn("locked", response.content.decode().lower())
        self.assertFalse(self.logged_in())

    def test_the_admin_login_locks_too(self):
        for _ in range(2):
            self.assertEqual(self.admin_login("wrong").status_code, 200)
        self.assertEqual(self.admin_login("wrong").status_code, 429)
        self.assertEqual(self.admin_login(PASSWORD).status_code, 429)
        self.assertFalse(self.logged_in())

    def test_both_logins_share_one_count(self):
        self.dashboard_login("wrong")
        self.admin_login("wrong")
        self.assertEqual(self.dashboard_login("wrong").status_code, 429)
        self.assertEqual(self.admin_login(PASSWORD).status_code, 429)

    def test_a_spoofed_forwarded_for_does_not_reset_the_count(self):
        for attempt in range(3):
            self.dashboard_login("wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}")
        response = self.dashboard_login(PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.1")
        self.assertEqual(response.status_code, 429)
        self.assertFalse(self.logged_in())

    def test_the_lockout_is_per_username_and_address(self):
        for _ in range(3):
            self.dashboard_login("wrong")
        User.objects.create_user("other", password=PASSWORD)
        self.assertEqual(self.dashboard_login(PASSWORD, username="other").status_code, 302)
        self.client.logout()
        response = self.dashboard_login(PASSWORD, REMOTE_ADDR="198.51.100.20")
        self.assertEqual(response.status_code, 302)

    def test_a_successful_login_resets_the_count(self):
        self.dashboard_login("wrong")
        self.dashboard_login("wrong")
        self.assertEqual(self.dashboard_login(PASSWORD).status_code, 302)
        self.client.logout()
        self.dashboard_login("wrong")
        self.dashboard_login("wrong")
        self.assertEqual(self.dashboard_login(PASSWORD).status_code, 302)

    def test_client_login_without_a_request_still_works_in_tests_and_shells(self):
        self.assertTrue(self.client.login(username="ops", password=PASSWORD))
        self.assertFalse(self.client.login(username="ops", password="wrong"))


# --- Two-factor ---------------------------------------------------------------------------------


def totp_token(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


@override_settings(OTP_REQUIRED=True)
class TwoFactorTests(TestCase):
    def setUp(self):
        self.user = User.objects.create_user(
            "ops", password=PASSWORD, is_staff=True, is_superuser=True
        )

    def device(self) -> TOTPDevice:
        return TOTPDevice.objects.create(user=self.user, name="phone", confirmed=True)

    def logged_in(self) -> bool:
        return "_auth_user_id" in self.client.session

    def test_admin_refuses_a_staff_session_without_a_verified_device(self):
        self.client.force_login(self.user)
        response = self.client.get("/admin/")
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/admin/login/"))

    def test_admin_login_asks_for_a_token(self):
        response = self.client.get("/admin/login/")
        self.assertContains(response, 'name="otp_token"')

    def test_admin_login_with_only_the_password_is_refused(self):
        self.device()
        response = self.client.post(
            "/admin/login/?next=/admin/", {"username": "ops", "password": PASSWORD}
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(self.logged_in())

    def test_admin_login_refuses_a_user_without_any_device(self):
        response = self.client.post(
            "/admin/login/?next=/admin/",
            {"username": "ops", "password": PASSWORD, "otp_token": "123456"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(self.logged_in())

    def test_admin_login_with_a_wrong_token_is_refused(self):
        device = self.device()
        wrong = f"{(int(totp_token(device)) + 1) % 10**6:06d}"
        response = self.client.post(
            "/admin/login/?next=/admin/",
            {"username": "ops", "password": PASSWORD, "otp_token": wrong},
        )
        self.assertEqual(response.status_code, 200)
        self.assertFalse(self.logged_in())

    def test_admin_login_with_password_and_token_gets_in(self):
        device = self.device()
        response = self.client.post(
            "/admin/login/?next=/admin/",
            {"username": "ops", "password": PASSWORD, "otp_token": totp_token(device)},
        )
        self.assertEqual(response.status_code, 302, response.content[:500])
        self.assertEqual(self.client.get("/admin/").status_code, 200)

    def test_dashboard_login_needs_the_token(self):
        device = self.device()
        response = self.client.post("/accounts/login/", {"username": "ops", "password": PASSWORD})
        self.assertEqual(response.status_code, 200)
        self.assertFalse(self.logged_in())
        response = self.client.post(
            "/accounts/login/",
            {"username": "ops", "password": PASSWORD, "otp_token": totp_token(device)},
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(self.client.get("/").status_code, 200)

    def test_an_unverified_dashboard_session_is_logged_out(self):
        self.client.force_login(self.user)
        response = self.client.get("/")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/accounts/login/?next=/")
        self.assertFalse(self.logged_in())

    @override_settings(OTP_REQUIRED=False)
    def test_with_two_factor_off_a_password_is_enough(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get("/admin/").status_code, 200)
        self.assertEqual(self.client.get("/").status_code, 200)
        self.assertNotContains(self.client.get("/accounts/login/"), "otp_token")


# --- Logs ---------------------------------------------------------------------------------------

SECRET_LLM_KEY = "sk-live-llm-key-abcdef123456"
SECRET_DB_PASSWORD = "db-pass-Zq9-very-secret"


class JsonLogTests(SimpleTestCase):
    def setUp(self):
        _secret_values_reset()
        self.addCleanup(_secret_values_reset)
        self.stream = StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactSecretsFilter())
        self.logger = logging.getLogger("tests.json")
        self.logger.handlers = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.addCleanup(setattr, self.logger, "handlers", [])

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def test_each_record_is_one_json_object(self):
        self.logger.info("cycle %s done", 42, extra={"job": "trading_cycle", "orders": 3})
        (entry,) = self.lines()
        self.assertEqual(entry["message"], "cycle 42 done")
        self.assertEqual(entry["level"], "INFO")
        self.assertEqual(entry["logger"], "tests.json")
        self.assertEqual((entry["job"], entry["orders"]), ("trading_cycle", 3))
        self.assertRegex(entry["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")

    @override_settings(
        LLM_API_KEY=SECRET_LLM_KEY, DATABASE_URL=f"postgres://desk:{SECRET_DB_PASSWORD}@db/desk"
    )
    def test_no_secret_survives_in_message_traceback_or_extra(self):
        try:
            raise ValueError(f"auth failed with {SECRET_LLM_KEY}")
        except ValueError:
            self.logger.exception(
                "calling %s with Bearer abcdefghijklmnop1234",
                f"postgres://desk:{SECRET_DB_PASSWORD}@db/desk",
                extra={"header": f"Authorization: Bearer {SECRET_LLM_KEY}"},
            )
        self.logger.warning(
            "key file:\n-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----"
        )
        raw = self.stream.getvalue()
        entries = self.lines()
        self.assertEqual(len(entries), 2)
        self.assertIn("exception", entries[0])
        for secret in (SECRET_LLM_KEY, SECRET_DB_PASSWORD, "abcdefghijklmnop1234", "MIIEv"):
            self.assertNotIn(secret, raw)
        self.assertIn("[redacted]", entries[0]["message"])

    def test_the_real_logging_configuration_writes_json_without_secrets(self):
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SECRET_KEY_FILE", "LLM_API_KEY_FILE", "DATABASE_PASSWORD_FILE")
        }
        environment.update(
            LOG_FORMAT="json",
            LLM_API_KEY=SECRET_LLM_KEY,
            # Settings only: nothing connects to this database.
            DATABASE_URL="postgres://desk@127.0.0.1:9/desk",
            DATABASE_PASSWORD=SECRET_DB_PASSWORD,
            SECRET_KEY="json-log-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        )
        code = (
            "import django, logging; django.setup(); from django.conf import settings;"
            "log = logging.getLogger('trading.test');"
            "log.error('keys: %s %s %s', settings.LLM_API_KEY, settings.SECRET_KEY,"
            " settings.DATABASES['default'].get('PASSWORD'));"
            "log.warning('plain line')"
        )
        environment["DJANGO_SETTINGS_MODULE"] = "config.settings"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
        self.assertEqual([e["message"] for e in entries][-1], "plain line")
        self.assertEqual(entries[0]["logger"], "trading.test")
        for secret in (SECRET_LLM_KEY, SECRET_DB_PASSWORD, environment["SECRET_KEY"]):
            self.assertNotIn(secret, result.stderr)


# --- Error pages ----------------------------------------------------------------------------------


@override_settings(
    ROOT_URLCONF="tests.test_security",
    LLM_API_KEY=SECRET_LLM_KEY,
    DATABASE_URL=f"postgres://desk:{SECRET_DB_PASSWORD}@db/desk",
    HEALTH_TOKEN="health-token-secret-0123456789abcdef",
    REDIS_PASSWORD="redis-secret-password-42",
)
class ErrorPageTests(TestCase):
    def setUp(self):
        self.client.raise_request_exception = False

    def test_the_production_500_page_shows_nothing(self):
        with self.assertLogs("django.request", level="ERROR"):
            response = self.client.get("/boom/")
        self.assertEqual(response.status_code, 500)
        self.assertNotIn(SECRET_LLM_KEY, response.content.decode())
        self.assertNotIn("RuntimeError", response.content.decode())

    @override_settings(DEBUG=True)
    def test_the_debug_page_hides_secret_settings(self):
        with self.assertLogs("django.request", level="ERROR"):
            response = self.client.get("/boom/", HTTP_ACCEPT="text/html")
        body = response.content.decode()
        self.assertEqual(response.status_code, 500)
        self.assertIn("DATABASE_URL", body)  # listed, with its value hidden
        for secret in (
            SECRET_DB_PASSWORD,
            "health-token-secret-0123456789abcdef",
            "redis-secret-password-42",
            "test-secret-key-not-for-production",
        ):
            self.assertNotIn(secret, body)


# --- Settings that guard the rest -----------------------------------------------------------


def import_settings(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import config.settings as s; {code}"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )


def test_passwords_can_come_from_files_apart_from_the_urls(tmp_path):
    (tmp_path / "db").write_text("db-file-password\n")
    (tmp_path / "redis").write_text("redis-file-password\n")
    result = import_settings(
        "print(s.DATABASES['default']['PASSWORD'], s.CACHES['default']['OPTIONS']['PASSWORD'])",
        DATABASE_URL="postgres://desk@postgres:5432/desk",
        DATABASE_PASSWORD_FILE=str(tmp_path / "db"),
        REDIS_URL="redis://redis:6379/0",
        REDIS_PASSWORD_FILE=str(tmp_path / "redis"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["db-file-password", "redis-file-password"]


def test_a_short_health_token_is_refused():
    result = import_settings("", HEALTH_TOKEN="short")
    assert result.returncode != 0
    assert "HEALTH_TOKEN must be at least 24 characters" in result.stderr


def test_csrf_origins_need_a_scheme_under_https():
    result = import_settings("", HTTPS="1", CSRF_TRUSTED_ORIGINS="trader.example.com")
    assert result.returncode != 0
    assert "CSRF_TRUSTED_ORIGINS entries need a scheme" in result.stderr


def test_https_turns_on_the_secure_settings():
    result = import_settings(
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_HSTS_SECONDS > 0, s.SECURE_PROXY_SSL_HEADER)",
        HTTPS="1",
        TRUST_X_FORWARDED_PROTO="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True True True ('HTTP_X_FORWARDED_PROTO', 'https')"
    plain = import_settings(
        "print(hasattr(s, 'SECURE_PROXY_SSL_HEADER'), s.SECURE_SSL_REDIRECT)",
        HTTPS="0",
        TRUST_X_FORWARDED_PROTO="0",
    )
    assert plain.stdout.strip() == "False False"


# --- Password reset: off without mail, under the lockout with it --------------------------------

RESET_URLS = (
    "/accounts/password_reset/",
    "/accounts/password_reset/done/",
    "/accounts/reset/MQ/set-password/",
    "/accounts/reset/done/",
)


def test_password_reset_is_on_only_when_mail_is_configured():
    show = "print(s.PASSWORD_RESET_ENABLED, s.EMAIL_BACKEND.rsplit('.', 2)[-2])"
    cases = [
        ({}, "False dummy"),
        ({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, "False console"),
        ({"EMAIL_HOST": "smtp.example.com"}, "True smtp"),
        ({"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}, "True filebased"),
    ]
    for env, expected in cases:
        result = import_settings(show, **{"EMAIL_HOST": "", "EMAIL_BACKEND": "", **env})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected, env


@override_settings(PASSWORD_RESET_ENABLED=False)
class PasswordResetOffTests(TestCase):
    def setUp(self):
        User.objects.create_user("ops", email="ops@example.com", password=PASSWORD)

    def test_every_reset_page_is_404_and_nothing_is_sent_or_logged(self):
        from django.core import mail

        with self.assertNoLogs(level="ERROR"):
            for url in RESET_URLS:
                with self.subTest(url):
                    self.assertEqual(self.client.get(url).status_code, 404)
                    response = self.client.post(url, {"email": "ops@example.com"})
                    self.assertEqual(response.status_code, 404)
        self.assertEqual(mail.outbox, [])

    def test_the_login_page_offers_no_reset_link(self):
        page = self.client.get("/accounts/login/")
        self.assertNotContains(page, "/accounts/password_reset/")
        with self.settings(PASSWORD_RESET_ENABLED=True):
            page = self.client.get("/accounts/login/")
            self.assertContains(page, 'href="/accounts/password_reset/"')


@override_settings(PASSWORD_RESET_ENABLED=True, AXES_FAILURE_LIMIT=3)
class PasswordResetOnTests(TestCase):
    def setUp(self):
        self.user = User.objects.create_user("ops", email="ops@example.com", password=PASSWORD)

    def reset(self, email: str = "ops@example.com", ip: str = "203.0.113.9"):
        return self.client.post("/accounts/password_reset/", {"email": email}, REMOTE_ADDR=ip)

    def test_a_reset_mails_a_working_link(self):
        from django.core import mail

        response = self.reset()
        self.assertRedirects(response, "/accounts/password_reset/done/")
        self.assertEqual(len(mail.outbox), 1)
        self.assertIn("/accounts/reset/", mail.outbox[0].body)

    def test_resets_are_throttled_like_logins(self):
        from django.core import mail

        for _ in range(2):
            self.assertEqual(self.reset().status_code, 302)
        self.assertEqual(self.reset().status_code, 429)  # the third reaches the limit
        self.assertEqual(self.reset().status_code, 429)
        self.assertEqual(len(mail.outbox), 2)
        # Another client is not affected (the lockout is per address and client).
        self.assertEqual(self.reset(ip="198.51.100.7").status_code, 302)

    def test_a_client_locked_out_of_the_login_cannot_ask_for_resets(self):
        from django.core import mail

        for _ in range(3):
            self.client.post(
                "/accounts/login/",
                {"username": "ops@example.com", "password": "wrong"},
                REMOTE_ADDR="203.0.113.9",
            )
        self.assertEqual(self.reset().status_code, 429)
        self.assertEqual(mail.outbox, [])


# --- Headers: Content-Security-Policy and Permissions-Policy -----------------------------------


class HeaderTests(TestCase):
    def test_every_kind_of_response_carries_both_policies(self):
        user = User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
        self.client.force_login(user)
        urls = ("/", "/settings/", "/accounts/login/", "/admin/", "/health/", "/health/live/")
        for url in (*urls, "/nope/", "/accounts/password_reset/"):
            with self.subTest(url):
                response = self.client.get(url)
                csp = response.headers.get("Content-Security-Policy", "")
                directives = dict(
                    (part.split(" ", 1) + [""])[:2] for part in csp.split("; ") if part
                )
                self.assertEqual(directives.get("default-src"), "'self'")
                self.assertEqual(directives.get("script-src"), "'self'")
                self.assertEqual(directives.get("style-src"), "'self'")
                self.assertEqual(directives.get("frame-ancestors"), "'none'")
                self.assertNotIn("unsafe", csp)
                policy = response.headers.get("Permissions-Policy", "")
                for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
                    self.assertIn(feature, policy)


class _InlineCode(HTMLParser):
    """Collects what a Content-Security-Policy without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script" and not names.get("src"):
            # json_script data blocks are never executed: allowed.
            if names.get("type") != "application/json":
                self.found.append("inline <script>")
        for name, value in attrs:
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.found.append(f"{name} handler on <{tag}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"javascript: URL on <{tag}>")


@override_settings(TRADING_MODE="paper")
class InlineCodeTests(TestCase):
    """Every dashboard page runs under the policy: no inline script, style or handler."""

    def test_no_page_has_inline_script_style_or_event_handler(self):
        from django.core.cache import cache

        from dashboard.cache import forget_generation
        from tests.dashboard.test_pages import page_urls
        from tests.dashboard.world import World, make_operator

        world = World().grow(3)
        pages = {**page_urls(world), "settings-armed": "/settings/", "403": "/"}
        for name, url in pages.items():
            cache.clear()
            forget_generation()
            self.client.logout()
            if name == "403":
                self.client.force_login(make_operator("no-role", roles=()))
            else:
                self.client.force_login(make_operator(f"desk-{name}"))
            if name == "settings-armed":
                TradingState.objects.filter(pk=1).update(live_armed=True)
            with self.subTest(name):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 403 if name == "403" else 200)
                self.assertIn("script-src 'self'", response["Content-Security-Policy"])
                parser = _InlineCode()
                parser.feed(response.content.decode())
                self.assertEqual(parser.found, [], url)
        self.client.logout()
        for url in ("/accounts/login/", "/accounts/password_change/"):
            with self.subTest(url):
                parser = _InlineCode()
                parser.feed(self.client.get(url, follow=True).content.decode())
                self.assertEqual(parser.found, [], url)
