"""The dashboard's forms: list filters (GET), the risk settings and the trading controls."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from markets.models import Market
from trading.models import Mode, Order, Position, RiskSettings, Side
from trading.reasons import REASON_CHOICES

ANY = [("", "Any")]


class FilterForm(forms.Form):
    """A GET filter form: invalid values are ignored (the list shows unfiltered) rather
    than failing the page; ``filters`` are the cleaned, non-empty values."""

    def __init__(self, data: QueryDict, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        for field in self.fields.values():
            field.required = False

    @property
    def filters(self) -> dict[str, Any]:
        self.is_valid()  # fills cleaned_data with the fields that are valid
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
    category = forms.ChoiceField(choices=ANY)
    closing = forms.ChoiceField(label="Closing", choices=CLOSING)
    min_volume = forms.DecimalField(label="Min volume", min_value=0, decimal_places=2)

    def __init__(self, data: QueryDict, *, categories: list[str], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        field = self.fields["category"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = ANY + [(c, c) for c in categories]


class DecisionFilterForm(FilterForm):
    q = forms.CharField(label="Market", max_length=100)
    mode = forms.ChoiceField(choices=MODE_CHOICES)
    reason = forms.ChoiceField(choices=ANY + REASON_CHOICES)
    strategy = forms.CharField(max_length=32)
    run = forms.IntegerField(label="Run", min_value=1)
    day = forms.DateField(label="Day", widget=forms.DateInput(attrs={"type": "date"}))


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
    day = forms.DateField(label="Day", widget=forms.DateInput(attrs={"type": "date"}))


class CalibrationForm(FilterForm):
    forecaster = forms.ChoiceField(choices=[("", "All forecasters")])

    def __init__(self, data: QueryDict, *, forecasters: list[str], **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        field = self.fields["forecaster"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "All forecasters")] + [(f, f) for f in forecasters]


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
            ("stop_loss_pct", "take_profit_pct", "max_hold_hours", "exit_before_close_hours"),
        ),
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

    def reason_given(self) -> str:
        return str(self.data.get("reason", ""))
