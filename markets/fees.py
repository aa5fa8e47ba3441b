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

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from markets.money import CENT, ONE, PRICE_QUANTUM, ZERO, MoneyError

TAKER_RATE = Decimal("0.07")
MAKER_RATE = Decimal("0.0175")


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
