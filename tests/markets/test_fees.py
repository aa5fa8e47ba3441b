"""Kalshi fee functions against the vectors of RELIABILITY.md §4.2, plus properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from markets.fees import (
    MAKER_RATE,
    TAKER_RATE,
    exchange_fee_breakdown,
    fee_per_fill,
    maker_fee,
    raw_fee,
    taker_fee,
    trading_fee,
)
from markets.money import MoneyError

D = Decimal


@pytest.mark.parametrize(
    ("count", "price", "raw", "fee"),
    [
        ("1", "0.50", "0.0175", "0.02"),
        ("10", "0.50", "0.175", "0.18"),
        ("100", "0.50", "1.75", "1.75"),
        ("100", "0.25", "1.3125", "1.32"),
        ("100", "0.10", "0.63", "0.63"),
        ("100", "0.05", "0.3325", "0.34"),
        ("1", "0.01", "0.000693", "0.01"),
        ("1", "0.99", "0.000693", "0.01"),
    ],
)
def test_taker_fee_vectors(count: str, price: str, raw: str, fee: str) -> None:
    assert raw_fee(D(count), D(price), TAKER_RATE) == D(raw)
    assert taker_fee(D(count), D(price)) == D(fee)


@pytest.mark.parametrize(
    ("count", "price", "raw", "fee"),
    [
        ("100", "0.50", "0.4375", "0.44"),
        ("10", "0.50", "0.04375", "0.05"),  # not "4 cents": the fee is rounded up
        ("100", "0.05", "0.083125", "0.09"),
    ],
)
def test_maker_fee_vectors(count: str, price: str, raw: str, fee: str) -> None:
    assert raw_fee(D(count), D(price), MAKER_RATE) == D(raw)
    assert maker_fee(D(count), D(price)) == D(fee)


def test_subpenny_vectors() -> None:
    assert raw_fee(D(3), D("0.055"), TAKER_RATE) == D("0.01091475")
    trade_fee, rounding_fee = exchange_fee_breakdown(D(1), D("0.055"), TAKER_RATE)
    assert trade_fee == D("0.0037")
    assert rounding_fee == D("0.0013")
    assert trade_fee + rounding_fee == D("0.005")


def test_rates_and_rounding_direction() -> None:
    assert TAKER_RATE == D("0.07")
    assert MAKER_RATE == D("0.0175")
    # A raw fee a hair above a cent boundary goes up, never to the nearest cent.
    assert trading_fee(D(1), D("0.50"), D("0.0201")) == D("0.01")
    assert trading_fee(D(1), D("0.50"), D("0.0404")) == D("0.02")
    assert taker_fee(D(0), D("0.50")) == D("0.00")


def test_fee_per_fill_sums_to_the_single_fill_fee() -> None:
    price = D("0.50")
    fills = [D(1)] * 10
    filled = D(0)
    total = D(0)
    for quantity in fills:
        total += fee_per_fill(TAKER_RATE, filled, filled + quantity, price)
        filled += quantity
    assert total == taker_fee(D(10), price) == D("0.18")
    # Ten separate 1-contract orders would have paid 10 × $0.02.
    assert fee_per_fill(TAKER_RATE, D(0), D(1), price) == D("0.02")
    assert fee_per_fill(TAKER_RATE, D(1), D(2), price) == D("0.02")
    assert fee_per_fill(TAKER_RATE, D(2), D(3), price) == D("0.02")  # F(3) = ceil(0.0525) = 0.06
    assert fee_per_fill(TAKER_RATE, D(3), D(4), price) == D("0.01")  # F(4) = 0.07


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(MoneyError):
        taker_fee(D(-1), D("0.5"))
    with pytest.raises(MoneyError):
        taker_fee(D(1), D("1.5"))
    with pytest.raises(MoneyError):
        taker_fee(1.0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        fee_per_fill(TAKER_RATE, D(2), D(1), D("0.5"))


prices = st.integers(min_value=1, max_value=9999).map(lambda ticks: D(ticks).scaleb(-4))
whole_counts = st.integers(min_value=1, max_value=100_000).map(D)
counts = st.integers(min_value=1, max_value=10_000_000).map(lambda c: D(c).scaleb(-2))


@given(counts, prices)
def test_fee_is_symmetric_in_price(count: Decimal, price: Decimal) -> None:
    assert taker_fee(count, price) == taker_fee(count, 1 - price)
    assert maker_fee(count, price) == maker_fee(count, 1 - price)


@given(counts, counts, prices)
def test_fee_is_monotone_in_count(a: Decimal, b: Decimal, price: Decimal) -> None:
    low, high = sorted((a, b))
    assert taker_fee(low, price) <= taker_fee(high, price)
    assert maker_fee(low, price) <= maker_fee(high, price)


@given(whole_counts, prices)
def test_taker_fee_is_at_most_two_cents_per_contract(count: Decimal, price: Decimal) -> None:
    # 0.07 × P(1−P) peaks at 1.75¢; rounding up to the cent stays within 2¢ × C for whole contracts.
    assert taker_fee(count, price) <= D("0.02") * count
    assert maker_fee(count, price) <= taker_fee(count, price)


@given(counts, prices)
def test_fee_is_exact_cents_and_covers_the_raw_fee(count: Decimal, price: Decimal) -> None:
    fee = taker_fee(count, price)
    assert fee == fee.quantize(D("0.01"))
    assert raw_fee(count, price, TAKER_RATE) <= fee < raw_fee(count, price, TAKER_RATE) + D("0.01")


def test_fractional_counts_still_pay_at_least_a_cent() -> None:
    # Why the 2¢ bound above is stated for whole contracts: 0.01 contract still pays 1¢.
    assert taker_fee(D("0.01"), D("0.50")) == D("0.01")
