"""Our decisions and their consequences: forecasts, decisions, orders, fills, positions,
settlements, limits, trading state, job runs and AI spend.

Money is exact (``markets.money`` fields: Decimal, never float). Invariants that must hold
whatever code writes the row are database constraints. Rows are tagged with the trading
``mode`` they belong to, so paper, replay and live books never mix.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from markets.models import Market
from markets.money import CountField, MoneyField, PriceField, RatioField
from trading.reasons import REASON_CHOICES


class Mode(models.TextChoices):
    REPLAY = "replay", "Replay"
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class Side(models.TextChoices):
    YES = "yes", "YES"
    NO = "no", "NO"


class Action(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


def _fraction(field: str, *, inclusive_low: bool = True, inclusive_high: bool = True) -> Q:
    low = f"{field}__gte" if inclusive_low else f"{field}__gt"
    high = f"{field}__lte" if inclusive_high else f"{field}__lt"
    return Q(**{low: 0, high: 1})


def _price_open(field: str) -> Q:
    return Q(**{f"{field}__gt": 0, f"{field}__lt": 1})


# --- Limits and state -----------------------------------------------------------------------


class RiskSettings(models.Model):
    """The hard limits, one row (pk=1). Every change is audited in ``RiskSettingsChange``.

    Defaults follow the original bot (docs/RISK.md). Fractions are stored as fractions: 0.05 = 5%.
    """

    SINGLETON_PK = 1

    max_position_pct = RatioField(
        default=Decimal("0.05"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Largest cost of one position, as a fraction of equity.",
    )
    max_open_positions = models.PositiveIntegerField(
        default=15, validators=[MaxValueValidator(1000)]
    )
    max_daily_loss_pct = RatioField(
        default=Decimal("0.15"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Kill switch: new entries stop once today's loss reaches this fraction.",
    )
    cash_reserve_pct = RatioField(
        default=Decimal("0.10"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Fraction of equity always kept as cash.",
    )
    max_category_exposure_pct = RatioField(
        default=Decimal("0.30"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    min_volume = CountField(default=Decimal("200"), validators=[MinValueValidator(Decimal("0"))])
    max_days_to_close = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    min_hours_to_close = models.PositiveIntegerField(default=1)
    min_confidence = RatioField(
        default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    edge_high = RatioField(
        default=Decimal("0.06"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Minimum edge after fees when confidence ≥ 0.8.",
    )
    edge_medium = RatioField(
        default=Decimal("0.08"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Minimum edge after fees when confidence ≥ 0.6.",
    )
    edge_low = RatioField(
        default=Decimal("0.12"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Minimum edge after fees at lower confidence.",
    )
    kelly_fraction = RatioField(
        default=Decimal("0.75"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    max_kelly = RatioField(
        default=Decimal("0.25"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Cap on the Kelly fraction of bankroll, before the position-size cap.",
    )
    stop_loss_pct = RatioField(
        default=Decimal("0.30"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    take_profit_pct = RatioField(
        default=Decimal("0.50"), validators=[MinValueValidator(Decimal("0"))]
    )
    max_hold_hours = models.PositiveIntegerField(default=240)
    exit_before_close_hours = models.PositiveIntegerField(default=1)
    reanalyse_minutes = models.PositiveIntegerField(default=60)
    max_contracts_per_order = models.PositiveIntegerField(
        default=1000, validators=[MinValueValidator(1)]
    )
    excluded_categories = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated categories never traded."
    )
    ai_daily_budget = MoneyField(
        default=Decimal("10.00"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="US dollars of language-model spend allowed per UTC day.",
    )
    forecast_ttl_minutes = models.PositiveIntegerField(default=240)
    forecast_price_move = RatioField(
        default=Decimal("0.05"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Re-forecast when the market price moved more than this since the forecast.",
    )
    skill_min_settled = models.PositiveIntegerField(
        default=50,
        help_text=(
            "Settled forecasts a forecaster needs, with positive skill against the market, "
            "before it may open trades; 0 turns the gate off."
        ),
    )
    entry_order_ttl_seconds = models.PositiveIntegerField(
        default=120,
        validators=[MinValueValidator(10), MaxValueValidator(7 * 24 * 3600)],
        help_text=(
            "Seconds an entry order may rest unfilled: sent to the exchange as its expiry, and "
            "cancelled by the first cycle after it (the market is then decided again)."
        ),
    )
    exit_floor_pct = RatioField(
        default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text=(
            "Lowest price a resting exit is re-priced to, as a fraction of the first price of "
            "its chain (0.50 = half of it; 0 = follow the bid all the way). A new exit "
            "signal (e.g. a stop-loss) starts a new chain at the bid."
        ),
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "risk settings"
        verbose_name_plural = "risk settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="risk_settings_single_row"),
            models.CheckConstraint(
                condition=Q(edge_high__lte=F("edge_medium")) & Q(edge_medium__lte=F("edge_low")),
                name="risk_settings_edge_tiers_ordered",
                violation_error_message=(
                    "Edge thresholds must not decrease as confidence falls "
                    "(high ≤ medium ≤ low confidence)."
                ),
            ),
            models.CheckConstraint(
                condition=Q(max_position_pct__gte=0, max_position_pct__lte=1)
                & Q(max_daily_loss_pct__gte=0, max_daily_loss_pct__lte=1)
                & Q(cash_reserve_pct__gte=0, cash_reserve_pct__lte=1)
                & Q(kelly_fraction__gte=0, kelly_fraction__lte=1)
                & Q(ai_daily_budget__gte=0),
                name="risk_settings_fractions_in_range",
            ),
            models.CheckConstraint(
                condition=Q(exit_floor_pct__gte=0, exit_floor_pct__lte=1)
                & Q(entry_order_ttl_seconds__gte=10),
                name="risk_settings_order_lifecycle_in_range",
                violation_error_message=(
                    "The exit floor is a fraction in [0, 1] and entries live at least 10 s."
                ),
            ),
        ]

    def __str__(self) -> str:
        return "Risk settings"

    def clean(self) -> None:
        if not (self.edge_high <= self.edge_medium <= self.edge_low):
            raise ValidationError(
                "Edge thresholds must not decrease as confidence falls "
                "(high ≤ medium ≤ low confidence)."
            )

    @classmethod
    def load(cls) -> RiskSettings:
        """The one row, created with the defaults on first use (AI budget: AI_DAILY_BUDGET)."""
        obj, _ = cls.objects.get_or_create(
            pk=cls.SINGLETON_PK,
            defaults={"ai_daily_budget": settings.AI_DAILY_BUDGET_DEFAULT},
        )
        return obj

    AUDITED_FIELDS = (
        "max_position_pct",
        "max_open_positions",
        "max_daily_loss_pct",
        "cash_reserve_pct",
        "max_category_exposure_pct",
        "min_volume",
        "max_days_to_close",
        "min_hours_to_close",
        "min_confidence",
        "edge_high",
        "edge_medium",
        "edge_low",
        "kelly_fraction",
        "max_kelly",
        "stop_loss_pct",
        "take_profit_pct",
        "max_hold_hours",
        "exit_before_close_hours",
        "reanalyse_minutes",
        "max_contracts_per_order",
        "excluded_categories",
        "ai_daily_budget",
        "forecast_ttl_minutes",
        "forecast_price_move",
        "skill_min_settled",
        "entry_order_ttl_seconds",
        "exit_floor_pct",
    )

    @property
    def excluded_category_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.excluded_categories.split(",") if c.strip())


class RiskSettingsChange(models.Model):
    """Audit trail: who changed which limit, when, from what to what. Append-only."""

    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    field = models.CharField(max_length=64)
    old_value = models.CharField(max_length=500, blank=True)
    new_value = models.CharField(max_length=500, blank=True)
    via = models.CharField(max_length=32, default="admin")

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value} → {self.new_value}"


class TradingState(models.Model):
    """The kill switch, one row (pk=1). Live orders need ``mode=live`` in settings AND ``armed``."""

    SINGLETON_PK = 1

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        REDUCE_ONLY = "reduce_only", "Reduce-only"
        HALTED = "halted", "Halted"

    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    reason = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    live_armed = models.BooleanField(default=False)
    armed_at = models.DateTimeField(null=True, blank=True)
    armed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The replay clock: simulated "now" in replay mode, advanced by each cycle.
    replay_clock = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "trading state"
        # The desk's roles are groups of these (trading.roles); the admin keeps its own
        # model permissions. Changing the limits is the model permission change_risksettings.
        permissions = [
            ("view_dashboard", "Can view every dashboard page"),
            ("operate_trading", "Can halt, pause and resume trading, flatten and cancel"),
            ("arm_live_trading", "Can arm live trading (real orders)"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="trading_state_single_row"),
            models.CheckConstraint(
                condition=~Q(state="halted") | ~Q(reason=""),
                name="trading_state_halt_has_reason",
                violation_error_message="A halt needs a reason.",
            ),
        ]

    def __str__(self) -> str:
        return self.get_state_display()

    @classmethod
    def load(cls) -> TradingState:
        obj, _ = cls.objects.get_or_create(pk=cls.SINGLETON_PK)
        return obj


class TradingStateChange(models.Model):
    """History of state changes (halt, resume, arm, disarm). Append-only."""

    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    old_state = models.CharField(max_length=16, choices=TradingState.State.choices)
    new_state = models.CharField(max_length=16, choices=TradingState.State.choices)
    live_armed = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.old_state} → {self.new_state}"


# --- Jobs -----------------------------------------------------------------------------------


class JobLease(models.Model):
    """A lease row per job name: at most one holder at a time, even across machines.

    Claimed with a conditional UPDATE (``expires_at < now``); ``token`` increases with every
    claim and is the fencing value re-checked before an order is marked SUBMITTING.
    """

    name = models.CharField(max_length=64, unique=True)
    owner = models.CharField(max_length=128, blank=True)
    token = models.BigIntegerField(default=0)
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class JobRun(models.Model):
    """One run of a job: the heartbeat /health/ reads, and what the run did."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (lease held)"
        ABANDONED = "abandoned", "Abandoned (its process died)"

    job = models.CharField(max_length=64, db_index=True)
    # The process running it, "host:pid" (like ``JobLease.owner``): a run whose process is gone
    # is marked abandoned (``trading.services.runs_abandon``).
    owner = models.CharField(max_length=128, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    simulated_now = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["job", "status", "-started_at"]),
            # The few running runs, which every run checks for abandoned ones.
            models.Index(
                fields=["owner"], condition=Q(status="running"), name="jobrun_running_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"

    @property
    def duration(self):  # -> timedelta | None
        return self.finished_at - self.started_at if self.finished_at else None


class DailyCost(models.Model):
    """AI spend per UTC day, updated atomically (``F()``) so every process sees one total."""

    date = models.DateField(unique=True)
    llm_cost = MoneyField(default=Decimal("0"))
    llm_calls = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-date"]
        constraints = [
            models.CheckConstraint(condition=Q(llm_cost__gte=0), name="daily_cost_not_negative")
        ]

    def __str__(self) -> str:
        return f"{self.date}: ${self.llm_cost}"


# --- Forecasts ------------------------------------------------------------------------------


class LLMCall(models.Model):
    """Every language-model call: what was asked, what came back, what it cost."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        INVALID = "invalid", "Invalid output"
        ERROR = "error", "Provider error"
        REFUSED = "refused", "Refused (budget)"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    market = models.ForeignKey(
        Market, null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_calls"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    prompt_version = models.CharField(max_length=32)
    purpose = models.CharField(max_length=32, default="forecast")
    prompt = models.TextField()
    response = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = MoneyField(default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "LLM call"
        constraints = [models.CheckConstraint(condition=Q(cost__gte=0), name="llm_call_cost_ge_0")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.created_at:%Y-%m-%d %H:%M}"


class ForecastQuerySet(models.QuerySet["Forecast"]):
    def valid(self) -> ForecastQuerySet:
        return self.filter(valid=True)

    def scored(self) -> ForecastQuerySet:
        return self.filter(brier__isnull=False)


class Forecast(models.Model):
    """A probability for YES from one forecaster, and, once the market settles, its score."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Indexed by (market, -created_at) in Meta; a cycle writes thousands of forecasts, so no
    # index is kept that a query does not need (the forecaster is aggregated, not looked up).
    market = models.ForeignKey(
        Market, on_delete=models.CASCADE, related_name="forecasts", db_index=False
    )
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    forecaster = models.CharField(max_length=32)
    model = models.CharField(max_length=128, blank=True)
    prompt_version = models.CharField(max_length=32, blank=True)
    valid = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True)
    probability = RatioField(null=True, blank=True)
    confidence = RatioField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    key_factors = models.JSONField(default=list, blank=True)
    market_price = PriceField(null=True, blank=True, help_text="YES mid at forecast time.")
    price_shown = models.BooleanField(default=False, help_text="Was the price in the prompt?")
    expires_at = models.DateTimeField(null=True, blank=True)
    llm_call = models.ForeignKey(
        LLMCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="forecasts"
    )
    # Scores, filled when the market settles yes or no.
    outcome = models.PositiveSmallIntegerField(null=True, blank=True)
    brier = RatioField(null=True, blank=True)
    log_loss = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    market_brier = RatioField(null=True, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    objects = ForecastQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["market", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(probability__isnull=True) | _fraction("probability"),
                name="forecast_probability_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | _fraction("confidence"),
                name="forecast_confidence_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(valid=False) | Q(probability__isnull=False),
                name="forecast_valid_has_probability",
            ),
            models.CheckConstraint(
                condition=Q(outcome__isnull=True) | Q(outcome__in=[0, 1]),
                name="forecast_outcome_0_or_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.forecaster} {self.market_id} p={self.probability}"


# --- Decisions and orders -------------------------------------------------------------------


class Decision(models.Model):
    """One candidate market in one cycle: traded or not, and why, with the numbers."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(default=timezone.now, help_text="Simulated time in replay.")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    run = models.ForeignKey(
        JobRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions"
    )
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="decisions")
    # No index: nothing looks decisions up by forecast (a decision leads to its forecast).
    forecast = models.ForeignKey(
        Forecast,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="decisions",
        db_index=False,
    )
    strategy = models.CharField(max_length=32, default="directional")
    reason = models.CharField(max_length=32, choices=REASON_CHOICES)
    side = models.CharField(max_length=3, choices=Side.choices, blank=True)
    action = models.CharField(max_length=4, choices=Action.choices, blank=True)
    price = PriceField(null=True, blank=True)
    count = CountField(null=True, blank=True)
    edge = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    # The strategy writes every number as a string already; the encoder keeps a Decimal or a
    # datetime from elsewhere (an exit, an operator action) from failing the whole batch.
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at", "-id"]
        # Few indexes: a cycle writes thousands of decisions, and each index is paid per row.
        # created_at (the listings' order, the funnel's day and decide's "analysed recently"
        # window), market and run (the foreign keys looked up) and reason with its newest
        # first (the decisions page's reason filter).
        indexes = [models.Index(fields=["reason", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__isnull=True) | _price_open("price"),
                name="decision_price_in_0_1",
            ),
            models.CheckConstraint(
                condition=Q(count__isnull=True) | Q(count__gt=0), name="decision_count_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.market_id} {self.reason}"


class OrderQuerySet(models.QuerySet["Order"]):
    def blocking(self) -> OrderQuerySet:
        """Orders whose exchange outcome is not known, or resting with a cancel wanted or in
        flight: they block their market until reconciliation (or the cancel) settles them."""
        return self.filter(
            Q(status__in=Order.BLOCKING_STATUSES)
            | (Q(status__in=Order.RESTING_STATUSES) & ~Q(cancel_reason=""))
        )

    def resting(self) -> OrderQuerySet:
        """Accepted by the exchange and not finished: what may still fill."""
        return self.filter(status__in=Order.RESTING_STATUSES)

    def open(self) -> OrderQuerySet:
        return self.filter(status__in=Order.OPEN_STATUSES)


class IllegalTransition(Exception):
    pass


class Order(models.Model):
    """An order intent and its exchange state (docs/ORDER_PROTOCOL.md).

    The row is committed (APPROVED) before anything is sent; ``client_order_id`` is derived
    from the decision, so a retry can never mint a second order. The status moves only along
    ``TRANSITIONS``; an UNKNOWN outcome is resolved only by reconciliation.
    """

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        RISK_REJECTED = "risk_rejected", "Risk-rejected"
        APPROVED = "approved", "Approved"
        SUBMITTING = "submitting", "Submitting"
        ACKED = "acked", "Acknowledged"
        REJECTED = "rejected", "Rejected"
        UNKNOWN = "unknown", "Outcome unknown"
        NOT_PLACED = "not_placed", "Not placed"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELED = "canceled", "Canceled"
        EXPIRED = "expired", "Expired"

    class Purpose(models.TextChoices):
        OPEN = "open", "Entry"
        EXIT = "exit", "Exit"
        FLATTEN = "flatten", "Flatten"
        QUOTE = "quote", "Quote"

    class TimeInForce(models.TextChoices):
        GTC = "good_till_canceled", "Good till canceled"
        IOC = "immediate_or_cancel", "Immediate or cancel"
        FOK = "fill_or_kill", "Fill or kill"

    S = Status
    TRANSITIONS: dict[str, frozenset[str]] = {
        S.PLANNED: frozenset({S.RISK_REJECTED, S.APPROVED}),
        S.RISK_REJECTED: frozenset(),
        S.APPROVED: frozenset({S.SUBMITTING, S.NOT_PLACED}),
        S.SUBMITTING: frozenset(
            {S.ACKED, S.REJECTED, S.UNKNOWN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED}
        ),
        S.UNKNOWN: frozenset({S.ACKED, S.NOT_PLACED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED}),
        S.ACKED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
        S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
        S.REJECTED: frozenset(),
        S.NOT_PLACED: frozenset(),
        S.FILLED: frozenset(),
        S.CANCELED: frozenset(),
        S.EXPIRED: frozenset(),
    }
    BLOCKING_STATUSES = (S.SUBMITTING, S.UNKNOWN)
    RESTING_STATUSES = (S.ACKED, S.PARTIALLY_FILLED)
    OPEN_STATUSES = (S.APPROVED, S.SUBMITTING, S.UNKNOWN, S.ACKED, S.PARTIALLY_FILLED)
    del S

    CLOSING_PURPOSES = (Purpose.EXIT, Purpose.FLATTEN)  # reduce-only sells of a position

    class CancelReason(models.TextChoices):
        ENTRY_TTL = "entry_ttl", "Entry not filled in time"
        REPRICE = "reprice", "Re-priced toward the bid"
        REDUCE_ONLY = "reduce_only", "Reduce-only mode"
        HALT = "halt", "Halt with cancel"
        FLATTEN = "flatten", "Replaced by a flatten"
        EXIT = "exit", "The position is being exited"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="orders")
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.OPEN)
    side = models.CharField(max_length=3, choices=Side.choices)
    action = models.CharField(max_length=4, choices=Action.choices)
    # Kalshi V2 prices every order in YES terms: bid = buy YES / sell NO, ask = sell YES / buy NO.
    yes_price = PriceField()
    count = CountField()
    time_in_force = models.CharField(
        max_length=24, choices=TimeInForce.choices, default=TimeInForce.GTC
    )
    max_cost = MoneyField(null=True, blank=True, help_text="Spend cap for a buy (fees included).")
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.APPROVED, db_index=True
    )
    filled_count = CountField(default=Decimal("0"))
    fees_paid = MoneyField(default=Decimal("0"))
    lease_token = models.BigIntegerField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The lifecycle after the exchange accepts an order (see docs/ORDER_LIFECYCLE.md).
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Entries: when the order stops resting (sent as expiry)."
    )
    cancel_reason = models.CharField(
        max_length=16,
        choices=CancelReason.choices,
        blank=True,
        help_text="Why we want this order cancelled; set before anything is sent.",
    )
    cancel_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Committed just before the one cancel request is sent (exchange time).",
    )
    cancel_error = models.CharField(max_length=500, blank=True)
    replaces = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replaced_by",
        help_text="The resting exit this order re-prices (cancel-and-replace).",
    )

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["market", "status"])]
        constraints = [
            models.CheckConstraint(condition=_price_open("yes_price"), name="order_price_in_0_1"),
            models.CheckConstraint(condition=Q(count__gt=0), name="order_count_positive"),
            models.CheckConstraint(
                condition=Q(filled_count__gte=0) & Q(filled_count__lte=F("count")),
                name="order_filled_within_count",
            ),
            models.CheckConstraint(condition=Q(fees_paid__gte=0), name="order_fees_ge_0"),
            models.CheckConstraint(
                condition=Q(max_cost__isnull=True) | Q(max_cost__gt=0),
                name="order_max_cost_positive",
            ),
            # An order the exchange acknowledged always carries the exchange's id.
            models.CheckConstraint(
                condition=~Q(status__in=["acked", "partially_filled", "filled"])
                | Q(exchange_order_id__isnull=False),
                name="order_acked_has_exchange_id",
            ),
            # A cancel is sent only for a reason recorded first.
            models.CheckConstraint(
                condition=Q(cancel_requested_at__isnull=True) | ~Q(cancel_reason=""),
                name="order_cancel_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return self.client_order_id

    @property
    def book_side(self) -> str:
        """Kalshi V2 ``side``: ``bid`` buys YES (or sells NO); ``ask`` sells YES (or buys NO)."""
        buys_yes = (self.side == Side.YES) == (self.action == Action.BUY)
        return "bid" if buys_yes else "ask"

    @property
    def side_price(self):  # -> Decimal
        """Price per contract of the side traded (the NO price for NO orders)."""
        return self.yes_price if self.side == Side.YES else 1 - self.yes_price

    @classmethod
    def check_transition(cls, old: str, new: str) -> None:
        """Raise ``IllegalTransition`` unless ``old → new`` is in the table."""
        if new not in cls.TRANSITIONS.get(old, frozenset()):
            raise IllegalTransition(f"Order status cannot go from {old!r} to {new!r}")

    def transition(self, new: str, **fields: Any) -> bool:
        """Move to ``new`` with a conditional UPDATE on the current status.

        Returns False when another process changed the status first (nothing written);
        raises ``IllegalTransition`` when the table forbids the move.
        """
        self.check_transition(self.status, new)
        now = timezone.now()
        updated = Order.objects.filter(pk=self.pk, status=self.status).update(
            status=new, updated_at=now, **fields
        )
        if updated == 1:
            self.status = new
            self.updated_at = now
            for name, value in fields.items():
                setattr(self, name, value)
        return updated == 1


class Fill(models.Model):
    """An execution reported by the exchange (or the simulator). Unique by the exchange's id."""

    fill_id = models.CharField(max_length=64, unique=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="fills"
    )
    exchange_order_id = models.CharField(max_length=64, db_index=True)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="fills")
    side = models.CharField(max_length=3, choices=Side.choices)
    action = models.CharField(max_length=4, choices=Action.choices)
    count = CountField()
    yes_price = PriceField()
    fee = MoneyField(default=Decimal("0"))
    is_taker = models.BooleanField(default=True)
    executed_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-executed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(count__gt=0), name="fill_count_positive"),
            models.CheckConstraint(condition=_price_open("yes_price"), name="fill_price_in_0_1"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="fill_fee_ge_0"),
        ]

    def __str__(self) -> str:
        return self.fill_id

    @property
    def side_price(self):  # -> Decimal
        return self.yes_price if self.side == Side.YES else 1 - self.yes_price


class PositionQuerySet(models.QuerySet["Position"]):
    def open(self) -> PositionQuerySet:
        return self.filter(status=Position.Status.OPEN)


class Position(models.Model):
    """Our net position in one market, built from fills only (never from intents).

    ``count`` contracts of ``side``; ``cost_basis`` is what they cost (fees excluded, booked
    in ``fees_paid``); ``realized_pnl`` accumulates closed parts and settlement.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="positions")
    strategy = models.CharField(max_length=32, default="directional")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    side = models.CharField(max_length=3, choices=Side.choices)
    count = CountField(default=Decimal("0"))
    cost_basis = MoneyField(default=Decimal("0"))
    realized_pnl = MoneyField(default=Decimal("0"))
    fees_paid = MoneyField(default=Decimal("0"))
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=32, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = PositionQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mode", "market"],
                condition=Q(status="open"),
                name="position_one_open_per_market",
            ),
            models.CheckConstraint(condition=Q(count__gte=0), name="position_count_ge_0"),
            models.CheckConstraint(condition=Q(cost_basis__gte=0), name="position_cost_ge_0"),
            models.CheckConstraint(condition=Q(fees_paid__gte=0), name="position_fees_ge_0"),
            models.CheckConstraint(
                condition=~Q(status="open") | Q(count__gt=0), name="position_open_has_count"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.market_id} {self.count} {self.side}"

    @property
    def avg_price(self):  # -> Decimal | None
        return (self.cost_basis / self.count) if self.count else None


class Settlement(models.Model):
    """A market's settlement of our position: payout, fees and realized P&L."""

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    market = models.ForeignKey(Market, on_delete=models.PROTECT, related_name="settlements")
    position = models.ForeignKey(
        Position, null=True, blank=True, on_delete=models.SET_NULL, related_name="settlements"
    )
    result = models.CharField(max_length=8, choices=Market.Result.choices)
    yes_count = CountField(default=Decimal("0"))
    no_count = CountField(default=Decimal("0"))
    cost_basis = MoneyField(default=Decimal("0"))
    payout = MoneyField(default=Decimal("0"))
    fee = MoneyField(default=Decimal("0"))
    realized_pnl = MoneyField(default=Decimal("0"))
    settled_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-settled_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mode", "market"], name="settlement_one_per_market"),
            models.CheckConstraint(
                condition=Q(yes_count__gte=0) & Q(no_count__gte=0), name="settlement_counts_ge_0"
            ),
            models.CheckConstraint(
                condition=Q(payout__gte=0) & Q(fee__gte=0), name="settlement_payout_fee_ge_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.market_id} {self.result}"


class AccountSnapshot(models.Model):
    """Cash and equity over time (the equity curve), one row per cycle and mode."""

    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    ts = models.DateTimeField(db_index=True)
    cash = MoneyField()
    equity = MoneyField()
    open_positions = models.PositiveIntegerField(default=0)
    realized_pnl = MoneyField(default=Decimal("0"))
    unrealized_pnl = MoneyField(default=Decimal("0"))

    class Meta:
        ordering = ["-ts", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mode", "ts"], name="account_snapshot_unique_ts")
        ]

    def __str__(self) -> str:
        return f"{self.mode} {self.ts:%Y-%m-%d %H:%M} {self.equity}"


class BacktestRun(models.Model):
    """A stored backtest: its parameters, its figures, and the forecasts it used.

    ``answers`` keeps each forecast (ticker and time → probability, confidence) so a what-if
    run can replay them under other risk settings without calling the model again.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    forecaster = models.CharField(max_length=128)
    data_dir = models.CharField(max_length=500, blank=True)
    reused_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="what_ifs"
    )
    params = models.JSONField(default=dict)
    report = models.JSONField(default=dict)
    answers = models.JSONField(default=dict, blank=True)
    elapsed_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Backtest #{self.pk} ({self.forecaster})"

    @property
    def pnl_after_fees(self) -> str:
        return self.report.get("pnl_after_fees", "")
