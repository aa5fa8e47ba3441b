"""Our decisions and their consequences in the back office.

Read-mostly: forecasts, decisions, orders, fills, positions, settlements, job records, AI
spend and both audit trails are written only by services (and orders/fills mirror the
exchange), so they are read-only here, with no deletes. The two control rows are the
exception: ``RiskSettings`` and ``TradingState`` open straight on their single row and every
change goes through ``trading.audit``, which writes the audit trail in the same transaction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from markets.admin import (
    EMPTY,
    ReadOnlyAdmin,
    changelist_link,
    format_count,
    format_price,
    format_signed,
)
from markets.money import format_dollars
from trading.audit import risk_settings_update, trading_state_set
from trading.models import (
    AccountSnapshot,
    BacktestRun,
    DailyCost,
    Decision,
    Fill,
    Forecast,
    JobLease,
    JobRun,
    LLMCall,
    Order,
    Position,
    RiskSettings,
    RiskSettingsChange,
    Settlement,
    TradingState,
    TradingStateChange,
)

_S = TypeVar("_S", RiskSettings, TradingState)

# Fees and AI costs are fractions of a cent: two places would show most of them as $0.00.
FINE = 4


def _operator(request: HttpRequest) -> User | None:
    """The signed-in user the audit trail names (the admin only serves signed-in staff)."""
    return request.user if request.user.is_authenticated else None


def _when(value: Any) -> str:
    return date_format(timezone.localtime(value), "DATETIME_FORMAT") if value else EMPTY


# --- The two control rows -------------------------------------------------------------------


class SingletonAdmin(admin.ModelAdmin[_S]):
    """One row (pk=1): the changelist opens it, created with the defaults when missing.

    There is nothing to add (the row always exists once the admin was opened) and nothing to
    delete (the app cannot run without it).
    """

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        row = self.model.load()
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=(row.pk,))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _S | None = None) -> bool:
        return False


@admin.register(RiskSettings)
class RiskSettingsAdmin(SingletonAdmin[RiskSettings]):
    readonly_fields = ("updated_at", "updated_by", "recent_changes")
    fieldsets = (
        (
            "Position sizing",
            {
                "fields": (
                    "max_position_pct",
                    "max_open_positions",
                    "max_category_exposure_pct",
                    "cash_reserve_pct",
                    "kelly_fraction",
                    "max_kelly",
                    "max_contracts_per_order",
                )
            },
        ),
        ("Loss limit", {"fields": ("max_daily_loss_pct",)}),
        (
            "Which markets",
            {
                "fields": (
                    "min_volume",
                    "max_days_to_close",
                    "min_hours_to_close",
                    "excluded_categories",
                    "reanalyse_minutes",
                )
            },
        ),
        (
            "Edge required after fees (fractions: 0.06 = 6 cents per dollar)",
            {"fields": ("min_confidence", "edge_high", "edge_medium", "edge_low")},
        ),
        (
            "Exits",
            {
                "fields": (
                    "stop_loss_pct",
                    "take_profit_pct",
                    "max_hold_hours",
                    "exit_before_close_hours",
                    "exit_floor_pct",
                )
            },
        ),
        ("Orders", {"fields": ("entry_order_ttl_seconds",)}),
        (
            "Forecasts and AI spend",
            {
                "fields": (
                    "ai_daily_budget",
                    "forecast_ttl_minutes",
                    "forecast_price_move",
                    "skill_min_settled",
                )
            },
        ),
        ("Audit", {"fields": ("updated_at", "updated_by", "recent_changes")}),
    )

    @admin.display(description="Recent changes")
    def recent_changes(self, obj: RiskSettings) -> str:
        changes = list(RiskSettingsChange.objects.select_related("changed_by")[:10])
        history = changelist_link(RiskSettingsChange, "Full history")
        if not changes:
            return format_html("No changes yet. {}", history)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _when(c.changed_at),
                    c.changed_by or EMPTY,
                    c.field,
                    c.old_value,
                    c.new_value,
                    c.via,
                )
                for c in changes
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>Who</th><th>Setting</th><th>From</th>"
            "<th>To</th><th>Via</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            rows,
            history,
        )

    def save_model(
        self, request: HttpRequest, obj: RiskSettings, form: ModelForm[RiskSettings], change: bool
    ) -> None:
        # Only the fields this form changed: a field someone else changed meanwhile keeps
        # their value instead of being overwritten with what this form was loaded with.
        changes = {
            name: form.cleaned_data[name]
            for name in form.changed_data
            if name in RiskSettings.AUDITED_FIELDS
        }
        risk_settings_update(
            settings_obj=obj, changes=changes, user=_operator(request), via="admin"
        )


class TradingStateForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = TradingState
        fields = ("state", "reason")

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if (
            cleaned.get("state") == TradingState.State.HALTED
            and not (cleaned.get("reason") or "").strip()
        ):
            self.add_error("reason", "Halting trading needs a reason.")
        return cleaned


@admin.register(TradingState)
class TradingStateAdmin(SingletonAdmin[TradingState]):
    """Only ``state`` and ``reason`` are editable. Arming live trading needs a typed
    confirmation and belongs to the dashboard, so ``live_armed`` is read-only here."""

    form = TradingStateForm
    fields = (
        "state",
        "reason",
        "changed_at",
        "changed_by",
        "live_armed",
        "armed_at",
        "armed_by",
        "replay_clock",
        "history_link",
    )
    readonly_fields = (
        "changed_at",
        "changed_by",
        "live_armed",
        "armed_at",
        "armed_by",
        "replay_clock",
        "history_link",
    )

    @admin.display(description="History")
    def history_link(self, obj: TradingState) -> str:
        return changelist_link(TradingStateChange, "All state changes")

    def save_model(
        self, request: HttpRequest, obj: TradingState, form: ModelForm[TradingState], change: bool
    ) -> None:
        trading_state_set(state=obj.state, reason=obj.reason, user=_operator(request))
        obj.refresh_from_db()


# --- Audit trails -----------------------------------------------------------------------------


@admin.register(RiskSettingsChange)
class RiskSettingsChangeAdmin(ReadOnlyAdmin[RiskSettingsChange]):
    list_display = ("changed_at", "changed_by", "field", "old_value", "new_value", "via")
    list_filter = ("field", "via")
    list_select_related = ("changed_by",)
    search_fields = ("field", "old_value", "new_value")
    date_hierarchy = "changed_at"
    ordering = ("-changed_at", "-id")


@admin.register(TradingStateChange)
class TradingStateChangeAdmin(ReadOnlyAdmin[TradingStateChange]):
    list_display = ("changed_at", "changed_by", "old_state", "new_state", "live_armed", "reason")
    list_filter = ("new_state", "live_armed")
    list_select_related = ("changed_by",)
    search_fields = ("reason",)
    date_hierarchy = "changed_at"
    ordering = ("-changed_at", "-id")


# --- Jobs and spend -----------------------------------------------------------------------------


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin[JobRun]):
    list_display = (
        "started_at",
        "job",
        "mode",
        "status",
        "duration_display",
        "heartbeat_at",
        "summary",
    )
    list_filter = ("status", "job", "mode")
    search_fields = ("job", "summary", "error")
    date_hierarchy = "started_at"
    ordering = ("-started_at", "-id")
    show_full_result_count = False
    readonly_fields = ("duration_display", "decisions_link")
    # Old runs are operational noise; decisions keep their rows (run → NULL).
    superuser_may_delete = True

    @admin.display(description="Duration")
    def duration_display(self, obj: JobRun) -> str:
        duration = obj.duration
        return f"{duration.total_seconds():.1f} s" if duration is not None else EMPTY

    @admin.display(description="Decisions")
    def decisions_link(self, obj: JobRun) -> str:
        return changelist_link(Decision, "Decisions of this run", run__id__exact=obj.pk)


@admin.register(JobLease)
class JobLeaseAdmin(ReadOnlyAdmin[JobLease]):
    """Leases are never deleted: ``token`` must keep increasing (it fences stale workers)."""

    list_display = ("name", "owner", "token", "acquired_at", "expires_at", "is_held")
    search_fields = ("name", "owner")
    ordering = ("name",)

    @admin.display(description="Held now", boolean=True)
    def is_held(self, obj: JobLease) -> bool:
        return obj.expires_at > timezone.now()


@admin.register(DailyCost)
class DailyCostAdmin(ReadOnlyAdmin[DailyCost]):
    list_display = ("date", "cost_display", "llm_calls", "input_tokens", "output_tokens")
    date_hierarchy = "date"
    ordering = ("-date",)

    @admin.display(description="AI cost", ordering="llm_cost")
    def cost_display(self, obj: DailyCost) -> str:
        return format_dollars(obj.llm_cost, FINE)


# --- Forecasts --------------------------------------------------------------------------------


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin[LLMCall]):
    list_display = (
        "created_at",
        "provider",
        "model",
        "purpose",
        "status",
        "market",
        "input_tokens",
        "output_tokens",
        "cost_display",
        "latency_ms",
    )
    list_filter = ("status", "provider", "purpose", "prompt_version")
    list_select_related = ("market",)
    search_fields = ("model", "prompt_version", "^market__ticker")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    raw_id_fields = ("market",)
    show_full_result_count = False

    @admin.display(description="Cost", ordering="cost")
    def cost_display(self, obj: LLMCall) -> str:
        return format_dollars(obj.cost, FINE)


@admin.register(Forecast)
class ForecastAdmin(ReadOnlyAdmin[Forecast]):
    list_display = (
        "created_at",
        "market",
        "mode",
        "forecaster",
        "valid",
        "probability_display",
        "confidence_display",
        "market_price_display",
        "brier_display",
    )
    list_filter = ("mode", "valid", "forecaster", "price_shown", "prompt_version")
    list_select_related = ("market",)
    search_fields = ("^market__ticker", "forecaster", "model")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    raw_id_fields = ("market", "llm_call")
    show_full_result_count = False

    @admin.display(description="P(yes)", ordering="probability")
    def probability_display(self, obj: Forecast) -> str:
        return format_price(obj.probability)

    @admin.display(description="Confidence", ordering="confidence")
    def confidence_display(self, obj: Forecast) -> str:
        return format_price(obj.confidence)

    @admin.display(description="Market price", ordering="market_price")
    def market_price_display(self, obj: Forecast) -> str:
        return format_price(obj.market_price)

    @admin.display(description="Brier", ordering="brier")
    def brier_display(self, obj: Forecast) -> str:
        return format_price(obj.brier)


# --- Decisions and the ledger -------------------------------------------------------------------


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin[Decision]):
    list_display = (
        "created_at",
        "mode",
        "market",
        "reason",
        "side",
        "action",
        "price_display",
        "count_display",
        "edge_display",
        "strategy",
    )
    list_filter = ("mode", "reason", "strategy", "side", "action")
    list_select_related = ("market",)
    search_fields = ("^market__ticker",)
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    raw_id_fields = ("run", "market", "forecast")
    show_full_result_count = False
    readonly_fields = ("orders_link",)

    @admin.display(description="Price", ordering="price")
    def price_display(self, obj: Decision) -> str:
        return format_price(obj.price)

    @admin.display(description="Count", ordering="count")
    def count_display(self, obj: Decision) -> str:
        return format_count(obj.count)

    @admin.display(description="Edge", ordering="edge")
    def edge_display(self, obj: Decision) -> str:
        return format_signed(obj.edge)

    @admin.display(description="Orders")
    def orders_link(self, obj: Decision) -> str:
        return changelist_link(Order, "Orders of this decision", decision__id__exact=obj.pk)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin[Order]):
    list_display = (
        "created_at",
        "client_order_id",
        "market",
        "mode",
        "purpose",
        "side",
        "action",
        "yes_price_display",
        "count_display",
        "filled_display",
        "status",
        "fees_display",
    )
    list_filter = ("status", "mode", "purpose", "side", "action", "time_in_force", "cancel_reason")
    list_select_related = ("market",)
    search_fields = ("=client_order_id", "=exchange_order_id", "^market__ticker")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    raw_id_fields = ("decision", "market", "replaces")
    show_full_result_count = False
    readonly_fields = ("book_side", "side_price_display", "max_cost_display", "fills_link")

    @admin.display(description="Yes price", ordering="yes_price")
    def yes_price_display(self, obj: Order) -> str:
        return format_price(obj.yes_price)

    @admin.display(description="Side price")
    def side_price_display(self, obj: Order) -> str:
        return format_price(obj.side_price)

    @admin.display(description="Count", ordering="count")
    def count_display(self, obj: Order) -> str:
        return format_count(obj.count)

    @admin.display(description="Filled", ordering="filled_count")
    def filled_display(self, obj: Order) -> str:
        return format_count(obj.filled_count)

    @admin.display(description="Fees", ordering="fees_paid")
    def fees_display(self, obj: Order) -> str:
        return format_dollars(obj.fees_paid, FINE)

    @admin.display(description="Max cost (dollars)")
    def max_cost_display(self, obj: Order) -> str:
        return format_dollars(obj.max_cost, FINE)

    @admin.display(description="Fills")
    def fills_link(self, obj: Order) -> str:
        return changelist_link(Fill, "Fills of this order", order__id__exact=obj.pk)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin[Fill]):
    list_display = (
        "executed_at",
        "fill_id",
        "market",
        "mode",
        "side",
        "action",
        "count_display",
        "yes_price_display",
        "fee_display",
        "is_taker",
        "order",
    )
    list_filter = ("mode", "side", "action", "is_taker")
    list_select_related = ("market", "order")
    search_fields = ("=fill_id", "=exchange_order_id", "=order__client_order_id", "^market__ticker")
    date_hierarchy = "executed_at"
    ordering = ("-executed_at", "-id")
    raw_id_fields = ("order", "market")
    show_full_result_count = False

    @admin.display(description="Count", ordering="count")
    def count_display(self, obj: Fill) -> str:
        return format_count(obj.count)

    @admin.display(description="Yes price", ordering="yes_price")
    def yes_price_display(self, obj: Fill) -> str:
        return format_price(obj.yes_price)

    @admin.display(description="Fee", ordering="fee")
    def fee_display(self, obj: Fill) -> str:
        return format_dollars(obj.fee, FINE)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin[Position]):
    list_display = (
        "market",
        "mode",
        "strategy",
        "status",
        "side",
        "count_display",
        "avg_price_display",
        "cost_display",
        "realized_display",
        "fees_display",
        "opened_at",
        "closed_at",
    )
    list_filter = ("status", "mode", "strategy", "side", "close_reason")
    list_select_related = ("market",)
    search_fields = ("^market__ticker",)
    date_hierarchy = "opened_at"
    ordering = ("-opened_at", "-id")
    raw_id_fields = ("market",)
    readonly_fields = ("avg_price_display", "fills_link")

    @admin.display(description="Count", ordering="count")
    def count_display(self, obj: Position) -> str:
        return format_count(obj.count)

    @admin.display(description="Avg price")
    def avg_price_display(self, obj: Position) -> str:
        return format_price(obj.avg_price)

    @admin.display(description="Cost basis", ordering="cost_basis")
    def cost_display(self, obj: Position) -> str:
        return format_dollars(obj.cost_basis)

    @admin.display(description="Realized P&L", ordering="realized_pnl")
    def realized_display(self, obj: Position) -> str:
        return format_dollars(obj.realized_pnl)

    @admin.display(description="Fees", ordering="fees_paid")
    def fees_display(self, obj: Position) -> str:
        return format_dollars(obj.fees_paid, FINE)

    @admin.display(description="Fills")
    def fills_link(self, obj: Position) -> str:
        return changelist_link(
            Fill, "Fills in this market", market__id__exact=obj.market_id, mode__exact=obj.mode
        )


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin[Settlement]):
    list_display = (
        "settled_at",
        "market",
        "mode",
        "result",
        "yes_count_display",
        "no_count_display",
        "cost_display",
        "payout_display",
        "fee_display",
        "pnl_display",
    )
    list_filter = ("mode", "result")
    list_select_related = ("market",)
    search_fields = ("^market__ticker",)
    date_hierarchy = "settled_at"
    ordering = ("-settled_at", "-id")
    raw_id_fields = ("market", "position")

    @admin.display(description="Yes", ordering="yes_count")
    def yes_count_display(self, obj: Settlement) -> str:
        return format_count(obj.yes_count)

    @admin.display(description="No", ordering="no_count")
    def no_count_display(self, obj: Settlement) -> str:
        return format_count(obj.no_count)

    @admin.display(description="Cost basis", ordering="cost_basis")
    def cost_display(self, obj: Settlement) -> str:
        return format_dollars(obj.cost_basis)

    @admin.display(description="Payout", ordering="payout")
    def payout_display(self, obj: Settlement) -> str:
        return format_dollars(obj.payout)

    @admin.display(description="Fee", ordering="fee")
    def fee_display(self, obj: Settlement) -> str:
        return format_dollars(obj.fee, FINE)

    @admin.display(description="Realized P&L", ordering="realized_pnl")
    def pnl_display(self, obj: Settlement) -> str:
        return format_dollars(obj.realized_pnl)


@admin.register(AccountSnapshot)
class AccountSnapshotAdmin(ReadOnlyAdmin[AccountSnapshot]):
    list_display = (
        "ts",
        "mode",
        "cash_display",
        "equity_display",
        "open_positions",
        "realized_display",
        "unrealized_display",
    )
    list_filter = ("mode",)
    date_hierarchy = "ts"
    ordering = ("-ts", "-id")
    show_full_result_count = False

    @admin.display(description="Cash", ordering="cash")
    def cash_display(self, obj: AccountSnapshot) -> str:
        return format_dollars(obj.cash)

    @admin.display(description="Equity", ordering="equity")
    def equity_display(self, obj: AccountSnapshot) -> str:
        return format_dollars(obj.equity)

    @admin.display(description="Realized P&L", ordering="realized_pnl")
    def realized_display(self, obj: AccountSnapshot) -> str:
        return format_dollars(obj.realized_pnl)

    @admin.display(description="Unrealized P&L", ordering="unrealized_pnl")
    def unrealized_display(self, obj: AccountSnapshot) -> str:
        return format_dollars(obj.unrealized_pnl)


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin[BacktestRun]):
    list_display = ("id", "created_at", "forecaster", "trades", "pnl", "drawdown", "reused_from")
    list_filter = ("forecaster",)
    search_fields = ("forecaster", "data_dir")
    date_hierarchy = "created_at"
    raw_id_fields = ("reused_from",)
    exclude = ("answers",)
    readonly_fields = (
        "created_at",
        "forecaster",
        "data_dir",
        "reused_from",
        "params",
        "report",
        "elapsed_ms",
    )
    superuser_may_delete = True

    @admin.display(description="trades")
    def trades(self, obj: BacktestRun) -> Any:
        return obj.report.get("trades")

    @admin.display(description="P&L after fees")
    def pnl(self, obj: BacktestRun) -> str:
        value = obj.report.get("pnl_after_fees")
        return format_dollars(Decimal(value)) if value is not None else "—"

    @admin.display(description="max drawdown")
    def drawdown(self, obj: BacktestRun) -> Any:
        return obj.report.get("max_drawdown")
