"""Kalshi trading fees, exact, per ../shared/RELIABILITY.md §4.2.

The schedule charges ``rate × C × P × (1 − P)`` for C contracts traded at price P (dollars), where
the rate is 0.07 for takers and 0.0175 for makers on the markets that charge maker fees. Our model
rounds the fee of an order **up to the cent** (``ROUND_CEILING``), which is what an order pays
once Kalshi's per-order fee accumulator has rebated the sub-cent rounding of its individual fills.
The fee for a fill is then the growth of that order fee: ``F(n_after) − F(n_before)``.

The exchange's own mechanics (fee_rounding doc) round each trade fee up to $0.0001 and floor the
balance change to the cent, producing a separate "rounding fee"; ``exchange_fee_breakdown`` models
that for checks against what Kalshi reports. The fee Kalshi reports on fills and settlements is the
truth that gets booked; these functions predict it (pre-trade edge, paper trading, alerts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from markets.money import CENT, ONE, PRICE_QUANTUM, ZERO, MoneyError

TAKER_RATE = Decimal("0.07")
MAKER_RATE = Decimal("0.0175")

# Kalshi's series ``fee_type`` values (openapi ``FeeType``) and the maker share of the taker
# rate each charges. ``flat`` is handled separately (see ``order_fee``).
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


@dataclass(frozen=True)
class FeeSchedule:
    """How one market's trades are charged: its series' ``fee_type`` and ``fee_multiplier``
    (or the event's overrides) and the market's fee waiver, if any."""

    fee_type: str = QUADRATIC
    multiplier: Decimal = ONE
    waived_until: datetime | None = None

    def rate(self, *, maker: bool) -> Decimal:
        """The rate ``r`` of ``r × C × P × (1 − P)`` for a taker or a maker fill."""
        if self.fee_type not in _MAKER_SHARE:
            raise MoneyError(f"fee: no quadratic rate for fee type {self.fee_type!r}")
        share = _MAKER_SHARE[self.fee_type] if maker else ONE
        return TAKER_RATE * share * self.multiplier


DEFAULT_FEES = FeeSchedule()


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
    if fees.waived_until is not None and at is not None and at < fees.waived_until:
        _check(count, price)
        return ZERO
    return trading_fee(count, price, fees.rate(maker=maker))


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
