"""The dashboard's reads: one function per page part, each a fixed number of queries.

Every function here runs the same number of queries whatever the amount of data (lists are
paginated or capped, related rows come with ``select_related``, totals are aggregated in the
database). The results are plain values, lists and model instances, never lazy querysets, so
the views can cache them (``dashboard.cache``).

These would be queryset methods on the models; they live here because the
dashboard only reads, and the models belong to the apps below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    Avg,
    Case,
    Count,
    DateTimeField,
    DecimalField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone

from dashboard import charts
from markets.models import Market, MarketSnapshot, Series
from trading.models import (
    AccountSnapshot,
    DailyCost,
    Decision,
    Fill,
    Forecast,
    JobRun,
    Order,
    Position,
    RiskSettings,
    RiskSettingsChange,
    Settlement,
    TradingState,
    TradingStateChange,
)
from trading.reasons import Reason
from trading.scoring import brier_skill

PAGE_SIZE = 50
ZERO = Decimal(0)


# --- Shared ---------------------------------------------------------------------------------


def live_state(*, heartbeat: bool = False, risk: bool = False) -> TradingState:
    """The kill-switch row, read live, with what a page must also read live, in one query.

    ``heartbeat`` adds ``last_heartbeat`` (the newest job heartbeat), ``risk`` adds
    ``risk_updated_at`` (when the limits row last changed). Every dashboard page runs this on
    every request, so it is one plain statement (``raw``: about half the time the ORM takes to
    build the same query). Without a saved state row (a new installation) the default row gets
    the same attributes from their own queries.
    """
    quote = connection.ops.quote_name
    columns = ["s.*"]
    params: list[Any] = []
    if heartbeat:
        table = quote(JobRun._meta.db_table)
        columns.append(f"(SELECT max(j.heartbeat_at) FROM {table} j) AS last_heartbeat")
    if risk:
        table = quote(RiskSettings._meta.db_table)
        columns.append(f"(SELECT r.updated_at FROM {table} r WHERE r.id = %s) AS risk_updated_at")
        params.append(RiskSettings.SINGLETON_PK)
    params.append(TradingState.SINGLETON_PK)
    sql = f"SELECT {', '.join(columns)} FROM {quote(TradingState._meta.db_table)} s WHERE s.id = %s"
    state = next(iter(TradingState.objects.raw(sql, params)), None)
    if state is None:
        state = TradingState()
        if heartbeat:
            state.last_heartbeat = JobRun.objects.aggregate(last=Max("heartbeat_at"))["last"]
        if risk:
            state.risk_updated_at = (
                RiskSettings.objects.filter(pk=RiskSettings.SINGLETON_PK)
                .values_list("updated_at", flat=True)
                .first()
            )
        return state
    # The extra columns come back as the database gives them (text on SQLite): as the ORM would.
    for name in ("last_heartbeat", "risk_updated_at"):
        if hasattr(state, name):
            setattr(state, name, _datetime(getattr(state, name)))
    return state


_DATETIME = DateTimeField()


def _datetime(value: Any) -> datetime | None:
    value = _DATETIME.to_python(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def risk_settings() -> RiskSettings:
    """The limits row; an unsaved row with the defaults when none was saved yet."""
    return RiskSettings.objects.filter(pk=RiskSettings.SINGLETON_PK).first() or RiskSettings()


def mode_now(mode: str, state: TradingState) -> datetime:
    """ "Now" for the books of ``mode``: the replay clock in replay, wall time otherwise."""
    if mode == "replay" and state.replay_clock is not None:
        return state.replay_clock
    return timezone.now()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time()).replace(
        tzinfo=timezone.get_current_timezone()
    )
    return start, start + timedelta(days=1)


@dataclass
class Page:
    """One page of a list, materialised (picklable, unlike a Paginator page)."""

    rows: list[Any]
    number: int
    count: int
    per_page: int

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def start_index(self) -> int:
        return 0 if not self.count else (self.number - 1) * self.per_page + 1

    @property
    def end_index(self) -> int:
        return min(self.number * self.per_page, self.count)


def paginate(queryset: QuerySet[Any], number: int, per_page: int = PAGE_SIZE) -> Page:
    """Two queries: the count, then the rows of page ``number`` (clamped to the last page)."""
    count = queryset.count()
    last = max(1, -(-count // per_page))
    number = min(max(number, 1), last)
    offset = (number - 1) * per_page
    rows = list(queryset[offset : offset + per_page]) if count else []
    return Page(rows, number, count, per_page)


def _marks(queryset: QuerySet[Position], now: datetime) -> QuerySet[Position]:
    """Annotate each position with its market's latest quote at ``now`` (for the mark)."""
    latest = MarketSnapshot.objects.filter(market=OuterRef("market"), ts__lte=now).order_by("-ts")
    return queryset.annotate(
        mark_yes_bid=Subquery(latest.values("yes_bid")[:1]),
        mark_yes_ask=Subquery(latest.values("yes_ask")[:1]),
        mark_no_bid=Subquery(latest.values("no_bid")[:1]),
        mark_last=Subquery(latest.values("last_price")[:1]),
    )


def position_mark(position: Position) -> Decimal | None:
    """What one contract of the position is worth now: the bid of its side, or, where the
    quote has no bid (recorded data often has only trades), the last price of its side."""
    last = getattr(position, "mark_last", None)
    if position.side == "yes":
        bid = getattr(position, "mark_yes_bid", None)
        return bid if bid is not None else last
    no_bid = getattr(position, "mark_no_bid", None)
    if no_bid is not None:
        return no_bid
    yes_ask = getattr(position, "mark_yes_ask", None)
    if yes_ask is not None:
        return 1 - yes_ask
    return None if last is None else 1 - last


def _with_marks(positions: list[Position]) -> list[Position]:
    for position in positions:
        mark = position_mark(position) if position.status == Position.Status.OPEN else None
        position.mark = mark  # type: ignore[attr-defined]
        position.unrealized = (  # type: ignore[attr-defined]
            None if mark is None else position.count * mark - position.cost_basis
        )
    return positions


# --- Overview -------------------------------------------------------------------------------

OPEN_POSITIONS_SHOWN = 25
BLOCKING_SHOWN = 10
JOB_RUNS_SHOWN = 8


def overview(mode: str, now: datetime) -> dict[str, Any]:
    """Balance, equity curve, P&L, open positions, AI spend, job runs and order alerts."""
    snapshots = AccountSnapshot.objects.filter(mode=mode)
    latest = snapshots.order_by("-ts").first()
    day_start, _ = day_bounds(timezone.localtime(now).date())
    opening = (
        snapshots.filter(ts__gte=day_start, ts__lte=now)
        .order_by("ts")
        .values_list("equity", flat=True)
        .first()
    )
    closed = Q(status=Position.Status.CLOSED)
    books = Position.objects.filter(mode=mode).aggregate(
        realized=Sum("realized_pnl", default=ZERO),
        fees=Sum("fees_paid", default=ZERO),
        open_count=Count("id", filter=Q(status=Position.Status.OPEN)),
        closed_count=Count("id", filter=closed),
        wins=Count("id", filter=closed & Q(realized_pnl__gt=0)),
    )
    settled = Settlement.objects.filter(mode=mode).aggregate(
        count=Count("id"), pnl=Sum("realized_pnl", default=ZERO)
    )
    positions = _marks(Position.objects.open().filter(mode=mode).select_related("market"), now)
    blocking = Order.objects.blocking().filter(mode=mode).select_related("market")
    return {
        "latest": latest,
        "pnl_today": (latest.equity - opening) if latest and opening is not None else None,
        "books": books,
        "settled": settled,
        "equity_chart": charts.equity_curve(
            list(snapshots.order_by("ts").values_list("ts", "equity", "cash"))
        ),
        "open_positions": _with_marks(
            list(positions.order_by("-opened_at")[:OPEN_POSITIONS_SHOWN])
        ),
        "blocking_orders": list(blocking.order_by("created_at")[: BLOCKING_SHOWN + 1]),
        "blocking_shown": BLOCKING_SHOWN,
        "job_runs": list(JobRun.objects.order_by("-started_at", "-id")[:JOB_RUNS_SHOWN]),
    }


def ai_spend(today: date) -> dict[str, Any]:
    """Today's language-model spend against the daily budget (UTC days, wall time)."""
    cost = DailyCost.objects.filter(date=today).first()
    budget = risk_settings().ai_daily_budget
    spent = cost.llm_cost if cost else ZERO
    return {
        "spent": spent,
        "budget": budget,
        "calls": cost.llm_calls if cost else 0,
        "used": (spent / budget) if budget else None,
    }


def heartbeat(last: datetime | None) -> dict[str, Any]:
    """The newest job heartbeat (``live_state(heartbeat=True).last_heartbeat``) and whether it
    is stale by now."""
    limit = timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS)
    age = timezone.now() - last if last else None
    return {"last": last, "age": age, "limit": limit, "stale": age is None or age > limit}


# --- Markets --------------------------------------------------------------------------------


def market_filter_choices() -> dict[str, list[str]]:
    """Distinct categories and the series tickers, for the filter form."""
    categories = (
        Market.objects.exclude(category="")
        .order_by("category")
        .values_list("category", flat=True)
        .distinct()
    )
    return {
        "categories": list(categories),
        "series": list(Series.objects.order_by("ticker").values_list("ticker", flat=True)),
    }


def _exact(queryset: QuerySet, filters: dict[str, Any], *names: str) -> QuerySet:
    """``queryset`` narrowed to each filter of ``names`` that is set (an exact match)."""
    for name in names:
        if filters.get(name):
            queryset = queryset.filter(**{name: filters[name]})
    return queryset


def markets_page(filters: dict[str, Any], number: int, now: datetime) -> Page:
    queryset = Market.objects.select_related("event__series").order_by("close_time", "ticker")
    if filters.get("q"):
        q = filters["q"]
        queryset = queryset.filter(Q(ticker__icontains=q) | Q(title__icontains=q))
    queryset = _exact(queryset, filters, "status", "category")
    if filters.get("series"):
        queryset = queryset.filter(event__series__ticker=filters["series"])
    if filters.get("closing"):
        queryset = queryset.filter(
            close_time__gt=now, close_time__lte=now + timedelta(hours=int(filters["closing"]))
        )
    if filters.get("min_volume") is not None:
        queryset = queryset.filter(volume__gte=filters["min_volume"])
    return paginate(queryset, number)


ROWS_ON_DETAIL = 50


def market_detail(market: Market) -> dict[str, Any]:
    """A market's price history chart, forecasts, decisions, orders, positions, settlement."""
    history = MarketSnapshot.objects.filter(market=market).order_by("ts")
    forecasts = list(market.forecasts.order_by("-created_at", "-id")[:ROWS_ON_DETAIL])
    snapshot_count = history.count()
    return {
        "chart": charts.price_history(
            list(history.values_list("ts", "yes_bid", "yes_ask", "last_price")),
            [(f.created_at, f.probability) for f in forecasts],
        ),
        "snapshot_count": snapshot_count,
        "forecasts": forecasts,
        "decisions": list(
            market.decisions.select_related("forecast").order_by("-created_at", "-id")[
                :ROWS_ON_DETAIL
            ]
        ),
        "orders": list(market.orders.order_by("-created_at", "-id")[:ROWS_ON_DETAIL]),
        "positions": list(market.positions.order_by("-opened_at", "-id")[:ROWS_ON_DETAIL]),
        "settlements": list(market.settlements.order_by("-settled_at")),
    }


# --- Decisions ------------------------------------------------------------------------------


def decisions_page(filters: dict[str, Any], number: int) -> Page:
    queryset = Decision.objects.select_related("market", "forecast").order_by("-created_at", "-id")
    queryset = _exact(queryset, filters, "mode", "reason", "strategy", "run")
    if filters.get("day"):
        start, end = day_bounds(filters["day"])
        queryset = queryset.filter(created_at__gte=start, created_at__lt=end)
    if filters.get("q"):
        queryset = queryset.filter(market__ticker__icontains=filters["q"])
    return paginate(queryset, number)


def decision_detail(decision: Decision) -> dict[str, Any]:
    """Everything that followed a decision: its orders and fills, the position, its exits and
    their orders, the settlement."""
    orders = list(decision.orders.order_by("created_at", "id"))
    fills = list(
        Fill.objects.filter(order__decision=decision)
        .select_related("order", "market")
        .order_by("executed_at", "id")
    )
    books = Position.objects.filter(mode=decision.mode, market=decision.market_id).select_related(
        "market"
    )
    if decision.reason == Reason.EXIT:
        position = books.filter(opened_at__lte=decision.decided_at).order_by("-opened_at").first()
    elif orders:
        position = books.filter(opened_at__gte=decision.decided_at).order_by("opened_at").first()
    else:
        position = None
    exits: list[Decision] = []
    exit_orders: list[Order] = []
    if position is not None and decision.reason != Reason.EXIT:
        window = Q(decided_at__gte=position.opened_at)
        if position.closed_at:
            window &= Q(decided_at__lte=position.closed_at)
        exits_query = Decision.objects.filter(
            window, mode=decision.mode, market=decision.market_id, reason=Reason.EXIT
        ).order_by("decided_at", "id")[:20]
        exits = list(exits_query)
        # A subquery, not a list of ids: the same one query whether there were exits or not.
        exit_orders = list(
            Order.objects.filter(decision__in=exits_query.values("pk")).order_by("created_at", "id")
        )
    settlement = Settlement.objects.filter(mode=decision.mode, market=decision.market_id).first()
    return {
        "orders": orders,
        "fills": fills,
        "position": position,
        "position_rows": [position] if position else [],
        "exits": exits,
        "exit_orders": exit_orders,
        "settlement": settlement,
    }


# --- Positions, orders, fills ---------------------------------------------------------------


def positions_with_marks(now: datetime) -> QuerySet[Position]:
    """Positions with their market and the quote as of ``now`` (see ``position_mark``)."""
    return _marks(Position.objects.select_related("market"), now)


def position_detail(position: Position) -> dict[str, Any]:
    """One position's mark, and the orders, fills and decisions of its market and mode."""
    _with_marks([position])
    books = {"mode": position.mode, "market": position.market_id}
    return {
        "orders": list(
            Order.objects.filter(**books)
            .select_related("market")
            .order_by("-created_at", "-id")[:ROWS_ON_DETAIL]
        ),
        "fills": list(
            Fill.objects.filter(**books)
            .select_related("market", "order")
            .order_by("-executed_at", "-id")[:ROWS_ON_DETAIL]
        ),
        "decisions": list(
            Decision.objects.filter(**books)
            .select_related("market", "forecast")
            .order_by("-created_at", "-id")[:ROWS_ON_DETAIL]
        ),
    }


def positions_page(filters: dict[str, Any], number: int, now: datetime) -> Page:
    queryset = positions_with_marks(now).order_by("-opened_at", "-id")
    queryset = _exact(queryset, filters, "mode", "status", "strategy")
    if filters.get("q"):
        queryset = queryset.filter(market__ticker__icontains=filters["q"])
    page = paginate(queryset, number)
    _with_marks(page.rows)
    return page


def orders_page(filters: dict[str, Any], number: int) -> Page:
    queryset = Order.objects.select_related("market").order_by("-created_at", "-id")
    queryset = _exact(queryset, filters, "mode", "status", "purpose", "side")
    if filters.get("q"):
        queryset = queryset.filter(
            Q(market__ticker__icontains=filters["q"]) | Q(client_order_id__icontains=filters["q"])
        )
    return paginate(queryset, number)


def fills_page(filters: dict[str, Any], number: int) -> Page:
    queryset = Fill.objects.select_related("market", "order").order_by("-executed_at", "-id")
    queryset = _exact(queryset, filters, "mode", "side", "action")
    if filters.get("q"):
        queryset = queryset.filter(market__ticker__icontains=filters["q"])
    return paginate(queryset, number)


# --- Performance ----------------------------------------------------------------------------


def _pnl_groups(queryset: QuerySet[Position], key: str) -> list[dict[str, Any]]:
    closed = Q(status=Position.Status.CLOSED)
    rows = list(
        queryset.values(key)
        .annotate(
            positions=Count("id"),
            open=Count("id", filter=Q(status=Position.Status.OPEN)),
            closed=Count("id", filter=closed),
            wins=Count("id", filter=closed & Q(realized_pnl__gt=0)),
            realized=Sum("realized_pnl", default=ZERO),
            fees=Sum("fees_paid", default=ZERO),
        )
        .order_by("-realized", key)
    )
    for row in rows:
        row["name"] = row.pop(key) or "—"
        row["win_rate"] = Decimal(row["wins"]) / row["closed"] if row["closed"] else None
    return rows


def performance(mode: str) -> dict[str, Any]:
    """Realized P&L and win rate by strategy, category and forecaster; the drawdown chart."""
    positions = Position.objects.filter(mode=mode)
    opening_forecaster = Order.objects.filter(
        market=OuterRef("market"), mode=OuterRef("mode"), purpose=Order.Purpose.OPEN
    ).order_by("created_at", "id")
    with_forecaster = positions.annotate(
        forecaster=Subquery(opening_forecaster.values("decision__forecast__forecaster")[:1])
    )
    closed = Q(status=Position.Status.CLOSED)
    totals = positions.aggregate(
        positions=Count("id"),
        closed=Count("id", filter=closed),
        wins=Count("id", filter=closed & Q(realized_pnl__gt=0)),
        realized=Sum("realized_pnl", default=ZERO),
        fees=Sum("fees_paid", default=ZERO),
    )
    totals["win_rate"] = Decimal(totals["wins"]) / totals["closed"] if totals["closed"] else None
    equity = AccountSnapshot.objects.filter(mode=mode).order_by("ts").values_list("ts", "equity")
    return {
        "totals": totals,
        "by_strategy": _pnl_groups(positions, "strategy"),
        "by_category": _pnl_groups(positions, "market__category"),
        "by_forecaster": _pnl_groups(with_forecaster, "forecaster"),
        "drawdown": charts.drawdown(equity.iterator(chunk_size=5000)),
    }


# --- Forecast calibration -------------------------------------------------------------------

BIN_EDGES = [Decimal(i) / 10 for i in range(1, 10)]


def _bin_case() -> Case:
    """Bin index 0..9 of ``probability`` as in trading.scoring (1.0 falls in the last bin)."""
    return Case(
        *[When(probability__lt=edge, then=index) for index, edge in enumerate(BIN_EDGES)],
        default=len(BIN_EDGES),
        output_field=IntegerField(),
    )


def calibration(forecaster: str | None) -> dict[str, Any]:
    """Reliability table, Brier of the forecaster and of the market, per forecaster and day,
    from the scored forecasts (works with none)."""
    scored = Forecast.objects.scored().filter(probability__isnull=False, outcome__isnull=False)
    forecasters = list(
        scored.values("forecaster")
        .annotate(
            count=Count("id"),
            brier=_avg("brier"),
            market_brier=_avg("market_brier"),
            log_loss=_avg("log_loss"),
        )
        .order_by("forecaster")
    )
    if forecaster:
        scored = scored.filter(forecaster=forecaster)
    per_bin = {
        row["bin"]: row
        for row in scored.annotate(bin=_bin_case())
        .values("bin")
        .annotate(count=Count("id"), p_sum=Sum("probability"), yes=Sum("outcome"))
        .order_by("bin")
    }
    bins = []
    for index in range(10):
        row = per_bin.get(index)
        count = row["count"] if row else 0
        bins.append(
            {
                "lower": Decimal(index) / 10,
                "upper": Decimal(index + 1) / 10,
                "count": count,
                "mean_forecast": (_q(Decimal(row["p_sum"]) / count) if count else None),
                "observed_rate": (_q(Decimal(row["yes"]) / count) if count else None),
            }
        )
    by_day = list(
        scored.annotate(day=TruncDate("scored_at"))
        .values("day")
        .annotate(count=Count("id"), brier=_avg("brier"), market_brier=_avg("market_brier"))
        .order_by("day")
    )
    by_day = [r for r in by_day if r["day"] is not None]
    overall = scored.aggregate(
        count=Count("id"), brier=_avg("brier"), market_brier=_avg("market_brier")
    )
    overall["skill"] = (
        brier_skill(overall["brier"], overall["market_brier"])
        if overall["count"] and overall["market_brier"] is not None
        else None
    )
    for row in forecasters:
        row["skill"] = (
            brier_skill(row["brier"], row["market_brier"])
            if row["market_brier"] is not None
            else None
        )
    return {
        "forecasters": forecasters,
        "bins": bins,
        "overall": overall,
        "reliability_chart": charts.reliability(bins),
        "brier_chart": charts.brier_over_time(by_day),
        "by_day": by_day,
    }


def _q(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.000001"))


def _avg(field: str) -> Avg:
    """The mean of a score column, read back as a 6-place Decimal."""
    return Avg(field, output_field=DecimalField(max_digits=12, decimal_places=6))


def forecaster_names() -> list[str]:
    return list(
        Forecast.objects.order_by("forecaster").values_list("forecaster", flat=True).distinct()
    )


# --- Decision funnel ------------------------------------------------------------------------

RUNS_SHOWN = 12


def funnel(mode: str, day: date) -> dict[str, Any]:
    """Decisions per reason on ``day``, and per reason for each of the day's last cycles."""
    start, end = day_bounds(day)
    decisions = Decision.objects.filter(mode=mode, created_at__gte=start, created_at__lt=end)
    totals = list(decisions.values("reason").annotate(n=Count("id")).order_by("-n", "reason"))
    run_ids = list(
        decisions.filter(run__isnull=False)
        .order_by("-run_id")
        .values_list("run_id", flat=True)
        .distinct()[:RUNS_SHOWN]
    )
    cells = (
        decisions.filter(run_id__in=run_ids)
        .values("run_id", "reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    runs = JobRun.objects.in_bulk(run_ids)
    matrix: dict[int, dict[str, int]] = {run_id: {} for run_id in run_ids}
    for cell in cells:
        matrix[cell["run_id"]][cell["reason"]] = cell["n"]
    reasons = [row["reason"] for row in totals]
    return {
        "total": sum(row["n"] for row in totals),
        "traded": sum(row["n"] for row in totals if row["reason"] == Reason.TRADED),
        "totals": totals,
        "runs": [
            {
                "run": runs.get(run_id),
                "run_id": run_id,
                "counts": [matrix[run_id].get(reason, 0) for reason in reasons],
                "total": sum(matrix[run_id].values()),
            }
            for run_id in run_ids
        ],
        "reasons": reasons,
    }


# --- Settings -------------------------------------------------------------------------------


def settings_history() -> dict[str, Any]:
    return {
        "risk_changes": list(
            RiskSettingsChange.objects.select_related("changed_by").order_by("-changed_at", "-id")[
                :25
            ]
        ),
        "state_changes": list(
            TradingStateChange.objects.select_related("changed_by").order_by("-changed_at", "-id")[
                :15
            ]
        ),
    }
