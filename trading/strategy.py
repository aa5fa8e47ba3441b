"""The pure decision code of the trading engine: no Django, no I/O, no clock.

Frozen dataclasses describe what a decision needs (``MarketView``, ``ForecastView``,
``PortfolioView``, ``PositionView``, ``RiskLimits``) and plain functions turn them into
outcomes (``DecisionResult``, ``ExitSignal``) that always carry a ``Reason`` and the numbers
behind it. Time (``now``) and configuration (``RiskLimits``) are arguments, never globals.
Every number is a ``decimal.Decimal``; a float handed to a view is refused.

Conventions
- Prices are dollars per contract of the side concerned: a NO price is what one NO contract
  costs. Kalshi quotes both sides of one book, so the NO ask is ``1 − YES bid`` and the NO bid
  is ``1 − YES ask``; ``MarketView`` derives a missing quote from the other side that way.
- Fees come from ``fee_fn(count, price)``. By default it is the taker fee of the market's own
  ``FeeSchedule`` (``MarketView.fees``: its series' fee type and multiplier, the event's
  override, the waiver) at the decision's ``now``: an entry crosses the book, so it pays the
  taker rate. ``markets.fees`` is imported lazily because it pulls in Django through
  ``markets.money``.
- ``MarketView.volume`` None means unknown (recorded data): the volume filter then does not
  apply. A volume of 0 is zero and fails any ``min_volume`` above 0.
- Positions are one net position per market (docs/ORDER_PROTOCOL.md): ``PositionState`` holds
  ``count`` contracts of ``side`` and their ``cost_basis`` (fees excluded); buying the opposite
  side closes contracts first, so YES and NO are never open together in one market.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

from trading.reasons import Reason

if TYPE_CHECKING:
    from markets.fees import FeeSchedule

FeeFn = Callable[[Decimal, Decimal], Decimal]

ZERO = Decimal(0)
ONE = Decimal(1)
CENT = Decimal("0.01")
MONEY_QUANTUM = Decimal("0.000001")  # amounts: 6 decimals (markets.money.MONEY_PLACES)
RATIO_QUANTUM = Decimal("0.000001")  # edges, fractions: 6 decimals (RatioField)

YES = "yes"
NO = "no"
SIDES = (YES, NO)
BUY = "buy"
SELL = "sell"
ACTIONS = (BUY, SELL)

STATE_ACTIVE = "active"
STATE_REDUCE_ONLY = "reduce_only"
STATE_HALTED = "halted"

SETTLEMENT_RESULTS = ("yes", "no", "void", "scalar")

_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)


@cache
def _taker_fee() -> FeeFn:
    """Kalshi's taker fee, imported on first use: this module stays free of Django at import."""
    from markets.fees import taker_fee

    return taker_fee


def taker_fee_default(count: Decimal, price: Decimal) -> Decimal:
    """Kalshi's taker fee."""
    return _taker_fee()(count, price)


def _fee_fn(fee_fn: FeeFn | None) -> FeeFn:
    return _taker_fee() if fee_fn is None else fee_fn


def market_fee_fn(fees: FeeSchedule | None, *, at: datetime | None, maker: bool = False) -> FeeFn:
    """The fee of one order on a market with this schedule (None: Kalshi's default), taker
    unless ``maker``, at time ``at`` (a waived market charges nothing before its waiver ends)."""
    from markets.fees import DEFAULT_FEES, order_fee

    schedule = DEFAULT_FEES if fees is None else fees

    def fee(count: Decimal, price: Decimal) -> Decimal:
        return order_fee(count, price, fees=schedule, maker=maker, at=at)

    return fee


def other_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'yes' or 'no', not {side!r}")
    return NO if side == YES else YES


def _refuse_floats(obj: Any) -> None:
    for name in _field_names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, float):
            raise TypeError(f"{type(obj).__name__}.{name} is a float ({value!r}); use Decimal")


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _hours(delta: timedelta) -> Decimal:
    """A timedelta in hours, exactly (no float)."""
    return Decimal(delta // timedelta(microseconds=1)) / _MICROSECONDS_PER_HOUR


def _s(value: Any) -> Any:
    """A number as a string for JSON details; None, strings and booleans stay as they are."""
    if value is None or value.__class__ in _AS_IS:
        return value
    return str(value)


_AS_IS = frozenset({str, bool})


def _is_price(value: Decimal | None) -> bool:
    """An executable price: strictly between 0 and 1 (0 = no bid, 1 = no ask)."""
    return value is not None and ZERO < value < ONE


def _whole(value: Decimal) -> Decimal:
    """Whole contracts, rounded down."""
    return value.to_integral_value(rounding=ROUND_FLOOR)


# --- Inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskLimits:
    """The hard limits (docs/RISK.md). Fractions are fractions: 0.05 = 5%.

    Field names match ``trading.models.RiskSettings``; ``RiskLimits.from_object(settings)``
    copies them. A value of 0 for ``stop_loss_pct``, ``take_profit_pct``, ``max_hold_hours``
    or ``exit_before_close_hours`` disables that exit.
    """

    max_position_pct: Decimal = Decimal("0.05")
    max_open_positions: int = 15
    max_daily_loss_pct: Decimal = Decimal("0.15")
    cash_reserve_pct: Decimal = Decimal("0.10")
    max_category_exposure_pct: Decimal = Decimal("0.30")
    min_volume: Decimal = Decimal("200")
    max_days_to_close: int | Decimal = 30
    min_hours_to_close: int | Decimal = 1
    min_confidence: Decimal = Decimal("0.50")
    edge_high: Decimal = Decimal("0.06")
    edge_medium: Decimal = Decimal("0.08")
    edge_low: Decimal = Decimal("0.12")
    high_confidence: Decimal = Decimal("0.8")
    medium_confidence: Decimal = Decimal("0.6")
    kelly_fraction: Decimal = Decimal("0.75")
    max_kelly: Decimal = Decimal("0.25")
    stop_loss_pct: Decimal = Decimal("0.30")
    take_profit_pct: Decimal = Decimal("0.50")
    max_hold_hours: int | Decimal = 240
    exit_before_close_hours: int | Decimal = 1
    reanalyse_minutes: int | Decimal = 60
    excluded_categories: tuple[str, ...] = ()
    max_contracts_per_order: int | Decimal = 1000
    entry_order_ttl_seconds: int | Decimal = 120
    exit_floor_pct: Decimal = Decimal("0.50")

    def __post_init__(self) -> None:
        _refuse_floats(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | Decimal) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"RiskLimits.{f.name} must not be negative ({value})")
        if isinstance(self.excluded_categories, str):
            raise TypeError("RiskLimits.excluded_categories is a tuple of names, not a string")

    @classmethod
    def from_object(cls, obj: Any) -> RiskLimits:
        """Build from any object with the same attribute names (e.g. a ``RiskSettings`` row).

        ``excluded_categories`` may be a comma-separated string there.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(obj, f.name):
                values[f.name] = getattr(obj, f.name)
        categories = values.get("excluded_categories")
        if isinstance(categories, str):
            values["excluded_categories"] = tuple(
                c.strip() for c in categories.split(",") if c.strip()
            )
        elif categories is not None:
            values["excluded_categories"] = tuple(categories)
        return cls(**values)


@dataclass(frozen=True)
class MarketView:
    """What the strategy sees of one market. Quotes are ``None`` when there is none.

    ``status`` uses Kalshi's *response* vocabulary; only ``"active"`` is tradable.
    ``yes_ask_depth``/``no_ask_depth`` are the contracts offered at the best ask (None = unknown).
    ``volume`` None = unknown (the volume filter does not apply). ``fees`` is the market's
    ``markets.fees.FeeSchedule`` (None: Kalshi's default quadratic schedule).
    """

    ticker: str
    category: str
    status: str
    close_time: datetime | None
    volume: Decimal | None
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    no_bid: Decimal | None = None
    no_ask: Decimal | None = None
    yes_ask_depth: Decimal | None = None
    no_ask_depth: Decimal | None = None
    fees: FeeSchedule | None = None

    def __post_init__(self) -> None:
        _refuse_floats(self)

    def taker_fee_fn(self, now: datetime) -> FeeFn:
        """The fee of an entry on this market (it crosses the book: taker) at ``now``."""
        return market_fee_fn(self.fees, at=now)

    def ask(self, side: str) -> Decimal | None:
        """The executable buy price for ``side`` (derived as ``1 − other bid`` if missing)."""
        direct, opposite_bid = (
            (self.yes_ask, self.no_bid) if side == YES else (self.no_ask, self.yes_bid)
        )
        if direct is None and opposite_bid is not None:
            direct = ONE - opposite_bid
        return direct if _is_price(direct) else None

    def bid(self, side: str) -> Decimal | None:
        """The executable sell price for ``side`` (derived as ``1 − other ask`` if missing)."""
        direct, opposite_ask = (
            (self.yes_bid, self.no_ask) if side == YES else (self.no_bid, self.yes_ask)
        )
        if direct is None and opposite_ask is not None:
            direct = ONE - opposite_ask
        return direct if _is_price(direct) else None

    def ask_depth(self, side: str) -> Decimal | None:
        return self.yes_ask_depth if side == YES else self.no_ask_depth


@dataclass(frozen=True)
class ForecastView:
    """A forecast of P(YES). ``valid`` is False when the forecaster's output was rejected;
    ``has_skill`` False means it may forecast (and be scored) but not trade."""

    probability: Decimal | None
    confidence: Decimal | None
    forecaster: str = ""
    valid: bool = True
    has_skill: bool = True


def forecast_problem(forecast: ForecastView) -> str | None:
    """Why a forecast cannot be used (None if it can): invalid, missing or out-of-range numbers."""
    if not forecast.valid:
        return "forecast marked invalid"
    for name in ("probability", "confidence"):
        value = getattr(forecast, name)
        if not isinstance(value, Decimal):
            return f"{name} is not a Decimal ({type(value).__name__})"
        if not value.is_finite() or value < ZERO or value > ONE:
            return f"{name} {value} is outside [0, 1]"
    return None


@dataclass(frozen=True)
class PortfolioView:
    """The account as the strategy needs it.

    - ``equity``: cash plus the mark value of positions; the bankroll for sizing.
    - ``open_positions``: markets with a non-zero position (pending orders not included).
    - ``pending_tickers``: markets with an order that is submitting or of unknown outcome, or
      otherwise still open; they block that market and count toward ``max_open_positions``.
    - ``resting_entry_tickers``: markets with an entry order resting on the exchange; they are
      not candidates for another entry and count toward ``max_open_positions``.
    - ``category_exposure``: cost of open positions and of what open buy orders may still
      buy (their unfilled quantity at the limit price, fees included) per category.
    - ``committed``: the cash those open buy orders may still take (fees included); the cash
      available for a new order is ``cash − committed``.
    - ``daily_pnl``: realized plus unrealized P&L since the start of the (UTC) day.
    """

    cash: Decimal
    equity: Decimal
    open_positions: int = 0
    open_tickers: frozenset[str] = frozenset()
    category_exposure: Mapping[str, Decimal] = field(default_factory=dict)
    daily_pnl: Decimal = ZERO
    pending_tickers: frozenset[str] = frozenset()
    trading_state: str = STATE_ACTIVE
    resting_entry_tickers: frozenset[str] = frozenset()
    committed: Decimal = ZERO

    @property
    def available_cash(self) -> Decimal:
        """Cash not promised to open buy orders."""
        return self.cash - self.committed

    def __post_init__(self) -> None:
        _refuse_floats(self)
        for value in self.category_exposure.values():
            if isinstance(value, float):
                raise TypeError("PortfolioView.category_exposure holds a float; use Decimal")


@dataclass(frozen=True)
class PositionView:
    """An open position for the exit check. ``avg_price`` is the price paid per contract of
    ``side`` (fees excluded); ``bid`` is the current best bid *for that side* (for a NO
    position, the NO bid = 1 − YES ask), None when nobody bids."""

    ticker: str
    side: str
    count: Decimal
    avg_price: Decimal
    opened_at: datetime
    close_time: datetime | None
    bid: Decimal | None

    def __post_init__(self) -> None:
        _refuse_floats(self)
        if self.side not in SIDES:
            raise ValueError(f"PositionView.side must be 'yes' or 'no', not {self.side!r}")


# --- Candidate filter -----------------------------------------------------------------------


def candidate_filter(
    view: MarketView,
    portfolio: PortfolioView,
    limits: RiskLimits,
    *,
    now: datetime,
    last_analysed_at: datetime | None = None,
) -> Reason | None:
    """The first reason to skip this market before forecasting it, or None if it is a candidate.

    Time to close must be more than ``max(min_hours_to_close, exit_before_close_hours)`` and
    at most ``max_days_to_close`` days. Order: status, volume, time to close, category, open
    position, entry resting, order pending, recently analysed, no executable quote on either side.
    The volume filter applies to every known volume (0 included) and not to an unknown one (None).
    """
    if view.status != "active":
        return Reason.SKIP_STATUS
    if view.volume is not None and view.volume < limits.min_volume:
        return Reason.SKIP_VOLUME
    if view.close_time is None:
        return Reason.SKIP_CLOSE_TIME
    hours_to_close = _hours(view.close_time - now)
    # Too close to close: within min_hours_to_close, or within the exit window (a new entry
    # there would be sold again at once by ``exit_signal``).
    too_close = max(Decimal(limits.min_hours_to_close), Decimal(limits.exit_before_close_hours))
    if hours_to_close <= too_close:
        return Reason.SKIP_CLOSE_TIME
    if hours_to_close > Decimal(limits.max_days_to_close) * 24:
        return Reason.SKIP_CLOSE_TIME
    excluded = {c.casefold() for c in limits.excluded_categories}
    if view.category.casefold() in excluded:
        return Reason.SKIP_CATEGORY
    if view.ticker in portfolio.open_tickers:
        return Reason.SKIP_OPEN_POSITION
    if view.ticker in portfolio.resting_entry_tickers:
        return Reason.SKIP_ENTRY_RESTING
    if view.ticker in portfolio.pending_tickers:
        return Reason.SKIP_ORDER_PENDING
    if last_analysed_at is not None:
        if _hours(now - last_analysed_at) * 60 < Decimal(limits.reanalyse_minutes):
            return Reason.SKIP_RECENTLY_ANALYSED
    if view.ask(YES) is None and view.ask(NO) is None:
        return Reason.SKIP_NO_QUOTE
    return None


# --- Edge -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """Expected value per contract of buying ``count`` contracts of ``side`` at ``price``.

    ``raw_edge = win_probability − price``; ``fee_per_contract`` is the fee for ``count``
    contracts divided by ``count``, rounded up to $0.000001; ``edge = raw_edge − fee_per_contract``.
    """

    side: str
    price: Decimal
    count: Decimal
    win_probability: Decimal
    raw_edge: Decimal
    fee: Decimal
    fee_per_contract: Decimal
    edge: Decimal

    def as_details(self, prefix: str = "") -> dict[str, Any]:
        return {
            f"{prefix}side": self.side,
            f"{prefix}price": _s(self.price),
            f"{prefix}count": _s(self.count),
            f"{prefix}win_probability": _s(self.win_probability),
            f"{prefix}raw_edge": _s(self.raw_edge),
            f"{prefix}fee": _s(self.fee),
            f"{prefix}fee_per_contract": _s(self.fee_per_contract),
            f"{prefix}edge": _s(self.edge),
        }


def edge_for_side(
    probability: Decimal,
    side: str,
    price: Decimal,
    count: Decimal = ONE,
    *,
    fee_fn: FeeFn | None = None,
) -> Edge:
    """The fee-inclusive edge of buying ``side`` at ``price`` given P(YES) = ``probability``.

    YES at the YES ask a: ``q − a − fee(C, a)/C``; NO at the NO ask b: ``(1 − q) − b − fee(C, b)/C``.
    """
    if count <= 0:
        raise ValueError(f"edge: count must be positive, not {count}")
    other_side(side)  # validates the side
    win = probability if side == YES else ONE - probability
    fee = _fee_fn(fee_fn)(count, price)
    fee_per_contract = (fee / count).quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)
    raw = win - price
    return Edge(
        side=side,
        price=price,
        count=count,
        win_probability=win,
        raw_edge=raw,
        fee=fee,
        fee_per_contract=fee_per_contract,
        edge=raw - fee_per_contract,
    )


def edge_after_fees(
    forecast: ForecastView,
    view: MarketView,
    count: Decimal = ONE,
    *,
    fee_fn: FeeFn | None = None,
) -> Edge | None:
    """The better of buying YES at the YES ask and buying NO at the NO ask (ties go to YES).

    None when neither side has an executable ask. ``count`` sets the fee rounding: the fee
    per contract at 1 contract is the largest, so the default is the conservative one.
    """
    problem = forecast_problem(forecast)
    if problem:
        raise ValueError(f"edge_after_fees needs a usable forecast: {problem}")
    assert forecast.probability is not None
    return _best(_side_edges(forecast.probability, view, count, fee_fn))


def _side_edges(
    probability: Decimal, view: MarketView, count: Decimal, fee_fn: FeeFn | None
) -> list[Edge]:
    """The edge of each side that has an executable ask, YES first."""
    edges = []
    for side in SIDES:
        price = view.ask(side)
        if price is not None:
            edges.append(edge_for_side(probability, side, price, count, fee_fn=fee_fn))
    return edges


def _best(edges: list[Edge]) -> Edge | None:
    best: Edge | None = None
    for candidate in edges:
        if best is None or candidate.edge > best.edge:
            best = candidate
    return best


def edge_threshold(confidence: Decimal, limits: RiskLimits) -> Decimal:
    """The minimum edge after fees for a forecast of this confidence (docs/RISK.md)."""
    if confidence >= limits.high_confidence:
        return limits.edge_high
    if confidence >= limits.medium_confidence:
        return limits.edge_medium
    return limits.edge_low


# --- Sizing ---------------------------------------------------------------------------------


def kelly_fraction_for(prob_win: Decimal, price: Decimal) -> Decimal:
    """Full-Kelly fraction of bankroll for a binary contract bought at ``price`` that pays $1
    with probability ``prob_win``: ``(q − p)/(1 − p)``, clipped to [0, 1], rounded down to 6 dp."""
    if price >= ONE:
        return ZERO
    fraction = (prob_win - price) / (ONE - price)
    fraction = min(max(fraction, ZERO), ONE)
    return fraction.quantize(RATIO_QUANTUM, rounding=ROUND_FLOOR)


@dataclass(frozen=True)
class Sizing:
    """How many contracts to buy and which limit bound the number.

    ``limited_by`` is one of: ``kelly`` (fractional Kelly), ``max_kelly``, ``position_pct``,
    ``cash_reserve``, ``max_contracts``, ``depth``.
    """

    count: Decimal
    cost: Decimal
    fee: Decimal
    kelly_full: Decimal
    kelly: Decimal
    budget: Decimal
    limited_by: str

    def as_details(self) -> dict[str, Any]:
        return {
            "proposed_count": _s(self.count),
            "cost": _s(self.cost),
            "order_fee": _s(self.fee),
            "kelly_full": _s(self.kelly_full),
            "kelly": _s(self.kelly),
            "budget": _s(self.budget),
            "limited_by": self.limited_by,
        }


def order_cost(count: Decimal, price: Decimal, *, fee_fn: FeeFn | None = None) -> Decimal:
    """Cash a buy of ``count`` at ``price`` takes, fee included."""
    if count <= 0:
        return ZERO
    return count * price + _fee_fn(fee_fn)(count, price)


def sizing_for(
    edge: Edge,
    forecast: ForecastView,
    bankroll: Decimal,
    limits: RiskLimits,
    depth: Decimal | None = None,
    *,
    cash: Decimal | None = None,
    fee_fn: FeeFn | None = None,
) -> Sizing:
    """Whole contracts to buy: the largest count whose cost (fees included) fits every budget.

    Budgets in dollars: ``min(kelly_fraction × Kelly, max_kelly) × bankroll``,
    ``max_position_pct × bankroll`` and, when ``cash`` is given, ``cash − cash_reserve_pct ×
    bankroll``. Counts: at most ``max_contracts_per_order`` and the ``depth`` at the ask.
    Kelly is computed at the price plus the fee per contract (``edge.fee_per_contract``).
    """
    fee_fn = _fee_fn(fee_fn)
    price = edge.price
    assert forecast.probability is not None
    win = forecast.probability if edge.side == YES else ONE - forecast.probability
    kelly_full = kelly_fraction_for(win, price + edge.fee_per_contract)
    scaled = (kelly_full * limits.kelly_fraction).quantize(RATIO_QUANTUM, rounding=ROUND_FLOOR)
    kelly, kelly_name = (
        (scaled, "kelly") if scaled <= limits.max_kelly else (limits.max_kelly, "max_kelly")
    )
    bankroll = max(bankroll, ZERO)
    budgets = [(kelly * bankroll, kelly_name), (limits.max_position_pct * bankroll, "position_pct")]
    if cash is not None:
        budgets.append((cash - limits.cash_reserve_pct * bankroll, "cash_reserve"))
    budget, budget_name = min(budgets, key=lambda item: item[0])  # first wins a tie
    budget = max(budget, ZERO)

    def result(count: Decimal, limited_by: str) -> Sizing:
        fee = fee_fn(count, price) if count > 0 else ZERO
        cost = count * price + fee if count > 0 else ZERO
        return Sizing(count, cost, fee, kelly_full, kelly, budget, limited_by)

    if price <= 0:
        return result(ZERO, budget_name)
    caps = [(_whole(budget / price), budget_name)]
    caps.append((_whole(Decimal(limits.max_contracts_per_order)), "max_contracts"))
    if depth is not None:
        caps.append((_whole(max(depth, ZERO)), "depth"))
    upper, upper_name = min(caps, key=lambda item: item[0])
    if upper <= 0:
        return result(ZERO, upper_name)
    if order_cost(upper, price, fee_fn=fee_fn) <= budget:
        return result(upper, upper_name)
    # The fee pushes the cost over the budget: find the largest count that fits
    # (cost grows with the count, so bisect).
    low, high = 0, int(upper)  # cost(low) fits, cost(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if order_cost(Decimal(middle), price, fee_fn=fee_fn) <= budget:
            low = middle
        else:
            high = middle
    return result(Decimal(low), budget_name)


def size_position(
    edge: Edge,
    forecast: ForecastView,
    bankroll: Decimal,
    limits: RiskLimits,
    depth: Decimal | None = None,
    *,
    cash: Decimal | None = None,
    fee_fn: FeeFn | None = None,
) -> Decimal:
    """Whole contracts to buy (a Decimal with no fraction); see ``sizing_for``."""
    return sizing_for(edge, forecast, bankroll, limits, depth, cash=cash, fee_fn=fee_fn).count


# --- Risk checks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskCheck:
    """One hard limit checked against an order: the value it measured and the limit."""

    name: str
    passed: bool
    value: Decimal
    limit: Decimal
    reason: Reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": _s(self.value),
            "limit": _s(self.limit),
            "reason": self.reason.value,
        }


def daily_loss_breached(portfolio: PortfolioView, limits: RiskLimits) -> bool:
    """The daily-loss breaker: today's P&L has reached ``−max_daily_loss_pct × equity``.

    The same line as the ``daily_loss`` risk check; the engine then switches trading to
    reduce-only until an operator resumes it.
    """
    return not portfolio.daily_pnl > -(limits.max_daily_loss_pct * portfolio.equity)


def risk_check(
    order_cost: Decimal, category: str, portfolio: PortfolioView, limits: RiskLimits
) -> list[RiskCheck]:
    """Every hard limit for a new entry costing ``order_cost`` (fees included), in priority
    order: daily loss, open positions, position size, cash reserve, category exposure.

    - daily_loss: ``daily_pnl`` must stay above ``−max_daily_loss_pct × equity`` (at the limit
      new entries stop).
    - open_positions: positions plus pending or resting orders in other markets, with this
      one, at most ``max_open_positions``.
    - position_size: ``order_cost ≤ max_position_pct × equity``.
    - cash_reserve: ``cash − committed − order_cost ≥ cash_reserve_pct × equity`` (cash that
      open buy orders may still take is not available).
    - category_exposure: ``exposure[category] + order_cost ≤ max_category_exposure_pct × equity``.
    """
    equity = portfolio.equity
    daily_limit = -(limits.max_daily_loss_pct * equity)
    pending_elsewhere = (
        portfolio.pending_tickers | portfolio.resting_entry_tickers
    ) - portfolio.open_tickers
    positions_after = Decimal(portfolio.open_positions + len(pending_elsewhere) + 1)
    max_positions = Decimal(limits.max_open_positions)
    position_limit = limits.max_position_pct * equity
    cash_after = portfolio.available_cash - order_cost
    reserve = limits.cash_reserve_pct * equity
    exposure_after = portfolio.category_exposure.get(category, ZERO) + order_cost
    exposure_limit = limits.max_category_exposure_pct * equity
    return [
        RiskCheck(
            "daily_loss",
            portfolio.daily_pnl > daily_limit,
            portfolio.daily_pnl,
            daily_limit,
            Reason.RISK_DAILY_LOSS,
        ),
        RiskCheck(
            "open_positions",
            positions_after <= max_positions,
            positions_after,
            max_positions,
            Reason.RISK_OPEN_POSITIONS,
        ),
        RiskCheck(
            "position_size",
            order_cost <= position_limit,
            order_cost,
            position_limit,
            Reason.RISK_POSITION_SIZE,
        ),
        RiskCheck(
            "cash_reserve", cash_after >= reserve, cash_after, reserve, Reason.RISK_CASH_RESERVE
        ),
        RiskCheck(
            "category_exposure",
            exposure_after <= exposure_limit,
            exposure_after,
            exposure_limit,
            Reason.RISK_CATEGORY_EXPOSURE,
        ),
    ]


# --- Decide ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionResult:
    """The outcome for one candidate: a ``Reason`` and everything behind it.

    ``side``/``price``/``edge`` describe the best buy found even when it was not taken;
    ``count`` is set only when ``reason`` is ``TRADED`` (the proposed count of a rejected
    order is in ``details["proposed_count"]``). ``price`` is the limit price: the ask of
    ``side``, in that side's terms. ``cost`` (set with ``count``) is what the order may take,
    its fee under the market's schedule included: the order's ``max_cost``. ``details`` holds
    every number as a string (JSON-ready).
    """

    reason: Reason
    side: str | None = None
    price: Decimal | None = None
    count: Decimal | None = None
    cost: Decimal | None = None
    edge: Edge | None = None
    threshold: Decimal | None = None
    kelly: Decimal | None = None
    checks: list[RiskCheck] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def traded(self) -> bool:
        return self.reason is Reason.TRADED

    @property
    def action(self) -> str | None:
        return BUY if self.traded else None


def _market_details(view: MarketView, now: datetime) -> dict[str, Any]:
    hours = None
    if view.close_time is not None:
        hours = _hours(view.close_time - now).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    return {
        "ticker": view.ticker,
        "category": view.category,
        "status": view.status,
        "now": now.isoformat(),
        "hours_to_close": _s(hours),
        "volume": _s(view.volume),
        "yes_bid": _s(view.yes_bid),
        "yes_ask": _s(view.yes_ask),
        "no_bid": _s(view.no_bid),
        "no_ask": _s(view.no_ask),
        "yes_ask_depth": _s(view.yes_ask_depth),
        "no_ask_depth": _s(view.no_ask_depth),
        **_fee_details(view, now),
    }


def _fee_details(view: MarketView, now: datetime) -> dict[str, Any]:
    if view.fees is None:
        return {}
    waived = view.fees.waived_at(now)
    return {
        "fee_type": view.fees.fee_type,
        "fee_multiplier": _s(view.fees.multiplier),
        **({"fee_waived": True} if waived else {}),
    }


def decide(
    view: MarketView,
    forecast: ForecastView | None,
    portfolio: PortfolioView,
    limits: RiskLimits,
    *,
    now: datetime,
    last_analysed_at: datetime | None = None,
    fee_fn: FeeFn | None = None,
    screened: bool = False,
) -> DecisionResult:
    """Decide whether to buy in this market, and say why in every case.

    Steps (the first that stops the candidate names the reason): trading state (halted,
    reduce-only) → candidate filter → forecast (missing, invalid, no skill, low confidence) →
    edge after fees at the ask for 1 contract vs the confidence tier's threshold → depth →
    size (fractional Kelly, caps) → risk checks on the order's cost → TRADED.

    ``screened=True`` says the caller has just run ``candidate_filter`` on this view with this
    portfolio, limits and clock, and it passed (the engine does, before paying for a forecast);
    the filter is then not run twice.

    Every fee is the market's (``view.fees``, taker, at ``now``) unless ``fee_fn`` is given.
    """
    fee_fn = view.taker_fee_fn(now) if fee_fn is None else fee_fn
    details: dict[str, Any] = _market_details(view, now)
    details["trading_state"] = portfolio.trading_state

    def done(reason: Reason, **kwargs: Any) -> DecisionResult:
        details["reason"] = reason.value
        return DecisionResult(reason=reason, details=details, **kwargs)

    if portfolio.trading_state == STATE_REDUCE_ONLY:
        return done(Reason.REDUCE_ONLY)
    if portfolio.trading_state != STATE_ACTIVE:  # halted, or anything unknown: fail closed
        return done(Reason.TRADING_HALTED)

    if not screened:
        skip = candidate_filter(view, portfolio, limits, now=now, last_analysed_at=last_analysed_at)
        if skip is not None:
            return done(skip)

    if forecast is None:
        return done(Reason.NO_FORECAST)
    details.update(
        forecaster=forecast.forecaster,
        probability=_s(forecast.probability),
        confidence=_s(forecast.confidence),
        forecast_valid=forecast.valid,
        has_skill=forecast.has_skill,
    )
    problem = forecast_problem(forecast)
    if problem is not None:
        details["forecast_problem"] = problem
        return done(Reason.INVALID_FORECAST)
    assert forecast.probability is not None and forecast.confidence is not None
    if not forecast.has_skill:
        return done(Reason.NO_SKILL)
    details["min_confidence"] = _s(limits.min_confidence)
    if forecast.confidence < limits.min_confidence:
        return done(Reason.LOW_CONFIDENCE)

    side_edges = _side_edges(forecast.probability, view, ONE, fee_fn)
    for side_edge in side_edges:
        details[f"edge_{side_edge.side}"] = _s(side_edge.edge)
    edge = _best(side_edges)
    if edge is None:
        return done(Reason.SKIP_NO_QUOTE)
    details.update(edge.as_details())
    threshold = edge_threshold(forecast.confidence, limits)
    details["threshold"] = _s(threshold)
    seen = {"side": edge.side, "price": edge.price, "edge": edge, "threshold": threshold}
    if edge.edge < threshold:
        return done(Reason.EDGE_TOO_SMALL, **seen)

    depth = view.ask_depth(edge.side)
    if depth is not None and _whole(depth) <= 0:
        return done(Reason.INSUFFICIENT_DEPTH, **seen)

    sizing = sizing_for(
        edge,
        forecast,
        portfolio.equity,
        limits,
        depth,
        cash=portfolio.available_cash,
        fee_fn=fee_fn,
    )
    details.update(sizing.as_details())
    seen["kelly"] = sizing.kelly
    # With nothing to buy, check the limits against the smallest order (one contract) so the
    # decision names the limit that left no room, if one did.
    checked_count = sizing.count if sizing.count > 0 else ONE
    checked_cost = order_cost(checked_count, edge.price, fee_fn=fee_fn)
    checks = risk_check(checked_cost, view.category, portfolio, limits)
    details["checked_cost"] = _s(checked_cost)
    details["checks"] = [check.as_dict() for check in checks]
    seen["checks"] = checks
    failed = next((check for check in checks if not check.passed), None)
    if failed is not None:
        return done(failed.reason, **seen)
    if sizing.count <= 0:
        return done(Reason.SIZE_ZERO, **seen)

    # The fee per contract of n contracts is never more than that of one (ceil(n·f) ≤
    # n·ceil(f)), so the edge at the order's size is at least the edge that passed.
    final_edge = edge_for_side(
        forecast.probability, edge.side, edge.price, sizing.count, fee_fn=fee_fn
    )
    details.update(final_edge.as_details(prefix="order_"))
    seen["edge"] = final_edge
    return done(Reason.TRADED, count=sizing.count, cost=sizing.cost, **seen)


# --- Exits ----------------------------------------------------------------------------------


class ExitReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    BEFORE_CLOSE = "before_close"
    MAX_HOLD = "max_hold"


@dataclass(frozen=True)
class ExitSignal:
    """Sell ``count`` contracts of ``side`` at ``price`` (the current bid of that side)."""

    ticker: str
    side: str
    count: Decimal
    price: Decimal
    reason: ExitReason
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return SELL

    @property
    def decision_reason(self) -> Reason:
        return Reason.EXIT


def exit_signal(position: PositionView, limits: RiskLimits, *, now: datetime) -> ExitSignal | None:
    """Whether to close this position now, and at what price; None to keep it.

    The position is valued at the bid of the side held, so YES and NO positions are treated
    alike: ``return = (bid − avg_price) / avg_price``. Checked in order: stop-loss
    (return ≤ −stop_loss_pct), take-profit (return ≥ take_profit_pct), ahead of close (hours
    to close ≤ exit_before_close_hours), max hold (hours held ≥ max_hold_hours). Without a
    bid nothing can be sold, so there is no signal (the position is held to settlement).
    """
    if position.count <= 0 or not _is_price(position.bid):
        return None
    bid = position.bid
    assert bid is not None
    details: dict[str, Any] = {
        "ticker": position.ticker,
        "side": position.side,
        "count": _s(position.count),
        "avg_price": _s(position.avg_price),
        "bid": _s(bid),
        "now": now.isoformat(),
    }
    reason: ExitReason | None = None
    if position.avg_price > 0:
        # Compared exactly; rounded only for display.
        change = (bid - position.avg_price) / position.avg_price
        details["return_pct"] = _s(change.quantize(RATIO_QUANTUM, rounding=ROUND_FLOOR))
        if limits.stop_loss_pct > 0 and change <= -limits.stop_loss_pct:
            reason = ExitReason.STOP_LOSS
        elif limits.take_profit_pct > 0 and change >= limits.take_profit_pct:
            reason = ExitReason.TAKE_PROFIT
    if reason is None and position.close_time is not None and limits.exit_before_close_hours:
        hours_to_close = _hours(position.close_time - now)
        details["hours_to_close"] = _s(hours_to_close.quantize(Decimal("0.01"), ROUND_FLOOR))
        if hours_to_close <= Decimal(limits.exit_before_close_hours):
            reason = ExitReason.BEFORE_CLOSE
    if reason is None and limits.max_hold_hours:
        held = _hours(now - position.opened_at)
        details["hours_held"] = _s(held.quantize(Decimal("0.01"), ROUND_FLOOR))
        if held >= Decimal(limits.max_hold_hours):
            reason = ExitReason.MAX_HOLD
    if reason is None:
        return None
    details["exit_reason"] = reason.value
    return ExitSignal(position.ticker, position.side, position.count, bid, reason, details)


# --- Resting exits: re-pricing toward the bid ------------------------------------------------


@dataclass(frozen=True)
class ExitTarget:
    """Where a resting exit should rest now: ``price`` (side terms), within its chain."""

    price: Decimal
    bid: Decimal
    floor: Decimal
    chain_start: Decimal
    exit: str
    restarted: bool  # a new exit signal started a new chain at the bid
    signal_details: dict[str, Any] = field(default_factory=dict)  # that signal's numbers


def exit_target(
    position: PositionView, chain_start: Decimal, chain_exit: str, limits: RiskLimits, *, now
) -> ExitTarget | None:
    """The price an exit of ``position`` (resting, or just cancelled to re-price it) moves to:
    the bid of the side held, but not below the chain's floor (``exit_floor_pct`` of the
    chain's first price ``chain_start``, rounded up to the cent); an exit signal other than
    the chain's own (``chain_exit``) starts a new chain at the bid. None without a bid."""
    bid = position.bid
    if bid is None or not (ZERO < bid < 1) or position.count <= 0:
        return None
    floor = (chain_start * limits.exit_floor_pct).quantize(CENT, rounding=ROUND_CEILING)
    signal = exit_signal(position, limits, now=now)
    if signal is not None and signal.reason.value != chain_exit:
        # A new signal (a stop-loss while a take-profit exit rests, the close drawing near...)
        # starts a new chain at the bid.
        return ExitTarget(bid, bid, bid, bid, signal.reason.value, True, signal.details)
    return ExitTarget(max(bid, floor), bid, floor, chain_start, chain_exit, False)


def reprice_target(target: ExitTarget | None, resting_price: Decimal) -> ExitTarget | None:
    """The new price for an exit resting at ``resting_price`` (side terms), or None to leave
    it: only an exit above the bid moves, and only down."""
    if target is None or target.bid >= resting_price:
        return None  # no bid, or the order is marketable: it fills where it is
    return target if target.price < resting_price else None


# --- Positions and P&L ----------------------------------------------------------------------


@dataclass(frozen=True)
class PositionState:
    """One market's net position: ``count`` contracts of ``side`` (None when flat).

    ``cost_basis`` is what the open contracts cost, fees excluded. ``realized_pnl`` is net of
    every fee paid (a fee is realized when paid); ``fees_paid`` totals them. So once the
    position is flat and settled, ``realized_pnl`` is exactly cash received minus cash paid.
    """

    side: str | None = None
    count: Decimal = ZERO
    cost_basis: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO

    def __post_init__(self) -> None:
        _refuse_floats(self)
        if self.count < 0 or self.cost_basis < 0:
            raise ValueError("PositionState count and cost_basis must not be negative")
        if (self.side is None) != (self.count == 0):
            raise ValueError("PositionState has a side exactly when count > 0")
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"PositionState.side must be 'yes' or 'no', not {self.side!r}")

    @property
    def is_open(self) -> bool:
        return self.count > 0

    @property
    def net_yes(self) -> Decimal:
        """Signed in YES contracts, as Kalshi's ``position_fp``: negative means NO."""
        return -self.count if self.side == NO else self.count

    @property
    def avg_price(self) -> Decimal | None:
        """Average price paid per contract of ``side`` (fees excluded)."""
        return self.cost_basis / self.count if self.count else None

    @property
    def gross_realized_pnl(self) -> Decimal:
        """Realized P&L before fees (what Kalshi reports as ``realized_pnl`` beside fees)."""
        return self.realized_pnl + self.fees_paid


def apply_fill(
    position_state: PositionState,
    side: str,
    action: str,
    count: Decimal,
    price: Decimal,
    fee: Decimal,
) -> tuple[PositionState, Decimal]:
    """Book one fill; return the new state and the P&L it realized (its fee included).

    ``price`` is per contract of ``side``. Selling a side is buying the other at ``1 − price``
    (Kalshi: "Selling Yes is equivalent to buying No"). Buying the side not held first closes
    held contracts: each closed contract realizes ``(1 − price_bought) − avg_price_held``,
    e.g. a YES long at a closed by buying NO at b realizes ``(1 − b) − a``; any excess opens
    the other side. The cost removed from a partly closed position is rounded up to $0.000001
    and the remainder stays in the cost basis, so realized + unrealized is exact.
    """
    for name, value in (("count", count), ("price", price), ("fee", fee)):
        if not isinstance(value, Decimal):
            raise TypeError(f"apply_fill: {name} must be a Decimal, not {type(value).__name__}")
    if side not in SIDES:
        raise ValueError(f"apply_fill: side must be 'yes' or 'no', not {side!r}")
    if action not in ACTIONS:
        raise ValueError(f"apply_fill: action must be 'buy' or 'sell', not {action!r}")
    if count <= 0:
        raise ValueError(f"apply_fill: count must be positive, not {count}")
    if price < 0 or price > 1:
        raise ValueError(f"apply_fill: price {price} is outside [0, 1]")
    if fee < 0:
        raise ValueError(f"apply_fill: fee {fee} is negative")

    # Every fill acquires contracts of one side at that side's price.
    acquired = side if action == BUY else other_side(side)
    acquired_price = price if action == BUY else ONE - price
    state = position_state
    realized = -fee
    fees_paid = state.fees_paid + fee

    if state.side is None or state.side == acquired:
        new = PositionState(
            side=acquired,
            count=state.count + count,
            cost_basis=state.cost_basis + count * acquired_price,
            realized_pnl=state.realized_pnl + realized,
            fees_paid=fees_paid,
        )
        return new, realized

    # Acquiring the other side closes held contracts at exit price 1 − acquired_price.
    closed = min(count, state.count)
    if closed == state.count:
        removed_cost = state.cost_basis
    else:
        removed_cost = (state.cost_basis * closed / state.count).quantize(
            MONEY_QUANTUM, rounding=ROUND_CEILING
        )
    realized += closed * (ONE - acquired_price) - removed_cost
    remaining = state.count - closed
    leftover = count - closed
    if remaining > 0:
        new = PositionState(
            side=state.side,
            count=remaining,
            cost_basis=state.cost_basis - removed_cost,
            realized_pnl=state.realized_pnl + realized,
            fees_paid=fees_paid,
        )
    elif leftover > 0:
        new = PositionState(
            side=acquired,
            count=leftover,
            cost_basis=leftover * acquired_price,
            realized_pnl=state.realized_pnl + realized,
            fees_paid=fees_paid,
        )
    else:
        new = PositionState(realized_pnl=state.realized_pnl + realized, fees_paid=fees_paid)
    return new, realized


def unrealized_pnl(position_state: PositionState, bid: Decimal) -> Decimal:
    """Mark-to-market P&L at ``bid``, the bid of the side held (conservative for longs)."""
    if not position_state.is_open:
        return ZERO
    return position_state.count * bid - position_state.cost_basis


def settlement_payout(
    position_state: PositionState, result: str, scalar_value: Decimal | None = None
) -> Decimal:
    """What the exchange pays for the position: $1 per winning contract; ``void`` refunds
    the cost basis; ``scalar`` pays ``scalar_value`` per YES contract and ``1 − scalar_value``
    per NO contract."""
    if result not in SETTLEMENT_RESULTS:
        raise ValueError(f"settle: result must be one of {SETTLEMENT_RESULTS}, not {result!r}")
    if result == "scalar":
        if not isinstance(scalar_value, Decimal) or not ZERO <= scalar_value <= ONE:
            raise ValueError(
                f"settle: a scalar result needs a value in [0, 1], not {scalar_value!r}"
            )
    if not position_state.is_open:
        return ZERO
    if result == "void":
        return position_state.cost_basis
    if result == "scalar":
        assert scalar_value is not None
        per_contract = scalar_value if position_state.side == YES else ONE - scalar_value
        return position_state.count * per_contract
    return position_state.count if position_state.side == result else ZERO


def settle_position(
    position_state: PositionState, result: str, scalar_value: Decimal | None = None
) -> tuple[PositionState, Decimal]:
    """Close the position at settlement: the flat state and the P&L realized by settling
    (``payout − cost_basis``; a void market realizes 0).

    Settling charges no fee. Kalshi's settlement ``fee_cost`` reports the trade fees already
    paid on the position's fills, which ``apply_fill`` booked when they were paid, so it is
    not subtracted here (that would count them twice): the position's total realized P&L is
    ``payout − cost basis − the fills' fees``, once.
    """
    payout = settlement_payout(position_state, result, scalar_value)
    realized = payout - position_state.cost_basis
    new = PositionState(
        realized_pnl=position_state.realized_pnl + realized,
        fees_paid=position_state.fees_paid,
    )
    return new, realized


def settle(
    position_state: PositionState, result: str, scalar_value: Decimal | None = None
) -> Decimal:
    """The P&L realized by settling the position; see ``settle_position``."""
    return settle_position(position_state, result, scalar_value)[1]
