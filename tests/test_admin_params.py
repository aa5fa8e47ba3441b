"""Hostile query strings on the admin's lists: a far year in a date lookup (the date hierarchy's
or any date field's), a NUL byte in a filter, answer 400 (or the admin's own ?e=1 redirect),
never 500. Walks ``admin.site._registry``, so a list added later is covered."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models
from django.test import TestCase
from django.urls import reverse

from trading.models import Decision

ALLOWED = {200, 302, 400}


def _changelist(model: type[models.Model]) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")


def _date_fields(model: type[models.Model]) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if isinstance(f, models.DateField)]


class AdminHostileParamsTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.superuser = User.objects.create_superuser("boss", "boss@example.com", None)

    def setUp(self) -> None:
        self.client.force_login(self.superuser)
        self.client.raise_request_exception = False

    def get(self, url: str, params: dict[str, str]) -> int:
        return self.client.get(f"{url}?{urlencode(params)}").status_code

    def test_the_reported_years_are_refused(self) -> None:
        url = _changelist(Decision)
        for params in ({"decided_at__year": "99999"}, {"created_at__year": "99999"}):
            with self.subTest(params=params):
                self.assertEqual(self.get(url, params), 400)

    def test_every_date_hierarchy_and_date_field_survives_far_years(self) -> None:
        hostile = ("99999", "9999", "0", "-1", "1" * 30, "x")
        checked = 0
        for model, model_admin in admin.site._registry.items():
            url = _changelist(model)
            fields = set(_date_fields(model))
            if model_admin.date_hierarchy:
                fields.add(model_admin.date_hierarchy)
            for field in sorted(fields):
                for value in hostile:
                    for params in (
                        {f"{field}__year": value},
                        {f"{field}__year": value, f"{field}__month": "12"},
                        {f"{field}__year": "2025", f"{field}__month": value},
                        {f"{field}__year": "2025", f"{field}__month": "1", f"{field}__day": value},
                        {f"{field}__gte": f"{value}-01-01"},
                    ):
                        with self.subTest(model=model.__name__, params=params):
                            self.assertIn(self.get(url, params), ALLOWED)
                            checked += 1
        self.assertGreater(checked, 100)

    def test_a_nul_byte_in_a_filter_or_search_is_refused(self) -> None:
        for model in admin.site._registry:
            url = _changelist(model)
            for params in ({"q": "a\x00b"}, {"id": "\x00"}, {"o": "\x00"}, {"p": "\x00"}):
                with self.subTest(model=model.__name__, params=params):
                    self.assertIn(self.get(url, params), ALLOWED)
