"""Who may do what: every URL of the project against every role, GET and every POST.

Roles are Django groups made by a migration (``trading.roles``): a viewer reads every dashboard
page; an operator halts, resumes, pauses and flattens; a risk manager changes the limits; only a
superuser or a holder of ``trading.arm_live_trading`` arms live trading, with the password typed
again. A logged-in user without a role gets 403; an anonymous visitor the login page.
"""

from __future__ import annotations

import re
from decimal import Decimal as D
from io import StringIO

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client, TestCase, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from dashboard.cache import forget_generation
from markets.models import Market
from tests.dashboard.world import PASSWORD, World, make_operator
from trading.audit import ARM_CONFIRMATION
from trading.models import (
    Order,
    RiskSettings,
    RiskSettingsChange,
    TradingState,
    TradingStateChange,
)
from trading.roles import ARM, CHANGE_RISK, OPERATE, ROLES, VIEW

User = get_user_model()


@override_settings(TRADING_MODE="paper")
class NoRoleTests(TestCase):
    """A logged-in account with no staff flag and no permission can change nothing."""

    @classmethod
    def setUpTestData(cls):
        cls.world = World()
        cls.user = User.objects.create_user("nobody", password=PASSWORD)

    def setUp(self):
        cache.clear()
        forget_generation()
        self.client.force_login(self.user)

    def test_a_user_without_a_role_cannot_halt_arm_change_limits_or_flatten(self):
        position = self.world.focus_position
        Order.objects.filter(market=position.market).update(status="filled")
        limits = {name: getattr(RiskSettings(), name) for name in RiskSettings.AUDITED_FIELDS}
        posts = [
            ("dashboard:halt", {"reason": "I can stop your desk"}),
            ("dashboard:pause", {"reason": "and pause it"}),
            ("dashboard:arm", {"confirmation": ARM_CONFIRMATION, "password": PASSWORD}),
            ("dashboard:settings-risk", {**limits, "max_position_pct": D("1")}),
        ]
        for name, data in posts:
            with self.subTest(name):
                self.assertEqual(self.client.post(reverse(name), data).status_code, 403)
        flatten = reverse("dashboard:position-flatten", args=[position.pk])
        self.assertEqual(self.client.post(flatten).status_code, 403)

        state = TradingState.load()
        self.assertEqual((state.state, state.live_armed), ("active", False))
        self.assertFalse(RiskSettingsChange.objects.exists())
        self.assertFalse(Order.objects.filter(purpose__in=Order.CLOSING_PURPOSES).exists())

        TradingState.objects.filter(pk=1).update(state="halted", reason="on purpose")
        self.assertEqual(self.client.post(reverse("dashboard:resume")).status_code, 403)
        self.assertEqual(TradingState.load().state, "halted")

    def test_a_user_without_a_role_sees_no_page(self):
        for name in ("dashboard:index", "dashboard:positions", "dashboard:settings"):
            with self.subTest(name):
                response = self.client.get(reverse(name))
                self.assertEqual(response.status_code, 403)
                self.assertContains(response, "has no role", status_code=403)
                self.assertNotContains(response, 'href="/positions/"', status_code=403)


# --- The matrix -------------------------------------------------------------------------------

ANON, NO_ROLE, SUPER = "anonymous", "no-role", "superuser"
# Every role of trading.roles, plus the three kinds of visitor around them.
ROLE_NAMES = (ANON, NO_ROLE, *ROLES, SUPER)

# The POST actions of the dashboard and the permissions that allow each (any one of them).
ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": (OPERATE,),
    "resume": (OPERATE,),
    "halt": (OPERATE,),
    "position-flatten": (OPERATE,),
    "disarm": (OPERATE, ARM),
    "settings-risk": (CHANGE_RISK,),
    "arm": (ARM,),
}
# Stock auth pages (config/urls.py) anyone may open, and those for a logged-in user only.
PUBLIC_ACCOUNT_PAGES = {"login"}
LOGGED_IN_ACCOUNT_PAGES = {"password_change", "password_change_done"}
# Off unless mail is configured (PASSWORD_RESET_ENABLED): 404 for everyone.
PASSWORD_RESET_PAGES = {
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
}


def project_urls() -> list[tuple[str | None, str, URLPattern, str]]:
    """(namespace, name, pattern, route) of every URL pattern the project serves, walked
    from the root URLconf so that a URL added later is in the matrix without a line here."""

    def walk(patterns, prefix: str, namespace: str | None):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(
                    entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace
                )
            else:
                yield namespace, entry.name, entry, prefix + str(entry.pattern)

    return list(walk(get_resolver().url_patterns, "", None))


def build_url(route: str, kwargs: dict[str, object]) -> str:
    """The URL of a route (``path()`` syntax or a regex, named or not) with ``kwargs`` in it."""
    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(kwargs[m.group(1)]), route)
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(kwargs[m.group(1)]), url)
    return "/" + url.replace("^", "").replace("$", "")


def _model_of_admin_url(name: str):
    """The model an admin URL name (``app_model_change``) is about, or None."""
    for model in apps.get_models():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if name.startswith(prefix):
            return model
    return None


@override_settings(TRADING_MODE="paper", PASSWORD_RESET_ENABLED=False)
class PermissionMatrixTests(TestCase):
    """Each role x every URL (GET) and every POST action, with the status each must get."""

    @classmethod
    def setUpTestData(cls):
        cls.world = World()
        cls.users = {NO_ROLE: User.objects.create_user(NO_ROLE, password=PASSWORD)}
        for role in ROLES:
            cls.users[role] = make_operator(role, roles=(role,))
        cls.users[SUPER] = User.objects.create_superuser(SUPER, "boss@example.com", PASSWORD)
        TOTPDevice.objects.create(user=cls.users[SUPER], name="phone")  # its admin pages

    def setUp(self):
        cache.clear()
        forget_generation()

    def login_as(self, role: str) -> Client:
        client = Client()
        if role != ANON:
            client.force_login(self.users[role])
        return client

    def holds(self, role: str, perms: tuple[str, ...]) -> bool:
        return role != ANON and any(self.users[role].has_perm(p) for p in perms)

    def kwargs(self, namespace: str | None, name: str, pattern: URLPattern) -> dict[str, object]:
        """Path arguments for a pattern, from the rows of the test world."""
        world = self.world
        converters = set(pattern.pattern.converters) | set(pattern.pattern.regex.groupindex)
        values: dict[str, object] = {
            "ticker": world.focus_market.ticker,
            "pk": world.focus_position.pk
            if name.startswith("position")
            else world.focus_decision.pk,
            "uidb64": "MQ",
            "token": "set-password",
            "app_label": "trading",
            "content_type_id": ContentType.objects.get_for_model(Market).pk,
            "url": "no-such-page/",
            "id": self.users[NO_ROLE].pk,
        }
        if namespace == "admin":
            model = _model_of_admin_url(name)
            row = model._default_manager.order_by("pk").first() if model else None
            values["object_id"] = values["pk"] = row.pk if row is not None else 1
        if name == "view_on_site":
            values["object_id"] = world.focus_market.pk
        missing = set(converters) - set(values)
        self.assertFalse(missing, f"no test value for the path argument(s) {missing} of {name}")
        return {key: values[key] for key in converters}

    def expected_get(self, role: str, namespace: str | None, name: str) -> int | str:
        """The status a GET must get (or a word for a rule checked in ``check_get``)."""
        if namespace == "dashboard":
            if name in ACTIONS:
                if role == ANON:
                    return "login"
                return 405 if self.holds(role, ACTIONS[name]) else 403
            if role == ANON:
                return "login"
            return 200 if self.holds(role, (VIEW,)) else 403
        if namespace == "admin":
            if name == "login":
                return 200 if role != SUPER else 302  # a staff user is sent on to the index
            if name == "logout":  # POST only; anyone else is sent to the index (then login)
                return 405 if role == SUPER else "to-admin-index"
            return "admitted" if role == SUPER else "admin-login"
        if name in PUBLIC_ACCOUNT_PAGES:
            return 200
        if name in LOGGED_IN_ACCOUNT_PAGES:
            return "login" if role == ANON else 200
        if name in PASSWORD_RESET_PAGES:
            return 404
        if name == "logout":
            return 405  # POST only
        if name == "health":
            return "health"
        if name == "health-detail":
            return "admitted" if role == SUPER else 403
        if name == "health-live":
            return 200
        return f"no expectation for {namespace}:{name}"

    def check_get(self, response, expected: int | str, url: str) -> None:
        status = response.status_code
        if expected == "login":
            self.assertEqual(status, 302)
            self.assertTrue(response["Location"].startswith("/accounts/login/?next="))
        elif expected == "admin-login":
            self.assertEqual(status, 302)
            self.assertTrue(response["Location"].startswith("/admin/login/"), response["Location"])
        elif expected == "to-admin-index":
            self.assertEqual((status, response["Location"]), (302, "/admin/"))
        elif expected == "admitted":  # let in; the page's own rules decide the rest
            self.assertIn(status, (200, 302, 403, 404, 503))
            self.assertFalse(response.get("Location", "").startswith(("/admin/login/", "/acc")))
        elif expected == "health":  # public: healthy or not, the same for everyone
            self.assertIn(status, (200, 503))
        else:
            self.assertIsInstance(expected, int, expected)
            self.assertEqual(status, expected)

    def test_every_role_gets_the_right_answer_from_every_url(self):
        urls = project_urls()
        names = {(ns, name) for ns, name, _, _ in urls}
        self.assertIn(("dashboard", "halt"), names)
        self.assertGreater(len([n for n in names if n[0] == "admin"]), 50)
        for role in ROLE_NAMES:
            client = self.login_as(role)
            for namespace, name, pattern, route in urls:
                with self.subTest(role=role, route=route):
                    url = build_url(route, self.kwargs(namespace, name or "", pattern))
                    expected = self.expected_get(role, namespace, name)
                    self.check_get(client.get(url), expected, url)

    def test_every_role_gets_the_right_answer_from_every_post_action(self):
        dashboard = {name for ns, name, _, _ in project_urls() if ns == "dashboard"}
        self.assertEqual(dashboard & set(ACTIONS), set(ACTIONS))
        limits = {name: getattr(RiskSettings(), name) for name in RiskSettings.AUDITED_FIELDS}
        data = {
            "pause": {"reason": "matrix"},
            "resume": {},
            "halt": {"reason": "matrix"},
            "position-flatten": {},
            "disarm": {},
            "settings-risk": {**limits, "max_open_positions": 9},
            "arm": {"confirmation": ARM_CONFIRMATION, "password": PASSWORD},
        }
        position = self.world.focus_position
        Order.objects.filter(market=position.market).update(status="filled")
        for role in ROLE_NAMES:
            client = self.login_as(role)
            for name, perms in ACTIONS.items():
                args = [position.pk] if name == "position-flatten" else []
                url = reverse(f"dashboard:{name}", args=args)
                # Each action starts from the state it changes.
                TradingState.objects.filter(pk=1).update(
                    state="halted" if name == "resume" else "active",
                    reason="matrix",
                    live_armed=name == "disarm",
                )
                TradingState.load()
                Order.objects.filter(purpose__in=Order.CLOSING_PURPOSES).delete()
                RiskSettings.objects.all().delete()
                before = self.writes()
                with self.subTest(role=role, action=name):
                    response = client.post(url, data[name])
                    if role == ANON:
                        self.assertEqual(response.status_code, 302)
                        self.assertTrue(response["Location"].startswith("/accounts/login/"))
                        self.assertEqual(self.writes(), before)
                    elif self.holds(role, perms):
                        self.assertEqual(response.status_code, 302)
                        self.assertNotEqual(self.writes(), before, "the action did nothing")
                    else:
                        self.assertEqual(response.status_code, 403)
                        self.assertEqual(self.writes(), before)

    def test_every_role_gets_the_right_answer_from_the_account_posts(self):
        for role in ROLE_NAMES:
            client = self.login_as(role)
            with self.subTest(role=role, action="password_reset"):
                response = client.post(reverse("password_reset"), {"email": "boss@example.com"})
                self.assertEqual(response.status_code, 404)  # no mail configured
            with self.subTest(role=role, action="password_change"):
                response = client.post(reverse("password_change"), {})
                if role == ANON:
                    self.assertTrue(response["Location"].startswith("/accounts/login/"))
                else:
                    self.assertEqual(response.status_code, 200)  # the form, with its errors
            with self.subTest(role=role, action="logout"):
                response = client.post(reverse("logout"))
                self.assertEqual(
                    (response.status_code, response["Location"]), (302, "/accounts/login/")
                )
                self.assertEqual(client.get(reverse("dashboard:index")).status_code, 302)

    @staticmethod
    def writes() -> tuple[int, ...]:
        state = TradingState.load()
        return (
            TradingStateChange.objects.count(),
            RiskSettingsChange.objects.count(),
            Order.objects.filter(purpose__in=Order.CLOSING_PURPOSES).count(),
            int(state.live_armed),
        )


# --- Arming asks again who you are ------------------------------------------------------------


@override_settings(TRADING_MODE="paper", AXES_FAILURE_LIMIT=3)
class ArmReauthenticationTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = make_operator("trader", roles=("live-trader",))

    def setUp(self):
        cache.clear()
        forget_generation()
        self.client.force_login(self.user)

    def arm(self, **data):
        return self.client.post(
            reverse("dashboard:arm"),
            {"confirmation": ARM_CONFIRMATION, **data},
            REMOTE_ADDR="203.0.113.5",
        )

    def test_arming_needs_the_password_again(self):
        for data in ({}, {"password": ""}, {"password": "not-my-password"}):
            with self.subTest(data=data):
                response = self.arm(**data)
                self.assertRedirects(response, reverse("dashboard:settings"))
                self.assertFalse(TradingState.load().live_armed)
        self.assertRedirects(self.arm(password=PASSWORD), reverse("dashboard:settings"))
        state = TradingState.load()
        self.assertEqual((state.live_armed, state.armed_by), (True, self.user))

    def test_wrong_passwords_at_the_arm_form_hit_the_login_lockout(self):
        for _ in range(2):
            self.assertEqual(self.arm(password="guess").status_code, 302)
        self.assertEqual(self.arm(password="guess").status_code, 429)
        # Locked out: even the right password does not arm now.
        self.assertEqual(self.arm(password=PASSWORD).status_code, 429)
        self.assertFalse(TradingState.load().live_armed)

    def test_the_settings_page_asks_for_the_password(self):
        page = self.client.get(reverse("dashboard:settings"))
        self.assertContains(page, 'name="password"')
        self.assertNotContains(page, 'name="otp_token"')

    @override_settings(OTP_REQUIRED=True)
    def test_with_two_factor_on_arming_needs_a_fresh_authenticator_code(self):
        device = TOTPDevice.objects.create(user=self.user, name="phone", confirmed=True)
        session = self.client.session
        session["otp_device_id"] = device.persistent_id  # a verified session
        session.save()
        page = self.client.get(reverse("dashboard:settings"))
        self.assertContains(page, 'name="otp_token"')
        self.assertNotContains(page, 'name="password"')

        self.arm(password=PASSWORD)  # the password alone is not enough
        self.assertFalse(TradingState.load().live_armed)
        self.arm(otp_token="000000" if _code(device) != "000000" else "111111")
        self.assertFalse(TradingState.load().live_armed)
        device.refresh_from_db()
        self.assertEqual(device.throttling_failure_count, 1)  # django-otp's own throttle
        device.throttle_reset()  # (it refuses any code for a second after a wrong one)
        self.arm(otp_token=_code(device))
        self.assertTrue(TradingState.load().live_armed)


def _code(device: TOTPDevice) -> str:
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


class RoleHelpersTests(TestCase):
    def test_the_migration_made_a_group_per_role_with_its_permissions(self):
        from django.contrib.auth.models import Group

        for role, (group_name, perms) in ROLES.items():
            with self.subTest(role):
                group = Group.objects.get(name=group_name)
                held = {
                    f"{p.content_type.app_label}.{p.codename}"
                    for p in group.permissions.select_related("content_type")
                }
                self.assertEqual(held, set(perms))

    def test_staff_without_a_role_sees_no_dashboard_but_a_superuser_sees_all(self):
        World()
        staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
        self.client.force_login(staff)
        self.assertEqual(self.client.get(reverse("dashboard:index")).status_code, 403)
        boss = User.objects.create_superuser("boss", "b@example.com", PASSWORD)
        self.client.force_login(boss)
        self.assertEqual(self.client.get(reverse("dashboard:index")).status_code, 200)

    def test_a_viewer_sees_no_control_and_a_read_only_risk_form(self):
        World()
        self.client.force_login(make_operator("watcher", roles=("viewer",)))
        page = self.client.get(reverse("dashboard:settings"))
        for control in ('id="halt"', 'id="pause"', 'id="arm"', 'id="save-risk"'):
            self.assertNotContains(page, control)
        self.assertContains(page, '<fieldset class="read-only" disabled>')

    def test_the_page_cache_follows_a_role_granted_or_taken(self):
        from trading import roles

        World()
        user = make_operator("changing", roles=("viewer",))
        self.client.force_login(user)
        self.assertNotContains(self.client.get(reverse("dashboard:settings")), 'id="halt"')
        roles.grant(user, "operator")
        self.assertContains(self.client.get(reverse("dashboard:settings")), 'id="halt"')
        roles.revoke(user, "operator")
        self.assertNotContains(self.client.get(reverse("dashboard:settings")), 'id="halt"')


class GrantRoleCommandTests(TestCase):
    def run_command(self, *args: str) -> str:
        out = StringIO()
        call_command("grant_role", *args, stdout=out)
        return out.getvalue()

    def test_grant_list_and_revoke(self):
        World()
        user = User.objects.create_user("ann", password=PASSWORD)
        self.client.force_login(user)
        self.assertEqual(self.client.get(reverse("dashboard:index")).status_code, 403)

        self.assertIn("ann: viewer, operator", self.run_command("ann", "operator", "viewer"))
        self.assertEqual(self.client.get(reverse("dashboard:index")).status_code, 200)
        self.assertIn("ann: viewer, operator", self.run_command("ann"))
        self.assertIn("ann: viewer", self.run_command("ann", "operator", "--revoke"))
        user = User.objects.get(pk=user.pk)
        self.assertEqual(
            (user.has_perm(VIEW), user.has_perm(OPERATE), user.is_staff), (True, False, False)
        )

    def test_create_prints_a_password_that_logs_in(self):
        output = self.run_command("bob", "risk-manager", "--create")
        password = re.search(r"password: (\S+)", output).group(1)
        self.assertTrue(self.client.login(username="bob", password=password))
        self.assertTrue(User.objects.get(username="bob").has_perm(CHANGE_RISK))

    def test_bad_input_is_refused_and_changes_nothing(self):
        User.objects.create_user("ann", password=PASSWORD)
        for args, message in [
            (("nobody", "viewer"), "No user 'nobody'"),
            (("ann", "--create"), "already exists"),
            (("ann", "--revoke"), "needs the role"),
            (("ann", "viewer", "admin"), "Unknown role admin; the roles are viewer, operator"),
        ]:
            with self.subTest(args), self.assertRaisesMessage(CommandError, message):
                call_command("grant_role", *args, stdout=StringIO())
        self.assertFalse(User.objects.get(username="ann").groups.exists())
        self.assertFalse(User.objects.filter(username="nobody").exists())
