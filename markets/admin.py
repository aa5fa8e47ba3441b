"""The exchange's data in the back office: read-only, because Kalshi is the source of truth.

Rows change only through the sync and load services. Staff with view permission can browse
and open every row; nobody can add or edit one here. The shared pieces (the read-only base
class and the price/money formatters) live here and ``trading.admin`` imports them, following
the dependency arrow (trading → markets).

Foreign keys never render as a <select>: there are thousands of markets and hundreds of
thousands of snapshots, so they are raw ids (or read-only links) everywhere.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from markets.models import (
    Event,
    Market,
    MarketSnapshot,
    Series,
    SimAccount,
    SimFill,
    SimOrder,
    SimPosition,
    SimSettlement,
)
from markets.money import PRICE_QUANTUM

# django-stubs declares ModelAdmin generic, so ``admin.ModelAdmin[Market]`` type-checks, but
# Django's own class is not subscriptable at run time. This is the piece of
# ``django_stubs_ext.monkeypatch()`` that the admin modules need, without the dependency.
if not hasattr(admin.ModelAdmin, "__class_getitem__"):
    admin.ModelAdmin.__class_getitem__ = classmethod(  # type: ignore[attr-defined]
        lambda cls, *args, **kwargs: cls
    )

_M = TypeVar("_M", bound=Model)

EMPTY = "—"


def format_price(value: Decimal | None) -> str:
    """A per-contract price the way Kalshi writes it: ``Decimal("0.56")`` → ``"0.5600"``."""
    if value is None:
        return EMPTY
    return str(value.quantize(PRICE_QUANTUM))


def format_signed(value: Decimal | None, places: int = 4) -> str:
    """An edge or a price move, always with its sign: ``"+0.0640"``."""
    if value is None:
        return EMPTY
    return f"{value.quantize(Decimal(1).scaleb(-places)):+}"


def format_count(value: Decimal | None) -> str:
    """A contract count without trailing zeros: ``Decimal("10.00")`` → ``"10"``."""
    if value is None:
        return EMPTY
    text = f"{value:,.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def changelist_link(model: type[Model], text: str, **filters: Any) -> str:
    """An HTML link to ``model``'s changelist, filtered by ``filters`` (field lookups)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    if filters:
        url = f"{url}?{urlencode(filters)}"
    return format_html('<a href="{}">{}</a>', url, text)


class ReadOnlyAdmin(admin.ModelAdmin[_M]):
    """Rows written only by our services (exchange data, the ledger, the audit trail).

    Change pages open in view mode; a POST to one is refused (403). ``superuser_may_delete``
    opens deletion to superusers only, for tables where pruning old rows is an operations task.
    """

    superuser_may_delete = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return self.superuser_may_delete and bool(getattr(request.user, "is_superuser", False))


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin[Series]):
    list_display = ("ticker", "title", "category", "frequency", "updated_at")
    list_filter = ("category", "frequency")
    search_fields = ("ticker", "title")
    ordering = ("ticker",)
    readonly_fields = ("events_link",)

    @admin.display(description="Events")
    def events_link(self, obj: Series) -> str:
        return changelist_link(Event, "Events of this series", series__id__exact=obj.pk)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin[Event]):
    list_display = (
        "event_ticker",
        "series",
        "title",
        "category",
        "strike_date",
        "mutually_exclusive",
        "source",
    )
    list_filter = ("source", "mutually_exclusive", "category")
    list_select_related = ("series",)
    search_fields = ("event_ticker", "title", "series__ticker")
    date_hierarchy = "strike_date"
    ordering = ("event_ticker",)
    raw_id_fields = ("series",)
    readonly_fields = ("markets_link",)

    @admin.display(description="Markets")
    def markets_link(self, obj: Event) -> str:
        return changelist_link(Market, "Markets of this event", event__id__exact=obj.pk)


@admin.register(Market)
class MarketAdmin(ReadOnlyAdmin[Market]):
    list_display = (
        "ticker",
        "title",
        "status",
        "yes_bid_display",
        "yes_ask_display",
        "last_price_display",
        "volume_display",
        "close_time",
        "result",
    )
    list_filter = ("status", "result", "market_type", "price_level_structure", "source", "category")
    search_fields = ("ticker", "title", "event__event_ticker")
    date_hierarchy = "close_time"
    ordering = ("close_time", "ticker")
    raw_id_fields = ("event",)
    show_full_result_count = False
    readonly_fields = ("mid_price_display", "snapshots_link")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "ticker",
                    "event",
                    "title",
                    "subtitle",
                    "yes_sub_title",
                    "no_sub_title",
                    "category",
                    "market_type",
                    "status",
                    "source",
                )
            },
        ),
        ("Times", {"fields": ("open_time", "close_time", "latest_expiration_time")}),
        (
            "Quote (dollars per YES contract)",
            {
                "fields": (
                    ("yes_bid", "yes_ask", "mid_price_display"),
                    ("no_bid", "no_ask", "last_price"),
                    ("yes_bid_size", "yes_ask_size"),
                    ("volume", "volume_24h", "open_interest"),
                    "snapshots_link",
                )
            },
        ),
        ("Price grid", {"fields": ("price_level_structure", "price_ranges")}),
        (
            "Rules and strikes",
            {
                "fields": (
                    "rules_primary",
                    "rules_secondary",
                    "strike_type",
                    ("floor_strike", "cap_strike"),
                    "can_close_early",
                )
            },
        ),
        ("Result", {"fields": ("result", "settlement_value", "settled_time")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Yes bid", ordering="yes_bid")
    def yes_bid_display(self, obj: Market) -> str:
        return format_price(obj.yes_bid)

    @admin.display(description="Yes ask", ordering="yes_ask")
    def yes_ask_display(self, obj: Market) -> str:
        return format_price(obj.yes_ask)

    @admin.display(description="Last", ordering="last_price")
    def last_price_display(self, obj: Market) -> str:
        return format_price(obj.last_price)

    @admin.display(description="Volume", ordering="volume")
    def volume_display(self, obj: Market) -> str:
        return format_count(obj.volume)

    @admin.display(description="Yes mid")
    def mid_price_display(self, obj: Market) -> str:
        return format_price(obj.mid_price)

    @admin.display(description="Snapshots")
    def snapshots_link(self, obj: Market) -> str:
        count = obj.snapshots.count()
        return changelist_link(
            MarketSnapshot,
            f"{count:,} snapshot{'s' if count != 1 else ''}",
            market__id__exact=obj.pk,
        )


@admin.register(MarketSnapshot)
class MarketSnapshotAdmin(ReadOnlyAdmin[MarketSnapshot]):
    """The biggest table (~225k rows): no full count, no date drill-down (it scans), prefix
    search on the ticker only. Open a market and follow its "snapshots" link to see one series.
    """

    list_display = (
        "market",
        "ts",
        "yes_bid_display",
        "yes_ask_display",
        "last_price_display",
        "volume_display",
        "source",
    )
    list_filter = ("source",)
    list_select_related = ("market",)
    search_fields = ("^market__ticker",)
    ordering = ("-ts",)
    raw_id_fields = ("market",)
    show_full_result_count = False
    # Pruning old quotes is a legitimate operations task; nothing references a snapshot.
    superuser_may_delete = True

    @admin.display(description="Yes bid", ordering="yes_bid")
    def yes_bid_display(self, obj: MarketSnapshot) -> str:
        return format_price(obj.yes_bid)

    @admin.display(description="Yes ask", ordering="yes_ask")
    def yes_ask_display(self, obj: MarketSnapshot) -> str:
        return format_price(obj.yes_ask)

    @admin.display(description="Last", ordering="last_price")
    def last_price_display(self, obj: MarketSnapshot) -> str:
        return format_price(obj.last_price)

    @admin.display(description="Volume", ordering="volume")
    def volume_display(self, obj: MarketSnapshot) -> str:
        return format_count(obj.volume)


# --- The simulated exchange's books (paper and replay): read-only, like Kalshi's. --------


@admin.register(SimAccount)
class SimAccountAdmin(ReadOnlyAdmin[SimAccount]):
    list_display = ("name", "cash", "starting_cash", "created_at")
    search_fields = ("name",)


@admin.register(SimOrder)
class SimOrderAdmin(ReadOnlyAdmin[SimOrder]):
    list_display = (
        "order_id",
        "client_order_id",
        "account",
        "ticker",
        "side",
        "action",
        "yes_price",
        "count",
        "filled_count",
        "status",
        "created_time",
    )
    list_filter = ("status", "side", "action", "account")
    search_fields = ("order_id", "client_order_id", "ticker")
    list_select_related = ("account",)
    show_full_result_count = False


@admin.register(SimFill)
class SimFillAdmin(ReadOnlyAdmin[SimFill]):
    list_display = (
        "fill_id",
        "account",
        "ticker",
        "side",
        "action",
        "count",
        "yes_price",
        "fee",
        "executed_at",
    )
    list_filter = ("account", "side", "action")
    search_fields = ("fill_id", "ticker")
    raw_id_fields = ("order",)
    list_select_related = ("account",)
    show_full_result_count = False


@admin.register(SimPosition)
class SimPositionAdmin(ReadOnlyAdmin[SimPosition]):
    list_display = ("account", "ticker", "position", "cost", "realized_pnl", "fees_paid")
    list_filter = ("account",)
    search_fields = ("ticker",)
    list_select_related = ("account",)


@admin.register(SimSettlement)
class SimSettlementAdmin(ReadOnlyAdmin[SimSettlement]):
    list_display = ("account", "ticker", "result", "yes_count", "no_count", "revenue", "settled_at")
    list_filter = ("account", "result")
    search_fields = ("ticker",)
    list_select_related = ("account",)
