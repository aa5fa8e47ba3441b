"""Kalshi fee functions against known vectors for every fee type, plus properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from markets.fees import (
    DEFAULT_FEES,
    MAKER_RATE,
    TAKER_RATE,
    FeeSchedule,
    exchange_fee_breakdown,
    fee_per_fill,
    fill_fee,
    kalshi_fee,
    maker_fee,
    order_fee,
    raw_fee,
    schedule_for,
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


# --- Series fee types, multipliers, makers and waivers ------------------------------------------

Q, QM, QC = "quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees"


@pytest.mark.parametrize(
    ("fee_type", "multiplier", "maker", "count", "price", "fee"),
    [
        # quadratic: the taker vectors above, and makers pay nothing.
        (Q, "1", False, "100", "0.50", "1.75"),
        (Q, "1", False, "100", "0.05", "0.34"),
        (Q, "1", True, "100", "0.50", "0.00"),
        (Q, "1", True, "1", "0.50", "0.00"),
        # quadratic with maker fees: makers at 0.25 × 0.07 = 0.0175.
        (QM, "1", True, "100", "0.50", "0.44"),  # 0.4375
        (QM, "1", True, "10", "0.50", "0.05"),  # 0.04375
        (QM, "1", True, "100", "0.05", "0.09"),  # 0.083125
        (QM, "1", False, "10", "0.50", "0.18"),  # takers as quadratic
        # combo maker fees: makers at 0.5 × 0.07 = 0.035.
        (QC, "1", True, "100", "0.50", "0.88"),  # 0.875
        (QC, "1", True, "10", "0.50", "0.09"),  # 0.0875
        (QC, "1", True, "1", "0.50", "0.01"),  # 0.00875
        (QC, "1", False, "100", "0.25", "1.32"),
        # The multiplier scales the rate.
        (Q, "2", False, "100", "0.50", "3.50"),
        (Q, "2", False, "1", "0.50", "0.04"),  # 0.035
        (Q, "0.5", False, "100", "0.50", "0.88"),  # 0.875
        (Q, "0.5", False, "10", "0.25", "0.07"),  # 0.065625
        (QM, "2", True, "100", "0.50", "0.88"),  # 0.875
        (QM, "2", False, "10", "0.50", "0.35"),
        (Q, "0", False, "100", "0.50", "0.00"),
        # flat (assumed $0.0175 per contract × multiplier, takers and makers alike).
        ("flat", "1", False, "100", "0.50", "1.75"),
        ("flat", "1", False, "100", "0.05", "1.75"),
        ("flat", "1", True, "1", "0.90", "0.02"),  # 0.0175
        ("flat", "2", False, "10", "0.30", "0.35"),
    ],
)
def test_kalshi_fee_vectors_for_every_fee_type(
    fee_type: str, multiplier: str, maker: bool, count: str, price: str, fee: str
) -> None:
    assert kalshi_fee(fee_type, D(multiplier), D(count), D(price), maker=maker) == D(fee)
    fees = FeeSchedule(fee_type, D(multiplier))
    assert order_fee(D(count), D(price), fees=fees, maker=maker) == D(fee)


def test_a_waived_market_pays_nothing_until_the_waiver_expires() -> None:
    until = datetime(2026, 9, 1, tzinfo=UTC)
    fees = FeeSchedule(QM, D("2"), waived_until=until)
    before, after = until - timedelta(seconds=1), until
    assert order_fee(D(100), D("0.5"), fees=fees, at=before) == D(0)
    assert order_fee(D(100), D("0.5"), fees=fees, maker=True, at=before) == D(0)
    assert fill_fee(D(0), D(10), D("0.5"), fees=fees, at=before) == D(0)
    assert order_fee(D(100), D("0.5"), fees=fees, at=after) == D("3.50")
    assert fill_fee(D(0), D(100), D("0.5"), fees=fees, maker=True, at=after) == D("0.88")


def test_the_event_override_wins_over_the_series() -> None:
    until = datetime(2026, 9, 1, tzinfo=UTC)
    assert schedule_for(fee_type=None, multiplier=None) == DEFAULT_FEES
    assert schedule_for(fee_type="", multiplier=None) == FeeSchedule(Q, D(1))
    assert schedule_for(fee_type=QM, multiplier=D("0.5")) == FeeSchedule(QM, D("0.5"))
    assert schedule_for(
        fee_type=QM, multiplier=D("0.5"), fee_type_override=QC, multiplier_override=D(2)
    ) == FeeSchedule(QC, D(2))
    # Each override replaces its own series field.
    assert schedule_for(fee_type=QM, multiplier=D("0.5"), fee_type_override=Q) == FeeSchedule(
        Q, D("0.5")
    )
    assert schedule_for(
        fee_type=QM, multiplier=D("0.5"), multiplier_override=D(0), waived_until=until
    ) == FeeSchedule(QM, D(0), until)


@pytest.mark.parametrize("fee_type", ["", "cubic", "Quadratic"])
def test_an_unknown_fee_type_is_refused_by_name(fee_type: str) -> None:
    with pytest.raises(MoneyError, match="unknown fee type"):
        FeeSchedule(fee_type)
    with pytest.raises(MoneyError, match="unknown fee type"):
        kalshi_fee(fee_type, D(1), D(1), D("0.5"), maker=False)


@pytest.mark.parametrize("multiplier", [D(-1), D("NaN"), D("Infinity"), 1.0, 1])
def test_a_bad_multiplier_is_refused(multiplier) -> None:
    with pytest.raises(MoneyError, match="multiplier"):
        FeeSchedule(Q, multiplier)


fee_types = st.sampled_from([Q, QM, QC])
all_fee_types = st.sampled_from([Q, QM, QC, "flat"])
multipliers = st.integers(min_value=0, max_value=400).map(lambda m: D(m).scaleb(-2))


@given(fee_types, multipliers, st.booleans(), counts, prices)
def test_quadratic_fees_are_symmetric_in_price(fee_type, multiplier, maker, count, price) -> None:
    fee = kalshi_fee(fee_type, multiplier, count, price, maker=maker)
    assert fee == kalshi_fee(fee_type, multiplier, count, 1 - price, maker=maker)


@given(all_fee_types, multipliers, st.booleans(), counts, counts, prices)
def test_every_fee_type_is_monotone_in_count(fee_type, multiplier, maker, a, b, price) -> None:
    low, high = sorted((a, b))
    fees = FeeSchedule(fee_type, multiplier)
    assert order_fee(low, price, fees=fees, maker=maker) <= order_fee(
        high, price, fees=fees, maker=maker
    )


@given(
    all_fee_types,
    multipliers,
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=12),
    prices,
)
def test_the_fills_of_one_order_add_up_to_its_fee(fee_type, multiplier, maker, parts, price):
    fees = FeeSchedule(fee_type, multiplier)
    filled, total = D(0), D(0)
    for part in parts:
        fee = fill_fee(filled, filled + D(part), price, fees=fees, maker=maker)
        assert fee >= 0
        total += fee
        filled += D(part)
    assert total == order_fee(filled, price, fees=fees, maker=maker)
