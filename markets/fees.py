"""Kalshi trading fees, exact, for every series fee type (docs/FEES.md).

One function, ``kalshi_fee(fee_type, multiplier, count, price, maker=...)``, prices a trade of
``count`` contracts at ``price`` (dollars) on a series with Kalshi's ``fee_type`` and
``fee_multiplier``; ``order_fee`` / ``fill_fee`` add the market's waiver and the per-order
accumulation on top of it. Everything that predicts a fee (the strategy's edge, sizing and
``max_cost``, the simulator, the backtest, the live ``buy_max_cost`` guard) goes through them
with the market's ``FeeSchedule``, built in one place: ``schedule_for``.

Fee types (openapi ``FeeType``; Kalshi's fee schedule):

- ``quadratic`` (the General Trading Fees Table): takers pay ``0.07 × m × C × P × (1 − P)``,
  makers pay nothing;
- ``quadratic_with_maker_fees``: the same taker fee; makers pay 0.25 of the taker rate
  (``0.0175 × m × C × P × (1 − P)``);
- ``quadratic_with_combo_maker_fees``: the same, with makers at 0.5 of the taker rate;
- ``flat`` (the Specific Trading Fees Table). **Assumption**: we could not read that table
  (Kalshi's fee schedule PDF was not reachable, and no secondary source states it). ``flat`` is
  therefore modelled as ``FLAT_FEE_PER_CONTRACT × m × C`` for takers and makers alike, with
  ``FLAT_FEE_PER_CONTRACT = $0.0175``: the peak of the general taker curve, so a flat market is
  never predicted cheaper than the most expensive quadratic trade. Replace the constant when the
  table is known.

``m`` is the series' ``fee_multiplier`` (or the event's override); it scales the rate.

Rounding: the fee of an order is rounded **up to the cent** (``ROUND_CEILING``), which is what an
order pays once Kalshi's per-order fee accumulator has rebated the sub-cent rounding of its
individual fills. The fee of a fill is the growth of its order's fee, ``F(n_after) −
F(n_before)``, so the fills of one order always add up to the fee of filling it at once.

The exchange's own mechanics (Kalshi's fee_rounding doc) round each trade fee up to $0.0001 and
floor the balance change to the cent, producing a separate "rounding fee";
``exchange_fee_breakdown`` models that for checks against what Kalshi reports. The fee Kalshi
reports on fills is the truth that gets booked; these functions predict it. A settlement's
``fee_cost`` is *not* a further fee: it repeats the trade fees already paid on the position's
fills (Kalshi charges nothing to settle).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from markets.money import CENT, ONE, PRICE_QUANTUM, ZERO, MoneyError

TAKER_RATE = Decimal("0.07")
MAKER_RATE = Decimal("0.0175")
FLAT_FEE_PER_CONTRACT = Decimal("0.0175")  # assumed; see the module docstring

# Kalshi's series ``fee_type`` values (openapi ``FeeType``) and the maker share of the taker
# rate each charges. ``flat`` is per contract (see the module docstring).
QUADRATIC = "quadratic"
QUADRATIC_WITH_MAKER_FEES = "quadratic_with_maker_fees"
QUADRATIC_WITH_COMBO_MAKER_FEES = "quadratic_with_combo_maker_fees"
FLAT = "flat"
FEE_TYPES = (QUADRATIC, QUADRATIC_WITH_MAKER_FEES, QUADRATIC_WITH_COMBO_MAKER_FEES, FLAT)
_MAKER_SHARE = {
    QUADRATIC: ZERO,
    QUADRATIC_WITH_MAKER_FEES: Decimal("0.25"),
    QUADRATIC_WITH_COMBO_MAKER_FEES: Decimal("0.5"),
}


def check_fee_type(fee_type: str) -> str:
    """``fee_type`` if Kalshi documents it, else a ``MoneyError`` naming it."""
    if fee_type not in FEE_TYPES:
        raise MoneyError(f"fee: unknown fee type {fee_type!r} (known: {', '.join(FEE_TYPES)})")
    return fee_type


def check_multiplier(multiplier: Decimal) -> Decimal:
    """``multiplier`` if it is a finite, non-negative Decimal, else a ``MoneyError``."""
    if not isinstance(multiplier, Decimal) or not multiplier.is_finite() or multiplier < ZERO:
        raise MoneyError(f"fee: multiplier {multiplier!r} is not a finite Decimal >= 0")
    return multiplier


@dataclass(frozen=True)
class FeeSchedule:
    """How one market's trades are charged: its series' ``fee_type`` and ``fee_multiplier``
    (or the event's overrides) and the market's fee waiver, if any. Build it with
    ``schedule_for`` from stored or fetched fields."""

    fee_type: str = QUADRATIC
    multiplier: Decimal = ONE
    waived_until: datetime | None = None

    def __post_init__(self) -> None:
        check_fee_type(self.fee_type)
        check_multiplier(self.multiplier)

    def rate(self, *, maker: bool) -> Decimal:
        """The rate ``r`` of ``r × C × P × (1 − P)`` for a taker or a maker fill."""
        if self.fee_type not in _MAKER_SHARE:
            raise MoneyError(f"fee: no quadratic rate for fee type {self.fee_type!r}")
        share = _MAKER_SHARE[self.fee_type] if maker else ONE
        return TAKER_RATE * share * self.multiplier

    def waived_at(self, at: datetime | None) -> bool:
        """Whether trades at ``at`` are free (before the market's fee waiver expires)."""
        return self.waived_until is not None and at is not None and at < self.waived_until


DEFAULT_FEES = FeeSchedule()


def schedule_for(
    *,
    fee_type: str | None,
    multiplier: Decimal | None,
    fee_type_override: str | None = None,
    multiplier_override: Decimal | None = None,
    waived_until: datetime | None = None,
) -> FeeSchedule:
    """The one place a market's ``FeeSchedule`` is assembled.

    ``fee_type`` / ``multiplier`` are the series' fields, the overrides the event's: each
    override, when set, wins over its series field. A field nobody set (a series never fetched,
    recorded data) falls back to ``DEFAULT_FEES`` (quadratic, multiplier 1). ``waived_until`` is
    the market's ``fee_waiver_expiration_time``.
    """
    chosen_type = fee_type_override or fee_type or DEFAULT_FEES.fee_type
    if multiplier_override is not None:
        chosen_multiplier = multiplier_override
    elif multiplier is not None:
        chosen_multiplier = multiplier
    else:
        chosen_multiplier = DEFAULT_FEES.multiplier
    return FeeSchedule(chosen_type, chosen_multiplier, waived_until)


# Stored columns a ``Market`` query reads to build its schedule with ``schedule_from_values``.
MARKET_FEE_COLUMNS = (
    "event__series__fee_type",
    "event__series__fee_multiplier",
    "event__fee_type_override",
    "event__fee_multiplier_override",
    "fee_waiver_expiration_time",
)


def schedule_from_values(
    fee_type: str | None,
    multiplier: Decimal | None,
    fee_type_override: str | None,
    multiplier_override: Decimal | None,
    waived_until: datetime | None,
) -> FeeSchedule:
    """``schedule_for`` over the values of ``MARKET_FEE_COLUMNS``, in that order."""
    return schedule_for(
        fee_type=fee_type,
        multiplier=multiplier,
        fee_type_override=fee_type_override,
        multiplier_override=multiplier_override,
        waived_until=waived_until,
    )


def stored_fee_schedules(tickers: Iterable[str]) -> dict[str, FeeSchedule]:
    """The stored schedule of each known market (unknown tickers are absent)."""
    from markets.models import Market  # lazily: this module is imported outside Django too

    wanted = list(dict.fromkeys(tickers))
    found: dict[str, FeeSchedule] = {}
    for start in range(0, len(wanted), 500):
        rows = Market.objects.filter(ticker__in=wanted[start : start + 500]).values_list(
            "ticker", *MARKET_FEE_COLUMNS
        )
        for ticker, *values in rows:
            found[ticker] = schedule_from_values(*values)
    return found


def kalshi_fee(
    fee_type: str, multiplier: Decimal, count: Decimal, price: Decimal, *, maker: bool
) -> Decimal:
    """The fee of one order of ``count`` contracts at ``price`` on a series with this
    ``fee_type`` and ``multiplier``, taker or maker, rounded up to the cent (module doc)."""
    check_fee_type(fee_type)
    check_multiplier(multiplier)
    _check(count, price)
    if fee_type == FLAT:
        raw = FLAT_FEE_PER_CONTRACT * multiplier * count
        return raw.quantize(CENT, rounding=ROUND_CEILING)
    share = _MAKER_SHARE[fee_type] if maker else ONE
    return trading_fee(count, price, TAKER_RATE * share * multiplier)


def order_fee(
    count: Decimal,
    price: Decimal,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    maker: bool = False,
    at: datetime | None = None,
) -> Decimal:
    """The fee of one order that has filled ``count`` contracts at ``price`` (per-order
    rounding: the order's accumulated fee, rounded up to the cent). Zero while waived."""
    if fees.waived_at(at):
        _check(count, price)
        return ZERO
    return kalshi_fee(fees.fee_type, fees.multiplier, count, price, maker=maker)


def fill_fee(
    prev_count: Decimal,
    new_count: Decimal,
    price: Decimal,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    maker: bool = False,
    at: datetime | None = None,
) -> Decimal:
    """The fee of one fill taking an order's filled count from ``prev_count`` to ``new_count``:
    the growth of the order's fee, so the fills of one order add up to its single-fill fee."""
    if new_count < prev_count:
        raise MoneyError(f"fee: filled count went down ({prev_count} -> {new_count})")
    return order_fee(new_count, price, fees=fees, maker=maker, at=at) - order_fee(
        prev_count, price, fees=fees, maker=maker, at=at
    )


def _check(count: Decimal, price: Decimal) -> None:
    if not isinstance(count, Decimal) or not isinstance(price, Decimal):
        raise MoneyError("fees are computed on Decimal counts and prices only")
    if count < ZERO:
        raise MoneyError(f"fee: count {count} is negative")
    if price < ZERO or price > ONE:
        raise MoneyError(f"fee: price {price} is outside [0, 1]")


def raw_fee(count: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """The unrounded fee ``rate × C × P × (1 − P)`` (exact Decimal arithmetic)."""
    _check(count, price)
    return rate * count * price * (ONE - price)


def trading_fee(count: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """The fee for ``count`` contracts at ``price``, rounded up to the cent (0 for no contracts)."""
    return raw_fee(count, price, rate).quantize(CENT, rounding=ROUND_CEILING)


def taker_fee(count: Decimal, price: Decimal) -> Decimal:
    """Fee for taking liquidity: ``ceil_cent(0.07 × C × P × (1 − P))``."""
    return trading_fee(count, price, TAKER_RATE)


def maker_fee(count: Decimal, price: Decimal) -> Decimal:
    """Fee for a resting order that is filled, on markets that charge makers."""
    return trading_fee(count, price, MAKER_RATE)


def fee_per_fill(rate: Decimal, prev_count: Decimal, new_count: Decimal, price: Decimal) -> Decimal:
    """Expected fee of one fill that takes an order's filled count from ``prev_count`` to
    ``new_count``: ``F(new) − F(prev)``. Summed over all fills it equals the single-fill fee."""
    if new_count < prev_count:
        raise MoneyError(f"fee: filled count went down ({prev_count} -> {new_count})")
    return trading_fee(new_count, price, rate) - trading_fee(prev_count, price, rate)


def exchange_fee_breakdown(
    count: Decimal, price: Decimal, rate: Decimal
) -> tuple[Decimal, Decimal]:
    """Kalshi's mechanics for one buy: ``(trade_fee, rounding_fee)``.

    The trade fee is rounded up to $0.0001; the cash debit (cost + trade fee) is then floored
    toward −∞ at the cent, i.e. the debit is rounded up, and the difference is the rounding fee.
    E.g. 1 contract at $0.055, taker: trade fee $0.0037, rounding fee $0.0013, total $0.005.
    """
    trade_fee = raw_fee(count, price, rate).quantize(PRICE_QUANTUM, rounding=ROUND_CEILING)
    debit = count * price + trade_fee
    balance_change = (-debit).quantize(CENT, rounding=ROUND_FLOOR)
    return trade_fee, -balance_change - debit
