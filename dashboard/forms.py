"""The dashboard's forms: list filters (GET), the risk settings and the trading controls."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import BadRequest
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import QueryDict

from markets.models import Market
from trading.models import Mode, Order, Position, RiskSettings, Side
from trading.reasons import REASON_CHOICES

ANY = [("", "Any")]


# The days a page may be asked about: wide for any desk's rows, and far from the ends of
# Python's dates (a day's bounds are computed as datetimes).
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(2999, 12, 31)
MAX_PAGE = 100_000
MAX_ID = 2**63 - 1  # the largest id a bigint column holds


def day_field(**kwargs: Any) -> forms.DateField:
    return forms.DateField(
        validators=[MinValueValidator(EARLIEST_DAY), MaxValueValidator(LATEST_DAY)],
        widget=forms.DateInput(attrs={"type": "date"}),
        **kwargs,
    )


def refuse(form: forms.Form) -> BadRequest:
    """The 400 for a query no page can serve, naming the fields (never echoing the values)."""
    return BadRequest(f"Bad query parameter: {', '.join(sorted(form.errors))}")


class OpenChoiceField(forms.CharField):
    """A choice from a list read from the database (categories, forecasters): shown as a
    select, but a value not in today's list is a filter that matches nothing, not an error."""

    widget = forms.Select

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, **kwargs)

    def set_choices(self, choices: list[tuple[str, str]]) -> None:
        assert isinstance(self.widget, forms.Select)
        self.widget.choices = choices


class PageForm(forms.Form):
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE)


def page_number(data: QueryDict) -> int:
    """The list page asked for (1 when absent); ``BadRequest`` (400) when it is no page number."""
    form = PageForm(data)
    if not form.is_valid():
        raise refuse(form)
    return form.cleaned_data["page"] or 1


class FilterForm(forms.Form):
    """A GET filter form: every field optional and bounded; ``filters`` are the cleaned,
    non-empty values, and a value a field refuses is a ``BadRequest`` (400), never a 500."""

    def __init__(self, data: QueryDict, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        for field in self.fields.values():
            field.required = False

    @property
    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            raise refuse(self)
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}

    def key(self) -> tuple[tuple[str, str], ...]:
        """The filters as a sorted tuple: part of a cache key."""
        return tuple(sorted((k, str(v)) for k, v in self.filters.items()))


def with_mode_default(data: QueryDict) -> QueryDict:
    """The query with ``mode`` set to the configured trading mode when it is absent."""
    data = data.copy()
    data.setdefault("mode", settings.TRADING_MODE)
    return data


MODE_CHOICES = [("", "All modes"), *Mode.choices]


class MarketFilterForm(FilterForm):
    CLOSING = [("", "Any time"), ("24", "Within 24 hours"), ("168", "Within 7 days")]

    q = forms.CharField(label="Search", max_length=100)
    status = forms.ChoiceField(choices=ANY + Market.Status.choices)
    series = forms.CharField(max_length=64, widget=forms.TextInput(attrs={"list": "series-list"}))
    category = OpenChoiceField()
    closing = forms.ChoiceField(label="Closing", choices=CLOSING)
    min_volume = forms.DecimalField(
        label="Min volume", min_value=0, max_digits=16, decimal_places=2
    )

    def __init__(self, data: QueryDict, *, categories: list[str], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        field = self.fields["category"]
        assert isinstance(field, OpenChoiceField)
        field.set_choices(ANY + [(c, c) for c in categories])


class DecisionFilterForm(FilterForm):
    q = forms.CharField(label="Market", max_length=100)
    mode = forms.ChoiceField(choices=MODE_CHOICES)
    reason = forms.ChoiceField(choices=ANY + REASON_CHOICES)
    strategy = forms.CharField(max_length=32)
    run = forms.IntegerField(label="Run", min_value=1, max_value=MAX_ID)
    day = day_field(label="Day")


class PositionFilterForm(FilterForm):
    q = forms.CharField(label="Market", max_length=100)
    mode = forms.ChoiceField(choices=MODE_CHOICES)
    status = forms.ChoiceField(choices=ANY + Position.Status.choices)
    strategy = forms.CharField(max_length=32)


class OrderFilterForm(FilterForm):
    q = forms.CharField(label="Market or id", max_length=100)
    mode = forms.ChoiceField(choices=MODE_CHOICES)
    status = forms.ChoiceField(choices=ANY + Order.Status.choices)
    purpose = forms.ChoiceField(choices=ANY + Order.Purpose.choices)
    side = forms.ChoiceField(choices=ANY + Side.choices)


class FillFilterForm(FilterForm):
    q = forms.CharField(label="Market", max_length=100)
    mode = forms.ChoiceField(choices=MODE_CHOICES)
    side = forms.ChoiceField(choices=ANY + Side.choices)
    action = forms.ChoiceField(choices=ANY + [("buy", "Buy"), ("sell", "Sell")])


class FunnelForm(FilterForm):
    mode = forms.ChoiceField(choices=Mode.choices)
    day = day_field(label="Day")


class CalibrationForm(FilterForm):
    forecaster = OpenChoiceField()

    def __init__(self, data: QueryDict, *, forecasters: list[str], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        field = self.fields["forecaster"]
        assert isinstance(field, OpenChoiceField)
        field.set_choices([("", "All forecasters")] + [(f, f) for f in forecasters])


# --- Settings and controls ------------------------------------------------------------------


class RiskSettingsForm(forms.ModelForm):
    """The audited limits. Fractions are entered as fractions (0.05 = 5%)."""

    GROUPS = (
        (
            "Portfolio limits",
            (
                "max_position_pct",
                "max_open_positions",
                "max_daily_loss_pct",
                "cash_reserve_pct",
                "max_category_exposure_pct",
                "max_contracts_per_order",
            ),
        ),
        (
            "Which markets",
            (
                "min_volume",
                "max_days_to_close",
                "min_hours_to_close",
                "excluded_categories",
                "reanalyse_minutes",
            ),
        ),
        (
            "Edge and sizing",
            (
                "min_confidence",
                "edge_high",
                "edge_medium",
                "edge_low",
                "kelly_fraction",
                "max_kelly",
            ),
        ),
        (
            "Exits",
            (
                "stop_loss_pct",
                "take_profit_pct",
                "max_hold_hours",
                "exit_before_close_hours",
                "exit_floor_pct",
            ),
        ),
        ("Orders", ("entry_order_ttl_seconds",)),
        (
            "Forecasts and AI",
            ("ai_daily_budget", "forecast_ttl_minutes", "forecast_price_move", "skill_min_settled"),
        ),
    )

    class Meta:
        model = RiskSettings
        fields = RiskSettings.AUDITED_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.DecimalField):
                field.widget.attrs["step"] = "any"

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(title, [self[name] for name in names]) for title, names in self.GROUPS]

    def changes(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in RiskSettings.AUDITED_FIELDS}


class HaltForm(forms.Form):
    """The kill switch's form: any reason halts (``trading.audit.state_reason`` trims it, cuts
    it to fit and gives a blank one a default), so nothing here can refuse a halt."""

    reason = forms.CharField(
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Why trading stops"}),
    )
    cancel_orders = forms.BooleanField(required=False, label="Also cancel all our resting orders")

    def reason_given(self) -> str:
        return str(self.data.get("reason", ""))
