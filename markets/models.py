"""Exchange data: series, events, markets, their quotes over time and their results.

Rows here mirror what Kalshi (or the recorded data) says; the trading app never edits them
except through the sync and load services. Prices are dollars per YES contract
(``PriceField``: Decimal, 4 places); a missing quote is NULL, never 0 or 1, so that every
stored price is strictly inside (0, 1).
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from markets.money import CountField, MoneyField, PriceField


def _price_in_open_unit_interval(field: str) -> Q:
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gt": 0, f"{field}__lt": 1})


class Source(models.TextChoices):
    KALSHI = "kalshi", "Kalshi API"
    RECORDED = "recorded", "Recorded data"


class Series(models.Model):
    ticker = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=64, blank=True, db_index=True)
    frequency = models.CharField(max_length=32, blank=True)
    # Kalshi's fee structure for the series (markets.fees): "" / NULL = not known (never
    # fetched, or recorded data), which prices as the default quadratic schedule.
    fee_type = models.CharField(max_length=48, blank=True, default="")
    fee_multiplier = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    fees_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["ticker"]

    def __str__(self) -> str:
        return self.ticker


class Event(models.Model):
    event_ticker = models.CharField(max_length=96, unique=True)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="events")
    title = models.CharField(max_length=255, blank=True)
    sub_title = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=64, blank=True, db_index=True)
    mutually_exclusive = models.BooleanField(default=False)
    strike_date = models.DateTimeField(null=True, blank=True)
    # The event's fee override (each, when set, wins over the series' field).
    fee_type_override = models.CharField(max_length=48, blank=True, default="")
    fee_multiplier_override = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.KALSHI)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["event_ticker"]

    def __str__(self) -> str:
        return self.event_ticker


class MarketQuerySet(models.QuerySet["Market"]):
    def open(self) -> MarketQuerySet:
        """Markets that accept orders now (Kalshi's response status ``active``)."""
        return self.filter(status=Market.Status.ACTIVE)

    def settled(self) -> MarketQuerySet:
        """Markets with a yes/no/scalar/void result."""
        return self.exclude(result="")

    def closing_before(self, moment: datetime) -> MarketQuerySet:
        return self.filter(close_time__lte=moment)


class Market(models.Model):
    class Status(models.TextChoices):
        # Kalshi's response vocabulary (the GetMarkets *filter* uses other words).
        INITIALIZED = "initialized"
        INACTIVE = "inactive"
        ACTIVE = "active"
        CLOSED = "closed"
        DETERMINED = "determined"
        DISPUTED = "disputed"
        AMENDED = "amended"
        FINALIZED = "finalized"

    class MarketType(models.TextChoices):
        BINARY = "binary"
        SCALAR = "scalar"

    class Result(models.TextChoices):
        NONE = "", "Not settled"
        YES = "yes"
        NO = "no"
        SCALAR = "scalar"
        VOID = "void"

    class PriceLevelStructure(models.TextChoices):
        LINEAR_CENT = "linear_cent", "Linear cent ($0.01)"
        TAPERED_DECI_CENT = "tapered_deci_cent", "Tapered deci-cent"
        DECI_CENT = "deci_cent", "Deci-cent ($0.001)"

    ticker = models.CharField(max_length=128, unique=True)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="markets")
    market_type = models.CharField(
        max_length=16, choices=MarketType.choices, default=MarketType.BINARY
    )
    title = models.CharField(max_length=255, blank=True)
    subtitle = models.CharField(max_length=255, blank=True)
    yes_sub_title = models.CharField(max_length=255, blank=True)
    no_sub_title = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    open_time = models.DateTimeField(null=True, blank=True)
    close_time = models.DateTimeField(null=True, blank=True, db_index=True)
    latest_expiration_time = models.DateTimeField(null=True, blank=True)

    # Top of book, dollars per YES contract; NULL = no quote on that side.
    yes_bid = PriceField(null=True, blank=True)
    yes_ask = PriceField(null=True, blank=True)
    no_bid = PriceField(null=True, blank=True)
    no_ask = PriceField(null=True, blank=True)
    last_price = PriceField(null=True, blank=True)
    yes_bid_size = CountField(null=True, blank=True)
    yes_ask_size = CountField(null=True, blank=True)
    volume = CountField(default=0)
    volume_24h = CountField(default=0)
    open_interest = CountField(default=0)

    # The price grid: which prices an order may use.
    price_level_structure = models.CharField(
        max_length=32,
        choices=PriceLevelStructure.choices,
        default=PriceLevelStructure.LINEAR_CENT,
    )
    # [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}, ...] as Kalshi sends it (strings).
    price_ranges = models.JSONField(default=list, blank=True)

    rules_primary = models.TextField(blank=True)
    rules_secondary = models.TextField(blank=True)
    strike_type = models.CharField(max_length=32, blank=True)
    floor_strike = models.DecimalField(max_digits=15, decimal_places=4, null=True, blank=True)
    cap_strike = models.DecimalField(max_digits=15, decimal_places=4, null=True, blank=True)
    can_close_early = models.BooleanField(default=False)
    # No trading fee before this time (Kalshi's ``fee_waiver_expiration_time``).
    fee_waiver_expiration_time = models.DateTimeField(null=True, blank=True)

    # The market's result, once known.
    result = models.CharField(max_length=8, choices=Result.choices, default="", blank=True)
    settlement_value = PriceField(null=True, blank=True)
    settled_time = models.DateTimeField(null=True, blank=True)

    source = models.CharField(max_length=16, choices=Source.choices, default=Source.KALSHI)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = MarketQuerySet.as_manager()

    class Meta:
        ordering = ["close_time", "ticker"]
        indexes = [models.Index(fields=["status", "close_time"])]
        constraints = [
            *[
                models.CheckConstraint(
                    condition=_price_in_open_unit_interval(field), name=f"market_{field}_in_0_1"
                )
                for field in ("yes_bid", "yes_ask", "no_bid", "no_ask", "last_price")
            ],
            models.CheckConstraint(
                condition=Q(settlement_value__isnull=True)
                | Q(settlement_value__gte=0, settlement_value__lte=1),
                name="market_settlement_value_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(volume__gte=0) & Q(volume_24h__gte=0) & Q(open_interest__gte=0),
                name="market_counts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.ticker

    def fee_schedule(self):  # -> markets.fees.FeeSchedule
        """This market's fee schedule (reads its event and series: select_related them)."""
        from markets.fees import schedule_for

        event, series = self.event, self.event.series
        return schedule_for(
            fee_type=series.fee_type,
            multiplier=series.fee_multiplier,
            fee_type_override=event.fee_type_override,
            multiplier_override=event.fee_multiplier_override,
            waived_until=self.fee_waiver_expiration_time,
        )

    @property
    def is_settled(self) -> bool:
        return bool(self.result)

    @property
    def mid_price(self):  # -> Decimal | None
        """Midpoint of the YES bid and ask, or the one side that exists."""
        if self.yes_bid is not None and self.yes_ask is not None:
            return (self.yes_bid + self.yes_ask) / 2
        return self.yes_bid if self.yes_bid is not None else self.yes_ask


class MarketSnapshotQuerySet(models.QuerySet["MarketSnapshot"]):
    def as_of(self, moment: datetime) -> MarketSnapshotQuerySet:
        """Snapshots observed at or before ``moment`` (replay must never see later ones)."""
        return self.filter(ts__lte=moment)


class MarketSnapshot(models.Model):
    """One observation of a market's quote. Append-only; unique per (market, ts)."""

    market = models.ForeignKey(Market, on_delete=models.CASCADE, related_name="snapshots")
    ts = models.DateTimeField()
    yes_bid = PriceField(null=True, blank=True)
    yes_ask = PriceField(null=True, blank=True)
    no_bid = PriceField(null=True, blank=True)
    no_ask = PriceField(null=True, blank=True)
    last_price = PriceField(null=True, blank=True)
    volume = CountField(null=True, blank=True)
    open_interest = CountField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.KALSHI)

    objects = MarketSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["market_id", "ts"]
        constraints = [
            models.UniqueConstraint(fields=["market", "ts"], name="snapshot_unique_market_ts"),
            *[
                models.CheckConstraint(
                    condition=_price_in_open_unit_interval(field), name=f"snapshot_{field}_in_0_1"
                )
                for field in ("yes_bid", "yes_ask", "no_bid", "no_ask", "last_price")
            ],
        ]
        indexes = [models.Index(fields=["ts"])]

    def __str__(self) -> str:
        return f"{self.market_id}@{self.ts:%Y-%m-%d %H:%M}"


# --- The simulated exchange's own books (paper and replay) ---------------------------------
# The simulator is an exchange like Kalshi: it keeps its own ledger, which the trading app
# reconciles against exactly as it would against Kalshi's. These tables are never written by
# the trading app.


class SimAccount(models.Model):
    """A simulated wallet: ``paper``, ``replay``, or one per backtest run."""

    name = models.CharField(max_length=64, unique=True)
    cash = MoneyField()
    starting_cash = MoneyField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "simulated account"
        constraints = [models.CheckConstraint(condition=Q(cash__gte=0), name="sim_cash_ge_0")]

    def __str__(self) -> str:
        return self.name


class SimOrder(models.Model):
    """Every order the simulator accepted: the oracle for duplicate-order tests."""

    class Status(models.TextChoices):
        RESTING = "resting"
        CANCELED = "canceled"
        EXECUTED = "executed"

    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="orders")
    order_id = models.CharField(max_length=64, unique=True)
    client_order_id = models.CharField(max_length=64, db_index=True)
    ticker = models.CharField(max_length=128, db_index=True)
    side = models.CharField(max_length=3)
    action = models.CharField(max_length=4)
    yes_price = PriceField()
    count = CountField()
    filled_count = CountField(default=0)
    fees = MoneyField(default=0)
    reduce_only = models.BooleanField(default=False)
    max_cost = MoneyField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESTING)
    created_time = models.DateTimeField()
    # How it rests (markets.matching): its time in force and expiry, the contracts queued
    # ahead of it at its price, and the trades and book version it has already been matched to.
    time_in_force = models.CharField(max_length=24, default="good_till_canceled")
    post_only = models.BooleanField(default=False)
    expiration_time = models.DateTimeField(null=True, blank=True)
    queue_ahead = CountField(default=0)
    seen_until = models.DateTimeField(null=True, blank=True)
    seen_version = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["created_time", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(count__gt=0), name="sim_order_count_positive"),
            models.CheckConstraint(
                condition=Q(yes_price__gt=0, yes_price__lt=1), name="sim_order_price_in_0_1"
            ),
        ]

    def __str__(self) -> str:
        return self.order_id


class SimBook(models.Model):
    """The liquidity our orders took from one market's displayed book (``matching.Taken``):
    it stays taken until the book changes."""

    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="books")
    ticker = models.CharField(max_length=128)
    taken = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "ticker"], name="sim_book_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.ticker}"


class SimFill(models.Model):
    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="fills")
    order = models.ForeignKey(SimOrder, on_delete=models.CASCADE, related_name="fills")
    fill_id = models.CharField(max_length=64, unique=True)
    ticker = models.CharField(max_length=128, db_index=True)
    side = models.CharField(max_length=3)
    action = models.CharField(max_length=4)
    count = CountField()
    yes_price = PriceField()
    fee = MoneyField(default=0)
    is_taker = models.BooleanField(default=True)
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["executed_at", "id"]

    def __str__(self) -> str:
        return self.fill_id


class SimPosition(models.Model):
    """Net position: positive = YES contracts, negative = NO; ``cost`` of what is held."""

    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="positions")
    ticker = models.CharField(max_length=128)
    position = CountField(default=0)
    cost = MoneyField(default=0)
    realized_pnl = MoneyField(default=0)
    fees_paid = MoneyField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "ticker"], name="sim_position_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.ticker} {self.position}"


class SimSettlement(models.Model):
    account = models.ForeignKey(SimAccount, on_delete=models.CASCADE, related_name="settlements")
    ticker = models.CharField(max_length=128)
    result = models.CharField(max_length=8)
    yes_count = CountField(default=0)
    no_count = CountField(default=0)
    revenue = MoneyField(default=0)
    fee = MoneyField(default=0)
    settled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "ticker"], name="sim_settlement_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.ticker} {self.result}"
