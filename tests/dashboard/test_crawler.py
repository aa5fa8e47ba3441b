"""A crawler: every dashboard page with random and hostile query strings and path arguments, and
every dashboard form posted with random and hostile values. Nothing answers 500.

Hypothesis with a fixed seed (``derandomize``) and bounded examples, so CI is repeatable and
quick; for a longer hunt multiply the examples with ``CRAWLER_SCALE`` (120: about 12 minutes):
    CRAWLER_SCALE=120 .venv/bin/pytest tests/dashboard/test_crawler.py
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any
from urllib.parse import quote

from django import forms as django_forms
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from dashboard import forms
from dashboard.cache import forget_generation
from tests.dashboard.urls import POST_ONLY, dashboard_url_names
from tests.dashboard.world import World
from trading.audit import ARM_CONFIRMATION
from trading.models import RiskSettings

SCALE = float(os.environ.get("CRAWLER_SCALE", "1"))


def crawl(examples: int) -> settings:
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max(1, int(examples * SCALE)),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


HOSTILE = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "9999-12-31",
    "0001-01-01",
    "2025-02-30",
    "10000-01-01",
    "-1",
    "0",
    "1" * 40,
    str(2**63),
    str(-(2**63) - 1),
    "1e400",
    "-1e-400",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "0.0000000001",
    "١٢٣",
    "😀",
    "\u202e\u0000\ufeff",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    '"; DROP TABLE x; --',
    "../../etc/passwd",
    "x" * 3000,
    "true",
    "null",
    ARM_CONFIRMATION,
    "https://evil.example/",
    "//evil.example",
    "javascript:alert(1)",
]

VALUES = st.one_of(
    st.sampled_from(HOSTILE),
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.integers().map(str),
    st.dates().map(date.isoformat),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)

# The query parameters each page reads (its filter form's fields, and the page number).
PAGE_FORMS: dict[str, type[forms.FilterForm]] = {
    "markets": forms.MarketFilterForm,
    "decisions": forms.DecisionFilterForm,
    "positions": forms.PositionFilterForm,
    "orders": forms.OrderFilterForm,
    "fills": forms.FillFilterForm,
    "funnel": forms.FunnelForm,
    "calibration": forms.CalibrationForm,
}


FAR_DATES = ["9999-12-31", "0001-01-01", "10000-01-01", "2025-02-30", "1969-12-31"]
BIG_NUMBERS = ["1" * 40, str(2**63), str(-(2**63) - 1), "1e400", "NaN", "-Infinity", "-1", "0"]


def _value(field: Any) -> st.SearchStrategy[str]:
    """Values for one form field: hostile ones of its own type first, then anything."""
    if isinstance(field, django_forms.DateField):
        own = st.sampled_from(FAR_DATES)
    elif isinstance(field, django_forms.IntegerField | django_forms.DecimalField):
        own = st.one_of(st.sampled_from(BIG_NUMBERS), st.integers().map(str))
    elif isinstance(field, django_forms.ChoiceField):
        own = st.sampled_from([str(value) for value, _ in field.choices] or [""])
    else:
        own = st.sampled_from(HOSTILE)
    return st.one_of(own, VALUES)


def _query(name: str) -> st.SearchStrategy[dict[str, str]]:
    """A query string for page ``name``: some of its own parameters, maybe a stray one."""
    form = PAGE_FORMS.get(name)
    fields = dict(form.base_fields) if form else {}
    optional = {key: _value(field) for key, field in fields.items()}
    optional["page"] = _value(django_forms.IntegerField())
    optional["\x00" if name == "funnel" else "x-stray"] = VALUES
    return st.fixed_dictionaries({}, optional=optional)


PAGES = sorted(dashboard_url_names() - POST_ONLY)
RISK_FIELDS = list(RiskSettings.AUDITED_FIELDS)
POST_KEYS = st.sampled_from([*RISK_FIELDS, "reason", "confirmation", "next"])


def _path(name: str, world: World, arg: Any = None) -> str:
    if name == "market":
        return reverse("dashboard:market", args=[arg if arg is not None else world.ticker])
    if name in ("decision",):
        return reverse("dashboard:decision", args=[arg if arg is not None else world.decision])
    if name in ("position", "position-flatten"):
        return reverse(f"dashboard:{name}", args=[arg if arg is not None else world.position])
    return reverse(f"dashboard:{name}")


class _World:
    def __init__(self, world: World) -> None:
        self.ticker = world.focus_market.ticker
        self.decision = world.focus_decision.pk
        self.position = world.focus_position.pk


@override_settings(TRADING_MODE="paper")
class CrawlerTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_superuser("crawler", "c@example.com", None)
        cls.world = _World(World().grow(2))

    def check(self, response, url: str) -> None:
        self.assertLess(response.status_code, 500, url)
        self.assertIn(response.status_code, {200, 302, 400, 404, 405}, url)

    def request(self, method: str, url: str, data: dict[str, str] | None = None) -> None:
        """One request from a fresh session with the caches cleared, so each example renders
        its pages afresh (each example runs in its own transaction, rolled back after)."""
        cache.clear()
        forget_generation()
        client = Client()
        client.force_login(self.user)
        self.check(getattr(client, method)(url, data or {}), f"{url} {data!r}")

    @crawl(40)
    @given(ticker=VALUES, pk=st.integers())
    def test_path_arguments(self, ticker, pk):
        if ticker:
            self.request("get", "/markets/" + quote(ticker, safe="") + "/")
        for name in ("decisions", "positions"):
            self.request("get", f"/{name}/{pk}/")

    @crawl(60)
    @given(
        name=st.sampled_from(sorted(POST_ONLY)),
        data=st.dictionaries(POST_KEYS, VALUES, max_size=6),
        pk=st.one_of(st.none(), st.integers(min_value=0)),
    )
    def test_every_form_with_hostile_posts(self, name, data, pk):
        if name == "settings-risk":  # a whole valid form, then some fields made hostile
            row = RiskSettings.load()
            data = {f: str(getattr(row, f) or "") for f in RISK_FIELDS} | data
        self.request("post", _path(name, self.world, pk), data)


def _page_test(name: str):
    """A test for page ``name``: its query parameters, hostile values of their own types."""
    examples = 30 if name in PAGE_FORMS else 8

    @crawl(examples)
    @given(params=_query(name))
    def test(self, params):
        self.request("get", _path(name, self.world), params)

    test.__name__ = f"test_{name.replace('-', '_')}_page_with_hostile_query_strings"
    return test


for _name in PAGES:
    _test = _page_test(_name)
    setattr(CrawlerTests, _test.__name__, _test)
