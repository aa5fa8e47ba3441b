"""The trading engine's services: decide, execute, reconcile, track and the full cycle.

Jobs, commands and tests all call these functions. Collaborators (the exchange,
the forecaster, the clock) are passed in. The execution protocol (docs/ORDER_PROTOCOL.md):

1. decide writes the order intent (``Order`` APPROVED, ``client_order_id`` derived from the
   decision) in the same transaction as its ``Decision``;
2. execute checks the gates, marks the order SUBMITTING (committed), sends it **once**, and
   records ACKED / REJECTED, or UNKNOWN when the outcome cannot be known;
3. only reconcile resolves SUBMITTING / UNKNOWN, by finding the ``client_order_id`` in the
   exchange's orders (ACKED) or, after a grace period, not finding it (NOT_PLACED). Never a
   blind retry. An order of unknown outcome blocks new orders on its market.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.logging import redact
from markets import bulk
from markets.exchange import (
    DuplicateOrder,
    Exchange,
    ExchangeAuthError,
    ExchangeError,
    ExchangePosition,
    MarketQuote,
    OrderRejected,
    OrderRequest,
)
from markets.fees import DEFAULT_FEES, order_fee
from markets.models import Market
from markets.money import MONEY_QUANTUM, PRICE_QUANTUM, ZERO
from markets.services import market_store
from trading import ledger, strategy
from trading.audit import trading_state_set
from trading.forecasters import Forecaster
from trading.models import (
    AccountSnapshot,
    Decision,
    Fill,
    Forecast,
    JobLease,
    JobRun,
    Order,
    Position,
    RiskSettings,
    Settlement,
    TradingState,
)
from trading.reasons import Reason

logger = logging.getLogger(__name__)

CLIENT_ORDER_PREFIX = "kd"
LEASE_NAME = "trading-cycle"
UNKNOWN_GRACE = timedelta(seconds=60)  # exchange time an order must be absent before NOT_PLACED
RECONCILE_MAX_AGE = timedelta(minutes=10)


def _crash_point(name: str) -> None:
    """Fault-injection hook for the kill tests: SIGKILL this process at a named step."""
    if os.environ.get("KD_CRASH_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# --- Limits, state, leases -----------------------------------------------------------------


def risk_limits() -> strategy.RiskLimits:
    """The hard limits in force now, from the audited ``RiskSettings`` row."""
    return strategy.RiskLimits.from_object(RiskSettings.load())


def halt(reason: str, user=None, *, cancel_orders: bool = False) -> TradingState:
    """The kill switch: no order is sent until an operator resumes trading.

    The halt is stored first and logged after, so "Trading halted" is never logged for a halt
    that did not happen; any reason is accepted (``trading.audit.state_reason``).

    ``cancel_orders`` then also withdraws every intent not yet sent and asks to cancel every
    order resting on the exchange (``orders_cancel_all``; cancels still go out while halted).
    That step comes after the halt is committed: if it fails, trading stays halted.
    """
    try:
        state = trading_state_set(state=TradingState.State.HALTED, reason=reason, user=user)
    except Exception:
        logger.critical("Halting trading FAILED (reason: %s)", redact(str(reason)[:500]))
        raise
    logger.warning("Trading halted: %s", state.reason)
    if cancel_orders:
        with transaction.atomic():
            asked = orders_cancel_all(reason=Order.CancelReason.HALT)
        logger.warning("Halt: %d orders to cancel", asked)
    return state


def lease_acquire(name: str, *, owner: str, ttl: timedelta | None = None) -> int | None:
    """Claim the lease ``name`` if it is free or expired, or held by a process that is provably
    dead (``holder_dead``); return the fencing token, or None while a live holder has it."""
    ttl = ttl or timedelta(seconds=settings.TRADING_LEASE_TTL_SECONDS)
    now = timezone.now()
    try:
        JobLease.objects.get_or_create(name=name, defaults={"expires_at": now - timedelta(1)})
    except IntegrityError:  # another process created it first
        pass
    claim = {"owner": owner, "token": F("token") + 1, "acquired_at": now, "expires_at": now + ttl}
    claimed = JobLease.objects.filter(name=name, expires_at__lt=now).update(**claim)
    if claimed != 1:
        held = JobLease.objects.filter(name=name).values("owner", "token").first()
        if held is None or not holder_dead(held["owner"]):
            return None
        # Taken over only from that very holder and claim (token): never from a newer one.
        claimed = JobLease.objects.filter(name=name, **held).update(**claim)
        if claimed != 1:
            return None
        logger.warning("Lease %s: its holder %s is gone; taken over", name, held["owner"])
    return JobLease.objects.values_list("token", flat=True).get(name=name)


def lease_held(name: str, token: int) -> bool:
    return JobLease.objects.filter(name=name, token=token, expires_at__gt=timezone.now()).exists()


def lease_release(name: str, token: int) -> None:
    JobLease.objects.filter(name=name, token=token).update(expires_at=timezone.now())


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_dead(owner: str) -> bool:
    """Whether the process ``owner`` ("host:pid") provably no longer runs: it ran on this host
    and no process has its pid. A holder on another host is never provably dead (its lease
    expires instead); a pid taken again by a new process counts as alive."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False  # it exists (another user's) or cannot be asked: not provably dead
    return False


def runs_abandon(now: datetime | None = None) -> int:
    """Mark abandoned every running job run whose process died; return how many.

    Every run that can be "running" runs under the trading lease (``run_job``, and the market
    sync inside a cycle), so a running run is dead when the lease is not held by its process:
    the lease expired or was released, or was taken over by another process; or when its
    process is provably gone (``holder_dead``)."""
    now = now or timezone.now()
    running = JobRun.objects.filter(status=JobRun.Status.RUNNING)
    lease = JobLease.objects.filter(name=LEASE_NAME).values("owner", "expires_at").first()
    if lease and lease["expires_at"] > now and not holder_dead(lease["owner"]):
        running = running.exclude(owner=lease["owner"])  # the live holder's runs go on
    dead = [run.pk for run in running.only("pk", "owner") if run.owner != _owner()]
    if not dead:
        return 0
    logger.warning("Job runs %s abandoned: their process died", dead)
    return JobRun.objects.filter(pk__in=dead, status=JobRun.Status.RUNNING).update(
        status=JobRun.Status.ABANDONED,
        finished_at=now,
        summary="abandoned: its process died before the run finished",
    )


# --- Portfolio ------------------------------------------------------------------------------


def _state_of(position: Position) -> strategy.PositionState:
    if position.count == 0:
        return strategy.PositionState(
            realized_pnl=position.realized_pnl, fees_paid=position.fees_paid
        )
    return strategy.PositionState(
        side=position.side,
        count=position.count,
        cost_basis=position.cost_basis,
        realized_pnl=position.realized_pnl,
        fees_paid=position.fees_paid,
    )


def held_bid(side: str | None, quote: MarketQuote | None) -> Decimal | None:
    """The bid for the side held: what a position is worth and where an exit sells."""
    if quote is None or side is None:
        return None
    return quote.yes_bid if side == "yes" else quote.no_bid


def portfolio_view(
    *, exchange: Exchange, mode: str, quotes: dict[str, MarketQuote], now: datetime
) -> strategy.PortfolioView:
    """The account as the strategy sees it, with what may still fill counted as exposure.

    Every open buy order (an intent not yet sent, one being sent or of unknown outcome, and the
    unfilled remainder of one resting on the exchange) counts at its limit price plus its fee
    (``markets.fees.order_fee`` with the market's fee schedule when quoted, taker rate) toward
    its category's exposure and the cash it may still take (``committed``). A market with any
    open order is pending; one with a resting entry is not a candidate for another entry.
    """
    cash = exchange.balance()
    open_positions = list(Position.objects.open().filter(mode=mode).select_related("market"))
    equity = cash
    exposure: dict[str, Decimal] = {}
    for position in open_positions:
        bid = held_bid(position.side, quotes.get(position.market.ticker))
        equity += position.count * bid if bid is not None else position.cost_basis
        category = position.market.category
        exposure[category] = exposure.get(category, ZERO) + position.cost_basis
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    opening = (
        AccountSnapshot.objects.filter(mode=mode, ts__gte=day_start, ts__lte=now)
        .order_by("ts")
        .values_list("equity", flat=True)
        .first()
    )
    pending: set[str] = set()
    resting_entries: set[str] = set()
    committed = ZERO
    open_orders = Order.objects.filter(mode=mode, status__in=Order.OPEN_STATUSES).values_list(
        "market__ticker",
        "market__category",
        "status",
        "purpose",
        "action",
        "side",
        "yes_price",
        "count",
        "filled_count",
        "cancel_reason",
    )
    for (
        ticker,
        category,
        status,
        purpose,
        action,
        side,
        yes_price,
        count,
        filled,
        why,
    ) in open_orders:
        pending.add(ticker)
        if status in Order.RESTING_STATUSES and purpose == Order.Purpose.OPEN and not why:
            resting_entries.add(ticker)
        if action != "buy":
            continue
        remaining = count - filled
        if remaining <= 0:
            continue
        side_price = yes_price if side == "yes" else 1 - yes_price
        quote = quotes.get(ticker)
        fee = order_fee(remaining, side_price, fees=quote.fees if quote else DEFAULT_FEES)
        cost = remaining * side_price + fee
        committed += cost
        exposure[category] = exposure.get(category, ZERO) + cost
    return strategy.PortfolioView(
        cash=cash,
        equity=equity,
        open_positions=len(open_positions),
        open_tickers=frozenset(p.market.ticker for p in open_positions),
        category_exposure=exposure,
        daily_pnl=(equity - opening) if opening is not None else ZERO,
        pending_tickers=frozenset(pending),
        trading_state=TradingState.load().state,
        resting_entry_tickers=frozenset(resting_entries),
        committed=committed,
    )


# --- Decide ---------------------------------------------------------------------------------


def market_view(quote: MarketQuote, limits: strategy.RiskLimits) -> strategy.MarketView:
    """What the strategy sees of a quote (the backtest uses the same mapping).

    The volume is passed as it is: 0 is zero (filtered by any ``min_volume`` above 0) and
    None is unknown (recorded data), to which the volume filter does not apply. ``fees`` is
    the market's fee schedule, which every fee the strategy computes for it uses.
    """
    return strategy.MarketView(
        ticker=quote.ticker,
        category=quote.category,
        status=quote.status,
        close_time=quote.close_time,
        volume=quote.volume,
        yes_bid=quote.yes_bid,
        yes_ask=quote.yes_ask,
        no_bid=quote.no_bid,
        no_ask=quote.no_ask,
        yes_ask_depth=quote.yes_ask_depth,
        no_ask_depth=quote.no_ask_depth,
        fees=quote.fees,
    )


def client_order_id_for(mode: str, decision_id: int) -> str:
    """Deterministic: the same decision can never mint a second id (≤ 64 chars)."""
    return f"{CLIENT_ORDER_PREFIX}-{mode}-{decision_id}"


@dataclass
class CycleReport:
    mode: str
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def summary(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"{self.mode} cycle at {self.now:%Y-%m-%d %H:%M}: {parts or 'nothing to do'}"


def _forecast_row(market_id: int, result, *, forecaster: str, mode: str, quote, now) -> dict:
    """The columns of the ``Forecast`` row for one forecaster answer."""
    valid = result.valid and result.probability is not None
    return {
        "created_at": now,
        "market_id": market_id,
        "mode": mode,
        "forecaster": forecaster,
        "model": result.model,
        "prompt_version": result.prompt_version,
        "valid": valid,
        "error": result.error[:500],
        "probability": result.probability if result.valid else None,
        "confidence": result.confidence if result.valid else None,
        "rationale": result.rationale,
        "key_factors": result.key_factors,
        "market_price": quote.mid.quantize(PRICE_QUANTUM) if quote.mid is not None else None,
        "price_shown": result.price_shown,
        "llm_call_id": result.llm_call_id,
    }


def decide_run(
    *,
    exchange: Exchange,
    forecaster: Forecaster,
    mode: str,
    now: datetime,
    run: JobRun | None = None,
    report: CycleReport | None = None,
    quotes: list[MarketQuote] | None = None,
    skill: Callable[[str], bool] | None = None,
) -> CycleReport:
    """Forecast and decide every candidate market; write Decisions and order intents.

    The writes are batched (one transaction, a bounded number of queries whatever the number
    of markets); each candidate sees the risk already committed by the ones before it.
    """
    report = report or CycleReport(mode, now)
    limits = risk_limits()
    quotes = exchange.open_markets() if quotes is None else quotes
    by_ticker = {q.ticker: q for q in quotes}
    # Only the keys: a decision needs the market row's id, not its forty columns.
    market_ids = bulk.ids_by_key(Market, "ticker", list(by_ticker))
    # A decision taken within reanalyse_minutes stands: no new row per cycle for that market.
    # (decisions_write stamps created_at with the cycle's clock, as decided_at; created_at
    # carries the index.)
    recent_since = now - timedelta(minutes=int(limits.reanalyse_minutes))
    recently_analysed = set(
        Decision.objects.filter(mode=mode, created_at__gt=recent_since)
        .values_list("market_id", flat=True)
        .distinct()
    )
    # An entry that expired (cancelled by us at its expiry, or by the exchange) does not
    # stand: the market is decided again at the new price (unless a later decision stands).
    expired_entries = (
        Order.objects.filter(
            mode=mode,
            purpose=Order.Purpose.OPEN,
            status__in=(Order.Status.CANCELED, Order.Status.EXPIRED),
            created_at__gt=recent_since,
        )
        .filter(Q(cancel_reason=Order.CancelReason.ENTRY_TTL) | Q(expires_at__lte=now))
        .values_list("market_id", "decision_id")
    )
    for market_id, decision_id in expired_entries:
        if not Decision.objects.filter(mode=mode, market_id=market_id, pk__gt=decision_id).exists():
            recently_analysed.discard(market_id)
    portfolio = portfolio_view(exchange=exchange, mode=mode, quotes=by_ticker, now=now)
    if portfolio.trading_state == TradingState.State.ACTIVE and strategy.daily_loss_breached(
        portfolio, limits
    ):
        # The daily-loss breaker: reduce-only (exits still run) until an operator resumes.
        trading_state_set(
            state=TradingState.State.REDUCE_ONLY,
            reason=(
                f"daily loss limit: today's P&L {portfolio.daily_pnl.quantize(Decimal('0.01'))} "
                f"reached {limits.max_daily_loss_pct:%} of equity; resume when reviewed"
            ),
            user=None,
        )
        portfolio = replace(portfolio, trading_state=TradingState.State.REDUCE_ONLY)
        report.add("daily_loss_breaker")
    # Test doubles and the market benchmark declare ``needs_skill = False``; every real
    # forecaster answers to the gate the caller passes (the cycle always passes one).
    if skill is None or not getattr(forecaster, "needs_skill", True):
        skill = lambda name: True  # noqa: E731
    has_skill = skill
    rows: list[PlannedDecision] = []
    for quote in quotes:
        market_id = market_ids.get(quote.ticker)
        if market_id is None:
            report.add("unknown_market")
            continue
        if market_id in recently_analysed:
            report.add(Reason.SKIP_RECENTLY_ANALYSED.value)
            continue
        view = market_view(quote, limits)
        reason = strategy.candidate_filter(view, portfolio, limits, now=now)
        if reason is not None:
            result = strategy.DecisionResult(reason=reason, details={"filter": reason.value})
            rows.append(PlannedDecision(result, market_id, quote))
            report.add(reason.value)
            continue
        answer = forecaster.forecast(quote, now=now)
        forecast = _forecast_row(
            market_id, answer, forecaster=forecaster.name, mode=mode, quote=quote, now=now
        )
        if answer.budget_exhausted:
            result = strategy.DecisionResult(reason=Reason.AI_BUDGET_EXHAUSTED)
        else:
            view_forecast = strategy.ForecastView(
                probability=forecast["probability"],
                confidence=forecast["confidence"],
                forecaster=forecaster.name,
                valid=forecast["valid"],
                has_skill=has_skill(forecaster.name),
            )
            result = strategy.decide(view, view_forecast, portfolio, limits, now=now, screened=True)
        rows.append(PlannedDecision(result, market_id, quote, forecast))
        if result.reason == Reason.TRADED:
            portfolio = _portfolio_after(portfolio, result, quote)
        report.add(result.reason.value)
    decisions_write(rows, mode=mode, run=run, now=now, durable=False)
    return report


@dataclass
class PlannedDecision:
    result: strategy.DecisionResult
    market_id: int
    quote: MarketQuote | None
    forecast: dict[str, Any] | None = None  # the Forecast row's columns (see _forecast_row)
    purpose: str = Order.Purpose.OPEN
    action: str = "buy"
    replaces_id: int | None = None  # the resting exit a re-priced exit replaces


def decisions_write(
    rows: list[PlannedDecision],
    *,
    mode: str,
    run: JobRun | None,
    now: datetime,
    durable: bool = True,
) -> list[int]:
    """Write forecasts, decisions and the order intents of traded ones, in one transaction.

    Returns the decisions' ids. The rows are written without building model instances (on
    PostgreSQL with COPY and ids reserved up front): the decisions need the forecasts' ids and
    the order intents need the decisions' (``client_order_id``), without a query per row.

    ``durable=False`` (the decide cycle) lets PostgreSQL commit without waiting for the WAL to
    reach the disk: nothing leaves the process on the strength of these rows. An order intent
    is sent only after execute has committed it as SUBMITTING, synchronously, which flushes all
    earlier WAL, this included; a database crash before that loses the cycle's decisions (the
    next cycle decides again) and nothing else. An operator's action stays durable.
    """
    run_id = run.pk if run is not None else None
    with transaction.atomic():
        if not durable and bulk.is_postgresql():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        forecast_ids = iter(bulk.insert_rows(Forecast, [r.forecast for r in rows if r.forecast]))
        decision_rows = []
        for row in rows:
            result = row.result
            traded = bool(result.reason in (Reason.TRADED, Reason.EXIT) and result.count)
            decision_rows.append(
                {
                    "created_at": now,
                    "decided_at": now,
                    "mode": mode,
                    "run_id": run_id,
                    "market_id": row.market_id,
                    "forecast_id": next(forecast_ids) if row.forecast else None,
                    "reason": result.reason.value,
                    "side": result.side or "",
                    "action": row.action if traded else "",
                    "price": result.price,
                    "count": result.count if traded else None,
                    "edge": result.edge.edge.quantize(strategy.RATIO_QUANTUM)
                    if result.edge
                    else None,
                    "details": result.details,
                }
            )
        decision_ids = bulk.insert_rows(Decision, decision_rows)
        Order.objects.bulk_create(
            [
                _order_intent(row, decision_id, mode=mode, now=now)
                for row, decision, decision_id in zip(
                    rows, decision_rows, decision_ids, strict=True
                )
                if decision["count"]
            ]
        )
    return decision_ids


def _order_intent(row: PlannedDecision, decision_id: int, *, mode: str, now: datetime) -> Order:
    result = row.result
    side_price = result.price
    yes_price = side_price if result.side == "yes" else 1 - side_price
    max_cost = None
    if row.action == "buy":
        cost = result.cost  # fee under the market's schedule (strategy.DecisionResult)
        if cost is None:
            cost = strategy.order_cost(result.count, side_price)
        max_cost = cost.quantize(MONEY_QUANTUM)
    return Order(
        created_at=now,
        mode=mode,
        decision_id=decision_id,
        market_id=row.market_id,
        client_order_id=client_order_id_for(mode, decision_id),
        purpose=row.purpose,
        side=result.side,
        action=row.action,
        yes_price=yes_price,
        count=result.count,
        max_cost=max_cost,
        status=Order.Status.APPROVED,
        replaces_id=row.replaces_id,
    )


def _portfolio_after(
    portfolio: strategy.PortfolioView, result: strategy.DecisionResult, quote: MarketQuote
) -> strategy.PortfolioView:
    """The portfolio as the next candidate must see it, with this buy committed."""
    cost = (
        result.cost if result.cost is not None else strategy.order_cost(result.count, result.price)
    )
    exposure = dict(portfolio.category_exposure)
    exposure[quote.category] = exposure.get(quote.category, ZERO) + cost
    return replace(
        portfolio,
        cash=portfolio.cash - cost,
        category_exposure=exposure,
        # Pending orders count against the open-positions limit in the strategy itself.
        pending_tickers=portfolio.pending_tickers | {quote.ticker},
    )


# --- Execute --------------------------------------------------------------------------------


def _gate(
    exchange: Exchange, mode: str, state: TradingState, reconciled_at: datetime | None
) -> str | None:
    """Why no order may be sent now, or None."""
    if state.state == TradingState.State.HALTED:
        return f"trading halted: {state.reason}"
    if exchange.places_real_orders and not (
        settings.TRADING_MODE == "live" and mode == "live" and state.live_armed
    ):
        return "live trading is not armed"
    status = exchange.status()
    if not (status.exchange_active and status.trading_active):
        return "exchange is not trading"
    if reconciled_at is None or timezone.now() - reconciled_at > RECONCILE_MAX_AGE:
        return "no successful reconcile in the last 10 minutes"
    return None


def execute_run(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    lease_token: int | None = None,
    report: CycleReport | None = None,
    reconciled_at: datetime | None = None,
) -> CycleReport:
    """Send every APPROVED intent once, behind the gates. See the module docstring.

    ``reconciled_at`` is the wall time of the last successful reconcile; without a fresh one
    nothing is sent.
    """
    report = report or CycleReport(mode, now)
    approved = list(
        Order.objects.filter(mode=mode, status=Order.Status.APPROVED)
        .select_related("market")
        .order_by("pk")
    )
    if not approved:
        return report
    state = TradingState.load()
    blocked = _gate(exchange, mode, state, reconciled_at)
    if blocked:
        report.add("orders_gated", len(approved))
        logger.info("Orders held back: %s", blocked)
        return report
    limits = risk_limits()
    for order in approved:
        if state.state == TradingState.State.REDUCE_ONLY and order.purpose == Order.Purpose.OPEN:
            order.transition(Order.Status.NOT_PLACED, error_message="reduce-only mode")
            report.add("orders_not_placed")
            continue
        if Order.objects.blocking().filter(market=order.market, mode=mode).exists():
            report.add("orders_blocked_unknown")
            continue
        if order.action == "sell" and not _sell_within_position(order, mode, report):
            continue
        if lease_token is not None and not lease_held(LEASE_NAME, lease_token):
            report.add("lease_lost")
            break
        lifecycle: dict[str, Any] = {}
        if order.purpose == Order.Purpose.OPEN and order.time_in_force == Order.TimeInForce.GTC:
            # Entries expire: Kalshi drops the order at this time, and the first cycle after it
            # cancels it if it still rests (see cancels_run).
            lifecycle["expires_at"] = now + timedelta(seconds=int(limits.entry_order_ttl_seconds))
        if not order.transition(
            Order.Status.SUBMITTING, submitted_at=now, lease_token=lease_token, **lifecycle
        ):
            continue  # another process got there first
        _crash_point("before_send")
        _send_once(exchange, order, report)
    return report


def _sell_within_position(order: Order, mode: str, report: CycleReport) -> bool:
    """A sell never asks for more than our books hold (a re-priced or flatten order may have
    been written before the last fills of the order it replaces): cut it to the position, or
    drop it when nothing is left. False when it must not be sent."""
    held = (
        Position.objects.open()
        .filter(mode=mode, market_id=order.market_id, side=order.side)
        .values_list("count", flat=True)
        .first()
    ) or ZERO
    if held <= 0:
        order.transition(Order.Status.NOT_PLACED, error_message="no position left to sell")
        report.add("orders_not_placed")
        return False
    if held < order.count:
        updated = Order.objects.filter(pk=order.pk, status=Order.Status.APPROVED).update(
            count=held, updated_at=timezone.now()
        )
        if updated:
            order.count = held
    return True


def _send_once(exchange: Exchange, order: Order, report: CycleReport) -> None:
    request = OrderRequest(
        client_order_id=order.client_order_id,
        ticker=order.market.ticker,
        side=order.side,
        action=order.action,
        yes_price=order.yes_price,
        count=order.count,
        time_in_force=order.time_in_force,
        max_cost=order.max_cost,
        reduce_only=order.purpose in Order.CLOSING_PURPOSES,
        expiration_time=order.expires_at,
    )
    try:
        ack = exchange.place_order(request)
    except DuplicateOrder:
        # The exchange already has it: reconciliation adopts it. Stay SUBMITTING.
        report.add("orders_duplicate")
        return
    except ExchangeAuthError as exc:
        # A 401 means the order was refused before it reached the book.
        order.transition(Order.Status.REJECTED, error_code=exc.code, error_message="HTTP 401")
        halt("the exchange rejected our credentials (HTTP 401): check the API key and the clock")
        report.add("orders_rejected")
        return
    except OrderRejected as exc:
        order.transition(
            Order.Status.REJECTED, error_code=exc.code[:64], error_message=redact(exc.message)[:500]
        )
        report.add("orders_rejected")
        return
    except Exception as exc:  # timeout, 5xx, 429, 2xx without order, parse error, bug
        message = exc.message if isinstance(exc, ExchangeError) else repr(exc)
        order.transition(Order.Status.UNKNOWN, error_message=redact(message)[:500])
        report.add("orders_unknown")
        return
    _crash_point("after_send")
    status = Order.Status.ACKED
    if ack.filled_count >= order.count:
        status = Order.Status.FILLED
    elif ack.filled_count > 0:
        status = Order.Status.PARTIALLY_FILLED
    elif ack.status == "canceled":
        status = Order.Status.CANCELED
    order.transition(status, exchange_order_id=ack.order_id)
    _crash_point("after_commit")
    report.add("orders_placed")


# --- Cancel ---------------------------------------------------------------------------------
#
# Cancels follow the create protocol: the reason is recorded first (``Order.cancel_reason``:
# the order now blocks its market), ``cancel_requested_at`` is committed just before the one
# request is sent, and the answer is booked; an unknown answer (timeout, 5xx) is resolved only
# by reconcile, which reads the order's status on the exchange. Never a blind retry.


def cancel_request(order: Order, reason: str, *, now: datetime | None = None) -> bool:
    """Record that we want ``order`` cancelled (nothing is sent here).

    An intent not yet sent is simply not placed. Returns False when there was nothing to do
    (the order is finished, or a cancel is already wanted).
    """
    if order.status == Order.Status.APPROVED:
        return order.transition(
            Order.Status.NOT_PLACED, error_message=f"withdrawn before sending ({reason})"
        )
    updated = Order.objects.filter(
        pk=order.pk, status__in=Order.RESTING_STATUSES, cancel_reason=""
    ).update(cancel_reason=reason, updated_at=timezone.now())
    if updated:
        order.cancel_reason = reason
    return updated == 1


def cancels_send(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    report: CycleReport | None = None,
    lease_token: int | None = None,
) -> CycleReport:
    """Send each wanted cancel of ``mode`` once (claimed by a conditional UPDATE first)."""
    report = report or CycleReport(mode, now)
    wanted = list(
        Order.objects.filter(
            mode=mode, status__in=Order.RESTING_STATUSES, cancel_requested_at__isnull=True
        )
        .exclude(cancel_reason="")
        .select_related("market")
        .order_by("pk")
    )
    for order in wanted:
        if lease_token is not None and not lease_held(LEASE_NAME, lease_token):
            report.add("lease_lost")
            break
        claimed = Order.objects.filter(
            pk=order.pk, status=order.status, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, updated_at=timezone.now())
        if claimed != 1:
            continue  # another process got there first, or the order moved on
        order.cancel_requested_at = now
        _crash_point("before_cancel_send")
        _cancel_once(exchange, order, report)
    return report


def _cancel_once(exchange: Exchange, order: Order, report: CycleReport) -> None:
    logger.info("Cancel sent: %s (%s)", order.client_order_id, order.cancel_reason)
    try:
        exchange.cancel_order(order.exchange_order_id or "", order.market.ticker)
    except ExchangeAuthError:
        _cancel_note(order, "HTTP 401: the exchange refused our credentials")
        halt("the exchange rejected our credentials (HTTP 401): check the API key and the clock")
        report.add("cancels_refused")
        return
    except OrderRejected as exc:
        # No resting order by that id: it filled, expired or was cancelled already. Reconcile
        # reads which from the exchange's order list.
        _cancel_note(order, f"refused: {redact(exc.message)}")
        report.add("cancels_refused")
        return
    except Exception as exc:  # timeout, 5xx, 429, parse error, bug: the outcome is unknown
        message = exc.message if isinstance(exc, ExchangeError) else repr(exc)
        _cancel_note(order, f"outcome unknown: {redact(message)}")
        report.add("cancels_unknown")
        return
    _crash_point("after_cancel_send")
    order.transition(Order.Status.CANCELED)
    _crash_point("after_cancel_commit")
    report.add("orders_canceled")


def _cancel_note(order: Order, message: str) -> None:
    Order.objects.filter(pk=order.pk).update(cancel_error=message[:500], updated_at=timezone.now())


def _cancels_resolve(ex_orders, mode: str, exchange_now: datetime, report: CycleReport) -> None:
    """Reconcile's part of the cancel protocol: a cancel whose order still rests on the
    exchange a grace period after it was sent did not take effect (it was lost before it
    arrived, or the process died before sending it); clear it so that the next cycle may send
    one cancel again. A cancel that took effect shows as canceled (or the order as executed)
    in the exchange's order list, and reconcile books that status as for any order."""
    resting = {ex.client_order_id for ex in ex_orders if ex.status == "resting"}
    stale = Order.objects.filter(
        mode=mode,
        status__in=Order.RESTING_STATUSES,
        cancel_requested_at__lte=exchange_now - UNKNOWN_GRACE,
        client_order_id__in=resting,
    )
    for order in stale:
        cleared = Order.objects.filter(
            pk=order.pk, cancel_requested_at=order.cancel_requested_at
        ).update(
            cancel_requested_at=None,
            cancel_error="the cancel did not take effect; one more is sent next cycle",
            updated_at=timezone.now(),
        )
        if cleared:
            report.add("cancels_not_applied")


def _entry_deadline(order: Order, limits: strategy.RiskLimits) -> datetime:
    if order.expires_at is not None:
        return order.expires_at
    sent = order.submitted_at or order.created_at
    return sent + timedelta(seconds=int(limits.entry_order_ttl_seconds))


def cancels_run(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    report: CycleReport | None = None,
    quotes: list[MarketQuote] | None = None,
    lease_token: int | None = None,
) -> CycleReport:
    """Decide which resting orders to cancel, record why, then send every wanted cancel once.

    - an entry still resting at its expiry (``entry_order_ttl_seconds``); the market is then
      decided again at the new price;
    - every resting entry while trading is reduce-only;
    - an exit or flatten resting above the bid of the side held (it cannot fill there): it is
      re-priced, and ``track_run`` places its replacement once this cancel is confirmed;
    - whatever a halt with cancel or a flatten asked to cancel.
    """
    report = report or CycleReport(mode, now)
    state = TradingState.load().state
    limits = risk_limits()
    by_ticker = {q.ticker: q for q in (exchange.open_markets() if quotes is None else quotes)}
    resting = list(
        Order.objects.filter(mode=mode, status__in=Order.RESTING_STATUSES, cancel_reason="")
        .select_related("market", "decision")
        .order_by("pk")
    )
    positions = {
        p.market_id: p
        for p in Position.objects.open().filter(
            mode=mode, market_id__in=[o.market_id for o in resting]
        )
    }
    for order in resting:
        reason = None
        if order.purpose == Order.Purpose.OPEN:
            if state == TradingState.State.REDUCE_ONLY:
                reason = Order.CancelReason.REDUCE_ONLY
            elif _entry_deadline(order, limits) <= now:
                reason = Order.CancelReason.ENTRY_TTL
        elif order.purpose in Order.CLOSING_PURPOSES and state != TradingState.State.HALTED:
            position = positions.get(order.market_id)
            quote = by_ticker.get(order.market.ticker)
            if position is not None and _reprice_target(order, position, quote, limits, now):
                reason = Order.CancelReason.REPRICE
        if reason is not None and cancel_request(order, reason, now=now):
            report.add(f"cancel_{reason}")
    return cancels_send(
        exchange=exchange, mode=mode, now=now, report=report, lease_token=lease_token
    )


def orders_cancel_all(*, reason: str, mode: str | None = None) -> int:
    """Withdraw every intent not yet sent and ask to cancel every resting order (all modes
    unless ``mode``); the next cycle (or ``cancels_send``) sends the cancels."""
    orders = Order.objects.filter(status__in=(Order.Status.APPROVED,) + Order.RESTING_STATUSES)
    if mode is not None:
        orders = orders.filter(mode=mode)
    return sum(cancel_request(order, reason) for order in orders)


# --- Exits: re-pricing ----------------------------------------------------------------------


ExitTarget = strategy.ExitTarget


def _position_view(position: Position, bid: Decimal) -> strategy.PositionView:
    return strategy.PositionView(
        ticker=position.market.ticker,
        side=position.side,
        count=position.count,
        avg_price=position.cost_basis / position.count,
        opened_at=position.opened_at,
        close_time=position.market.close_time,
        bid=bid,
    )


def _exit_target(
    order: Order,
    position: Position,
    quote: MarketQuote | None,
    limits: strategy.RiskLimits,
    now: datetime,
) -> ExitTarget | None:
    """The price the exit ``order`` (resting or just cancelled) is re-priced to
    (``strategy.exit_target``); None without a bid."""
    bid = held_bid(position.side, quote)
    if bid is None or position.count <= 0:
        return None
    details = order.decision.details or {}
    chain_start = Decimal(details.get("chain_start") or order.side_price)
    return strategy.exit_target(
        _position_view(position, bid), chain_start, details.get("exit", ""), limits, now=now
    )


def _reprice_target(
    order: Order,
    position: Position,
    quote: MarketQuote | None,
    limits: strategy.RiskLimits,
    now: datetime,
) -> ExitTarget | None:
    """The new price for a resting exit that rests above the bid, or None to leave it."""
    return strategy.reprice_target(
        _exit_target(order, position, quote, limits, now), order.side_price
    )


# --- Reconcile ------------------------------------------------------------------------------


def _decision_id_from(client_order_id: str, mode: str) -> int | None:
    prefix = f"{CLIENT_ORDER_PREFIX}-{mode}-"
    if client_order_id.startswith(prefix) and client_order_id[len(prefix) :].isdigit():
        return int(client_order_id[len(prefix) :])
    return None


_EXCHANGE_STATUS = {
    "executed": Order.Status.FILLED,
    "canceled": Order.Status.CANCELED,
    "resting": Order.Status.ACKED,
}


def _exchange_status(ex_order) -> str:
    if ex_order.status == "resting" and ex_order.filled_count > 0:
        return Order.Status.PARTIALLY_FILLED
    if ex_order.status == "canceled" and ex_order.filled_count >= ex_order.count:
        return Order.Status.FILLED
    return _EXCHANGE_STATUS.get(ex_order.status, Order.Status.ACKED)


def _advance(order: Order, target: str, **fields: Any) -> None:
    """Walk an order forward to ``target`` through legal steps (e.g. UNKNOWN → ACKED → FILLED)."""
    if order.status == target and not fields:
        return
    for step in (target, Order.Status.ACKED):
        if step in Order.TRANSITIONS.get(order.status, ()):
            order.transition(step, **fields)
            fields = {}
            if order.status == target:
                return
    if target in Order.TRANSITIONS.get(order.status, ()):
        order.transition(target)


def reconcile_run(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    report: CycleReport | None = None,
    run: JobRun | None = None,
    quotes: list[MarketQuote] | None = None,
) -> CycleReport:
    """Bring our books in line with the exchange; halt on what cannot be explained.

    The exchange keeps trading while we read it, so the reads come in one order: orders, then
    positions, then fills and settlements. Every fill or settlement behind the positions read
    is among those booked (a later one may be too, never one fewer). A position that differs
    is read once more, with the fills and settlements after it; only a market that differs in
    both reads halts trading. A fill on a market not in the database fetches that market.

    Foreign orders (without our ``client_order_id`` prefix) halt trading, or with
    ``FOREIGN_ORDERS=ignore`` are left alone, with their fills and positions on markets the
    desk has never sent an order to. Any exception halts trading with its (redacted) reason
    and is raised again, for the job run to record.

    ``quotes`` (the cycle's market read) value the books for the equity snapshot.
    """
    report = report or CycleReport(mode, now)
    try:
        return _reconcile(exchange=exchange, mode=mode, now=now, report=report, quotes=quotes)
    except Exception as exc:
        try:
            halt(f"reconcile failed: {failure_reason(exc)}"[:500])
        except Exception:
            logger.exception("Could not halt trading after a failed reconcile")
        raise


def failure_reason(exc: BaseException) -> str:
    """One redacted line saying what went wrong: for a halt reason or a job run's summary."""
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(redact(f"{type(exc).__name__}: {message}").split())


def _reconcile(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    report: CycleReport,
    quotes: list[MarketQuote] | None,
) -> CycleReport:
    ex_orders = exchange.orders()
    ours = {o.client_order_id: o for o in Order.objects.filter(mode=mode).select_related("market")}
    problems: list[str] = []
    seen_ids = set()
    for ex in ex_orders:
        seen_ids.add(ex.client_order_id)
        order = ours.get(ex.client_order_id)
        if order is None:
            decision_id = _decision_id_from(ex.client_order_id, mode)
            decision = (
                Decision.objects.filter(pk=decision_id, mode=mode).first() if decision_id else None
            )
            if decision is None:
                if ex.client_order_id.startswith(f"{CLIENT_ORDER_PREFIX}-"):
                    problems.append(
                        f"order {ex.client_order_id} ({ex.order_id}) on {ex.ticker} carries "
                        "our prefix but matches no decision"
                    )
                elif settings.FOREIGN_ORDERS == "ignore":
                    report.add("orders_foreign")
                else:
                    problems.append(f"foreign order {ex.order_id} on {ex.ticker}")
                continue
            markets, missing = _markets_for(exchange, [ex.ticker], report)
            if missing:
                problems += missing
                continue
            order = _adopt(decision, ex, markets[ex.ticker], mode=mode, now=now)
            report.add("orders_adopted")
        target = _exchange_status(ex)
        if order.status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN):
            report.add("orders_resolved")
        if order.exchange_order_id is None or order.status != target:
            _advance(
                order,
                target,
                **({} if order.exchange_order_id else {"exchange_order_id": ex.order_id}),
            )
        if order.filled_count != ex.filled_count or order.fees_paid != ex.fees:
            Order.objects.filter(pk=order.pk).update(
                filled_count=ex.filled_count, fees_paid=ex.fees, updated_at=timezone.now()
            )
    exchange_now = exchange.now()
    _cancels_resolve(ex_orders, mode, exchange_now, report)
    for order in ours.values():
        if order.client_order_id in seen_ids:
            continue
        if order.status in Order.BLOCKING_STATUSES:
            sent = order.submitted_at or order.created_at
            if exchange_now - sent >= UNKNOWN_GRACE:
                # Listed after the grace period and absent: it was never placed.
                if order.status == Order.Status.SUBMITTING:
                    order.transition(Order.Status.UNKNOWN)
                order.transition(Order.Status.NOT_PLACED, error_message="not found on the exchange")
                report.add("orders_not_placed")
    first_read: dict[str, str] = {}
    for attempt in range(2):
        theirs = exchange.positions()
        for problem in _reconcile_fills(exchange, mode, report):
            if problem not in problems:
                problems.append(problem)
        _reconcile_settlements(exchange, mode, report)
        mismatches, foreign = _compare_positions(theirs, mode)
        if attempt == 0 and mismatches:
            # Perhaps a fill or settlement landed between the reads: read once more.
            first_read = mismatches
            report.add("positions_reread")
            continue
        problems += [
            text for ticker, text in mismatches.items() if not attempt or ticker in first_read
        ]
        break
    if foreign:
        report.add("positions_foreign", len(foreign))
    if problems:
        halt("; ".join(problems)[:500])
        report.add("halted")
    by_ticker = {q.ticker: q for q in (exchange.open_markets() if quotes is None else quotes)}
    view = portfolio_view(exchange=exchange, mode=mode, quotes=by_ticker, now=now)
    AccountSnapshot.objects.update_or_create(
        mode=mode,
        ts=now,
        defaults={
            "cash": view.cash,
            "equity": view.equity.quantize(MONEY_QUANTUM),
            "open_positions": view.open_positions,
            "realized_pnl": sum(
                Position.objects.filter(mode=mode).values_list("realized_pnl", flat=True), ZERO
            ),
        },
    )
    return report


def _adopt(decision: Decision, ex, market: Market, *, mode: str, now: datetime) -> Order:
    """An order with our prefix we have no row for (crash before our insert): adopt it."""
    return Order.objects.create(
        created_at=now,
        mode=mode,
        decision=decision,
        market=market,
        client_order_id=ex.client_order_id,
        side=ex.side,
        action=ex.action,
        yes_price=ex.yes_price,
        count=ex.count,
        status=Order.Status.UNKNOWN,
    )


def _markets_for(
    exchange: Exchange, tickers: list[str], report: CycleReport
) -> tuple[dict[str, Market], list[str]]:
    """Our rows for these tickers, fetching from the exchange (and storing, with its event and
    series) any market not in the database; and why any could not be had."""
    wanted = set(tickers)
    found = Market.objects.in_bulk(wanted, field_name="ticker")
    fetched, errors = [], {}
    for ticker in sorted(wanted - set(found)):
        try:
            fetched.append(exchange.market(ticker))
        except ExchangeError as exc:
            errors[ticker] = redact(exc.message)[:200]
    if fetched:
        market_store(fetched)
        report.add("markets_fetched", len(fetched))
        found.update(Market.objects.in_bulk({m.ticker for m in fetched}, field_name="ticker"))
    problems = [
        f"market {ticker} is not in the database and the exchange did not give it: "
        + errors.get(ticker, "it answered with another market")
        for ticker in sorted(wanted - set(found))
    ]
    return found, problems


def _reconcile_fills(exchange: Exchange, mode: str, report: CycleReport) -> list[str]:
    """Book the fills we have not booked yet; return why any could not be.

    A fill of an order that is not ours (by exchange order id) is booked too, so that our
    positions stay the exchange's; with ``FOREIGN_ORDERS=ignore`` it is left alone instead and
    not stored (looked at again next time: a fill of ours whose order is not linked yet is
    booked once it is). A fill on a market we cannot get stays unbooked until we can.
    """
    ex_fills = exchange.fills()
    known = set(
        Fill.objects.filter(fill_id__in=[f.fill_id for f in ex_fills]).values_list(
            "fill_id", flat=True
        )
    )
    new = [f for f in ex_fills if f.fill_id not in known]
    if not new:
        return []
    orders = {
        o.exchange_order_id: o
        for o in Order.objects.filter(exchange_order_id__in=[f.order_id for f in new])
    }
    if settings.FOREIGN_ORDERS == "ignore":
        new = [f for f in new if f.order_id in orders]
    markets, problems = _markets_for(exchange, [f.ticker for f in new], report)
    for ex in sorted(new, key=lambda f: (f.executed_at, f.fill_id)):
        order = orders.get(ex.order_id)
        if ex.ticker not in markets:
            continue  # named in ``problems``
        with transaction.atomic():
            Fill.objects.create(
                fill_id=ex.fill_id,
                mode=mode,
                order=order,
                exchange_order_id=ex.order_id,
                market=markets[ex.ticker],
                side=ex.side,
                action=ex.action,
                count=ex.count,
                yes_price=ex.yes_price,
                fee=ex.fee,
                is_taker=ex.is_taker,
                executed_at=ex.executed_at,
            )
            _apply_fill_to_position(ex, markets[ex.ticker], mode, order)
        report.add("fills")
    return problems


def _apply_fill_to_position(ex, market: Market, mode: str, order: Order | None) -> None:
    position = (
        Position.objects.select_for_update().filter(mode=mode, market=market, status="open").first()
    )
    state = _state_of(position) if position else strategy.PositionState()
    side_price = ex.yes_price if ex.side == "yes" else 1 - ex.yes_price
    new, _realized = strategy.apply_fill(state, ex.side, ex.action, ex.count, side_price, ex.fee)
    if position is None:
        position = Position(
            mode=mode, market=market, opened_at=ex.executed_at, side=new.side or ex.side
        )
    position.side = new.side or position.side
    position.count = new.count
    position.cost_basis = new.cost_basis.quantize(MONEY_QUANTUM)
    position.realized_pnl = new.realized_pnl.quantize(MONEY_QUANTUM)
    position.fees_paid = new.fees_paid.quantize(MONEY_QUANTUM)
    position.updated_at = timezone.now()
    if new.count == 0:
        position.status = Position.Status.CLOSED
        position.closed_at = ex.executed_at
        position.close_reason = (
            "exit" if order and order.purpose in Order.CLOSING_PURPOSES else "netted"
        )
    position.save()


def _reconcile_settlements(exchange: Exchange, mode: str, report: CycleReport) -> None:
    """Book Kalshi's settlements. A settlement's ``fee`` (Kalshi's ``fee_cost``) repeats the
    trade fees already paid and booked on the position's fills: it is kept on the Settlement
    row as reported, and not charged again (``strategy.settle_position``)."""
    for ex in exchange.settlements():
        market = Market.objects.filter(ticker=ex.ticker).first()
        if market is None or Settlement.objects.filter(mode=mode, market=market).exists():
            continue
        with transaction.atomic():
            position = (
                Position.objects.select_for_update()
                .filter(mode=mode, market=market, status="open")
                .first()
            )
            realized = ZERO
            cost = ZERO
            if position is not None:
                state = _state_of(position)
                cost = state.cost_basis
                value = market.settlement_value if ex.result == "scalar" else None
                new, realized = strategy.settle_position(state, ex.result, value)
                position.count = ZERO
                position.cost_basis = ZERO
                position.realized_pnl = new.realized_pnl.quantize(MONEY_QUANTUM)
                position.fees_paid = new.fees_paid.quantize(MONEY_QUANTUM)
                position.status = Position.Status.CLOSED
                position.closed_at = ex.settled_at
                position.close_reason = f"settled_{ex.result}"
                position.save()
            Settlement.objects.create(
                mode=mode,
                market=market,
                position=position,
                result=ex.result,
                yes_count=ex.yes_count,
                no_count=ex.no_count,
                cost_basis=cost,
                payout=ex.revenue,
                fee=ex.fee,
                realized_pnl=realized.quantize(MONEY_QUANTUM),
                settled_at=ex.settled_at,
            )
        report.add("settlements")


_NEVER_SENT = (
    Order.Status.PLANNED,
    Order.Status.RISK_REJECTED,
    Order.Status.APPROVED,
    Order.Status.REJECTED,
    Order.Status.NOT_PLACED,
)


def _compare_positions(
    positions: list[ExchangePosition], mode: str
) -> tuple[dict[str, str], set[str]]:
    """The markets where the exchange's position is not ours (ticker → why), and the foreign
    ones left alone: with ``FOREIGN_ORDERS=ignore``, a position where we hold none on a market
    the desk has never sent an order to."""
    theirs = {p.ticker: p.position for p in positions}
    ours = {
        p.market.ticker: (p.count if p.side == "yes" else -p.count)
        for p in Position.objects.open().filter(mode=mode).select_related("market")
    }
    foreign: set[str] = set()
    if settings.FOREIGN_ORDERS == "ignore":
        only_theirs = set(theirs) - set(ours)
        traded = Order.objects.filter(mode=mode, market__ticker__in=only_theirs).exclude(
            status__in=_NEVER_SENT
        )
        foreign = only_theirs - set(traded.values_list("market__ticker", flat=True))
    problems = {}
    for ticker in sorted((set(theirs) | set(ours)) - foreign):
        if theirs.get(ticker, ZERO) != ours.get(ticker, ZERO):
            problems[ticker] = (
                f"position mismatch on {ticker}: exchange {theirs.get(ticker, ZERO)}, "
                f"ours {ours.get(ticker, ZERO)}"
            )
    return problems, foreign


# --- Track: exits ---------------------------------------------------------------------------


def track_run(
    *,
    exchange: Exchange,
    mode: str,
    now: datetime,
    run: JobRun | None = None,
    report: CycleReport | None = None,
    quotes: list[MarketQuote] | None = None,
) -> CycleReport:
    """Turn exit signals (stop-loss, take-profit, max hold, ahead of close) into sell intents,
    and keep resting exits moving toward the bid.

    A position is evaluated every cycle, a resting exit or not. A resting exit above the bid is
    marked for a re-price (``cancels_run`` sends the cancel); once that cancel is confirmed the
    replacement is written here at the new price, with a new ``client_order_id``, each step
    recorded in its decision's ``details["reprice_steps"]``. While an order on the market is
    being sent, of unknown outcome or being cancelled, the position waits.
    """
    report = report or CycleReport(mode, now)
    limits = risk_limits()
    by_ticker = {q.ticker: q for q in (exchange.open_markets() if quotes is None else quotes)}
    open_orders: dict[int, list[Order]] = {}
    for order in (
        Order.objects.filter(mode=mode, status__in=Order.OPEN_STATUSES)
        .select_related("decision")
        .order_by("pk")
    ):
        open_orders.setdefault(order.market_id, []).append(order)
    exits: list[PlannedDecision] = []
    cancels = 0
    for position in Position.objects.open().filter(mode=mode).select_related("market"):
        quote = by_ticker.get(position.market.ticker)
        bid = held_bid(position.side, quote)
        if quote is None or bid is None or position.count <= 0:
            continue
        signal_ = strategy.exit_signal(_position_view(position, bid), limits, now=now)
        if signal_ is not None:
            report.add(f"exit_{signal_.reason.value}")
        on_market = open_orders.get(position.market_id, [])
        resting_exits = [
            o
            for o in on_market
            if o.purpose in Order.CLOSING_PURPOSES
            and o.status in Order.RESTING_STATUSES
            and not o.cancel_reason
        ]
        if resting_exits:
            for order in resting_exits:
                if _reprice_target(order, position, quote, limits, now) and cancel_request(
                    order, Order.CancelReason.REPRICE, now=now
                ):
                    report.add("cancel_reprice")
                    cancels += 1
            continue
        if any(o.action == "sell" or o.status not in Order.RESTING_STATUSES for o in on_market):
            continue  # an exit being sent, cancelled or of unknown outcome: wait for it
        replaced = _repriced_exit(mode, position)
        if replaced is not None:
            target = _exit_target(replaced, position, quote, limits, now)
            if target is not None:
                exits.append(_replacement(replaced, position, quote, target, now))
                report.add("exits_repriced")
            continue
        if signal_ is None:
            continue
        for order in on_market:  # an entry remainder still resting: it must not add more
            if order.action == "buy" and cancel_request(order, Order.CancelReason.EXIT, now=now):
                report.add("cancel_exit")
                cancels += 1
        result = strategy.DecisionResult(
            reason=Reason.EXIT,
            side=signal_.side,
            price=signal_.price,
            count=signal_.count,
            details={
                "exit": signal_.reason.value,
                **signal_.details,
                "chain_start": str(signal_.price),
                "reprice_steps": [],
            },
        )
        exits.append(
            PlannedDecision(
                result, position.market_id, quote, purpose=Order.Purpose.EXIT, action="sell"
            )
        )
    decisions_write(exits, mode=mode, run=run, now=now)
    if cancels:
        # Sent now, so that a confirmed cancel frees its market for this cycle's execute.
        cancels_send(exchange=exchange, mode=mode, now=now, report=report)
    return report


def _repriced_exit(mode: str, position: Position) -> Order | None:
    """The exit this position's next exit replaces: the market's latest order, when it is an
    exit or flatten we cancelled to re-price it."""
    latest = (
        Order.objects.filter(mode=mode, market_id=position.market_id)
        .select_related("decision")
        .order_by("-pk")
        .first()
    )
    if (
        latest is not None
        and latest.purpose in Order.CLOSING_PURPOSES
        and latest.status == Order.Status.CANCELED
        and latest.cancel_reason == Order.CancelReason.REPRICE
        and latest.side == position.side
    ):
        return latest
    return None


def _replacement(
    replaced: Order, position: Position, quote: MarketQuote, target: ExitTarget, now: datetime
) -> PlannedDecision:
    """The re-priced exit: same purpose and side, the position's count, the target price."""
    previous = target.signal_details if target.restarted else (replaced.decision.details or {})
    steps = [] if target.restarted else list(previous.get("reprice_steps") or [])
    steps.append(
        {
            "step": len(steps) + 1,
            "at": now.isoformat(),
            "replaces": replaced.client_order_id,
            "from_price": str(replaced.side_price),
            "price": str(target.price),
            "bid": str(target.bid),
            "floor": str(target.floor),
        }
    )
    details = {
        **{k: v for k, v in previous.items() if k not in ("reprice_steps", "chain_start")},
        "exit": target.exit,
        "ticker": position.market.ticker,
        "side": position.side,
        "count": str(position.count),
        "bid": str(target.bid),
        "now": now.isoformat(),
        "chain_start": str(target.chain_start),
        "floor": str(target.floor),
        "reprice_steps": steps,
    }
    result = strategy.DecisionResult(
        reason=Reason.EXIT,
        side=position.side,
        price=target.price,
        count=position.count,
        details=details,
    )
    return PlannedDecision(
        result,
        position.market_id,
        quote,
        purpose=replaced.purpose,
        action="sell",
        replaces_id=replaced.pk,
    )


def _last_quote(position: Position) -> MarketQuote | None:
    """The market's latest quote: the replay book as of the replay clock, else the last sync."""
    market = position.market
    if position.mode == "replay":
        from markets.simulator import ReplayQuotes
        from trading.exchanges import replay_clock

        return ReplayQuotes(replay_clock).quote(market.ticker)
    return MarketQuote(
        ticker=market.ticker,
        event_ticker="",
        status=market.status,
        close_time=market.close_time,
        yes_bid=market.yes_bid,
        yes_ask=market.yes_ask,
        category=market.category,
    )


def position_flatten(*, position: Position, user=None, now: datetime | None = None) -> Order:
    """Operator action: sell the whole position at its current bid through the normal path.

    Writes an EXIT decision and a reduce-only FLATTEN intent; the next cycle's execute sends it
    (behind the same gates as every order). A resting exit (or entry remainder) on the market
    is cancelled first through the cancel protocol: the flatten waits until that cancel is
    confirmed. Refused while an order on the market is being sent or of unknown outcome.
    """
    if position.status != Position.Status.OPEN:
        raise ValueError("The position is not open.")
    on_market = list(
        Order.objects.filter(
            mode=position.mode, market=position.market, status__in=Order.OPEN_STATUSES
        )
    )
    if any(o.status not in Order.RESTING_STATUSES or o.cancel_reason for o in on_market):
        raise ValueError("An order on this market is still open (being sent or cancelled); wait.")
    quote = _last_quote(position)
    bid = held_bid(position.side, quote)
    if bid is None:
        raise ValueError("There is no bid to sell into.")
    now = now or timezone.now()
    replaced = next((o for o in on_market if o.purpose in Order.CLOSING_PURPOSES), None)
    result = strategy.DecisionResult(
        reason=Reason.EXIT,
        side=position.side,
        price=bid,
        count=position.count,
        details={
            "exit": "operator_flatten",
            "by": getattr(user, "username", "") or "operator",
            "bid": str(bid),
            "chain_start": str(bid),
            "reprice_steps": [],
            **({"replaces": replaced.client_order_id} if replaced else {}),
        },
    )
    with transaction.atomic():
        for order in on_market:
            cancel_request(order, Order.CancelReason.FLATTEN, now=now)
        [decision_id] = decisions_write(
            [
                PlannedDecision(
                    result,
                    position.market_id,
                    quote,
                    purpose=Order.Purpose.FLATTEN,
                    action="sell",
                    replaces_id=replaced.pk if replaced else None,
                )
            ],
            mode=position.mode,
            run=None,
            now=now,
        )
    return Order.objects.get(decision_id=decision_id)


def tickers_awaiting_results(*, now: datetime) -> list[str]:
    """Closed markets without a result that we hold a position in or forecast."""
    unsettled = Market.objects.filter(result="", close_time__lte=now)
    held = unsettled.filter(positions__status=Position.Status.OPEN)
    forecast = unsettled.filter(forecasts__valid=True, forecasts__scored_at__isnull=True)
    return sorted(
        set(held.values_list("ticker", flat=True)) | set(forecast.values_list("ticker", flat=True))
    )


# --- The cycle ------------------------------------------------------------------------------


# Exit codes of the job commands (trading_cycle, reconcile, ...), for cron, systemd and
# container checks: 0 the run finished, EXIT_FAILED it failed, EXIT_SKIPPED another run holds
# the lease (sysexits' EX_TEMPFAIL: try again later). 2 stays argparse's "bad usage".
EXIT_FAILED = 1
EXIT_SKIPPED = 75


def run_job(job: str, mode: str, fn: Callable[[JobRun, int], CycleReport]) -> JobRun:
    """Run ``fn`` under the trading lease and record the run (the heartbeat /health/ reads).

    Runs left "running" by a process that died are marked abandoned first (``runs_abandon``).
    The run's outcome is saved before the lease is released, so no one sees it "running"
    without a holder."""
    owner = _owner()
    token = lease_acquire(LEASE_NAME, owner=owner)
    if token is None:
        runs_abandon()  # a run whose host is gone is abandoned once its lease expires
        return JobRun.objects.create(
            job=job,
            mode=mode,
            owner=owner,
            status=JobRun.Status.SKIPPED,
            finished_at=timezone.now(),
            summary="skipped: another run holds the lease",
        )
    try:
        runs_abandon()
        run = JobRun.objects.create(job=job, mode=mode, owner=owner)
        try:
            report = fn(run, token)
        except Exception as exc:
            logger.exception("Job %s failed", job)
            if isinstance(exc, ExchangeAuthError) or getattr(exc, "status", None) == 401:
                halt(
                    "the exchange rejected our credentials (HTTP 401): check the API key and clock"
                )
            run.status = JobRun.Status.FAILED
            run.error = redact("".join(traceback.format_exception_only(type(exc), exc)))[:5000]
            run.summary = f"failed: {failure_reason(exc)}"[:500]
        else:
            run.status = JobRun.Status.OK
            run.counts = report.counts
            run.summary = report.summary()[:500]
            run.simulated_now = report.now
        run.finished_at = timezone.now()
        run.heartbeat_at = run.finished_at
        run.save()
    finally:
        lease_release(LEASE_NAME, token)
    return run


def job_exit(run: JobRun) -> str:
    """A job command's ending: the run's summary when it finished, else a ``CommandError``
    with ``EXIT_FAILED`` or ``EXIT_SKIPPED`` (printed redacted, as the run stored it)."""
    from django.core.management.base import CommandError

    if run.status == JobRun.Status.SKIPPED:
        raise CommandError(f"{run.job} {run.summary}", returncode=EXIT_SKIPPED)
    if run.status != JobRun.Status.OK:
        raise CommandError(f"{run.job} {run.summary} (run #{run.pk})", returncode=EXIT_FAILED)
    return run.summary


def trading_cycle_run(
    *,
    exchange: Exchange,
    forecaster: Forecaster,
    mode: str,
    token: int | None = None,
    run: JobRun | None = None,
    skill: Callable[[str], bool] | None = None,
) -> CycleReport:
    """One full cycle: reconcile, cancel, decide, execute, track exits, execute, reconcile."""
    now = exchange.now()
    report = CycleReport(mode, now)
    # One read of the markets per cycle: every step below works at the same ``now``.
    quotes = exchange.open_markets()
    reconcile_run(exchange=exchange, mode=mode, now=now, report=report, run=run, quotes=quotes)
    # Expired entries, exits above the bid and whatever an operator asked: cancelled first; when
    # any cancel went out, reconcile again so that decide and track see the final fills.
    sent_before = report.counts.get("orders_canceled", 0) + report.counts.get("cancels_refused", 0)
    cancels_run(
        exchange=exchange, mode=mode, now=now, report=report, quotes=quotes, lease_token=token
    )
    if report.counts.get("orders_canceled", 0) + report.counts.get("cancels_refused", 0) > (
        sent_before
    ):
        reconcile_run(exchange=exchange, mode=mode, now=now, report=report, run=run, quotes=quotes)
    reconciled_at = timezone.now()
    scored = ledger.forecasts_score(now=now, mode=mode)
    if scored:
        report.add("forecasts_scored", scored)
    if skill is None:
        # Fail closed: a forecaster trades only once it has beaten the market on settled
        # forecasts (RiskSettings.skill_min_settled), judged on what was known at ``now``.
        skill = ledger.cycle_skill_gate(mode=mode, now=now)
    decide_run(
        exchange=exchange,
        forecaster=forecaster,
        mode=mode,
        now=now,
        run=run,
        report=report,
        quotes=quotes,
        skill=skill,
    )
    execute_run(
        exchange=exchange,
        mode=mode,
        now=now,
        lease_token=token,
        report=report,
        reconciled_at=reconciled_at,
    )
    track_run(exchange=exchange, mode=mode, now=now, run=run, report=report, quotes=quotes)
    execute_run(
        exchange=exchange,
        mode=mode,
        now=now,
        lease_token=token,
        report=report,
        reconciled_at=reconciled_at,
    )
    reconcile_run(exchange=exchange, mode=mode, now=now, report=report, run=run, quotes=quotes)
    return report


__all__ = [
    "CycleReport",
    "cancels_run",
    "cancels_send",
    "decide_run",
    "execute_run",
    "reconcile_run",
    "track_run",
    "trading_cycle_run",
    "run_job",
    "job_exit",
    "runs_abandon",
    "halt",
]
