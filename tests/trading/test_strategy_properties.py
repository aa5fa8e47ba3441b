"""Hypothesis properties of sizing, edge, exits, P&L and netting (docs/ORDER_PROTOCOL.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from trading.reasons import Reason
from trading.strategy import (
    ExitReason,
    ForecastView,
    MarketView,
    PortfolioView,
    PositionState,
    PositionView,
    RiskLimits,
    apply_fill,
    decide,
    edge_for_side,
    exit_signal,
    order_cost,
    settle_position,
    settlement_payout,
    sizing_for,
    unrealized_pnl,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLES = settings(max_examples=200, deadline=None)

# Prices strictly inside (0, 1): whole cents mostly, sub-cent ticks too.
cent_prices = st.integers(1, 99).map(lambda c: D(c) / 100)
tick_prices = st.integers(1, 9999).map(lambda t: D(t).scaleb(-4))
prices = st.one_of(cent_prices, tick_prices)
probabilities = st.integers(0, 1_000_000).map(lambda n: D(n).scaleb(-6))
fractions = st.integers(0, 100).map(lambda n: D(n) / 100)
dollars = st.integers(0, 10_000_000).map(lambda c: D(c) / 100)  # $0 .. $100,000
counts = st.integers(1, 300).map(D)
fees = st.integers(0, 500).map(lambda c: D(c) / 100)
sides = st.sampled_from(["yes", "no"])
actions = st.sampled_from(["buy", "sell"])
fills = st.lists(st.tuples(sides, actions, counts, cent_prices, fees), min_size=1, max_size=12)


def floor_whole(value: D) -> D:
    return value.to_integral_value(rounding="ROUND_FLOOR")


@st.composite
def limit_sets(draw):
    return RiskLimits(
        max_position_pct=draw(fractions),
        cash_reserve_pct=draw(fractions),
        kelly_fraction=draw(fractions),
        max_kelly=draw(fractions),
        max_contracts_per_order=draw(st.integers(1, 5000)),
    )


# --- Sizing ---------------------------------------------------------------------------------


@EXAMPLES
@given(
    probability=probabilities,
    side=sides,
    price=prices,
    bankroll=dollars,
    cash=dollars,
    limits=limit_sets(),
    depth=st.none() | st.integers(0, 3000).map(lambda n: D(n) / 2),
)
def test_sizing_never_exceeds_any_cap(probability, side, price, bankroll, cash, limits, depth):
    forecast = ForecastView(probability=probability, confidence=D("0.9"))
    edge = edge_for_side(probability, side, price)
    sizing = sizing_for(edge, forecast, bankroll, limits, depth, cash=cash)
    count = sizing.count

    assert count >= 0 and count == floor_whole(count)
    assert sizing.cost == order_cost(count, price)
    assert count <= limits.max_contracts_per_order
    if depth is not None:
        assert count <= floor_whole(depth)
    if count > 0:
        assert edge.edge > 0 or sizing.kelly > 0
        assert sizing.cost <= limits.max_position_pct * bankroll
        assert sizing.cost <= sizing.kelly * bankroll
        assert sizing.kelly <= limits.max_kelly
        # Never spends beyond cash minus the reserve.
        assert sizing.cost <= cash - limits.cash_reserve_pct * bankroll
    # Maximal: one more contract would break a budget or a count cap.
    one_more = count + 1
    budget = min(
        sizing.kelly * bankroll,
        limits.max_position_pct * bankroll,
        cash - limits.cash_reserve_pct * bankroll,
    )
    assert (
        order_cost(one_more, price) > budget
        or one_more > limits.max_contracts_per_order
        or (depth is not None and one_more > floor_whole(depth))
    )


@EXAMPLES
@given(price=prices, count=counts, side=sides)
def test_fee_inclusive_edge_is_never_positive_when_forecast_equals_price(price, count, side):
    probability = price if side == "yes" else 1 - price
    edge = edge_for_side(probability, side, price, count)
    assert edge.raw_edge == 0
    assert edge.edge < 0


@EXAMPLES
@given(probability=probabilities, side=sides, price=prices, count=counts)
def test_edge_at_a_larger_count_is_never_worse_than_at_one(probability, side, price, count):
    at_one = edge_for_side(probability, side, price)
    assert edge_for_side(probability, side, price, count).edge >= at_one.edge


@st.composite
def decision_inputs(draw):
    yes_bid = draw(st.integers(1, 98))
    yes_ask = draw(st.integers(yes_bid + 1, 99))
    view = MarketView(
        ticker="KX-P",
        category=draw(st.sampled_from(["A", "B"])),
        status="active",
        close_time=NOW + timedelta(days=3),
        volume=D("1000"),
        yes_bid=D(yes_bid) / 100,
        yes_ask=D(yes_ask) / 100,
        no_bid=D(100 - yes_ask) / 100,
        no_ask=D(100 - yes_bid) / 100,
        yes_ask_depth=draw(st.none() | st.integers(0, 500).map(D)),
        no_ask_depth=draw(st.none() | st.integers(0, 500).map(D)),
    )
    equity = draw(st.integers(0, 10_000_000).map(lambda c: D(c) / 100))
    portfolio = PortfolioView(
        cash=draw(st.integers(0, 100).map(lambda pct: equity * pct / 100)),
        equity=equity,
        open_positions=draw(st.integers(0, 16)),
        category_exposure={"A": draw(st.integers(0, 40).map(lambda pct: equity * pct / 100))},
        daily_pnl=draw(st.integers(-20, 5).map(lambda pct: equity * pct / 100)),
    )
    forecast = ForecastView(
        probability=draw(probabilities),
        confidence=draw(st.integers(50, 100).map(lambda pct: D(pct) / 100)),
    )
    return view, forecast, portfolio


@st.composite
def realistic_limits(draw):
    percent = st.integers(0, 60).map(lambda pct: D(pct) / 100)
    return RiskLimits(
        max_position_pct=draw(percent),
        cash_reserve_pct=draw(percent),
        kelly_fraction=draw(st.integers(0, 100).map(lambda pct: D(pct) / 100)),
        max_kelly=draw(percent),
        max_contracts_per_order=draw(st.integers(1, 5000)),
    )


@EXAMPLES
@given(inputs=decision_inputs(), limits=realistic_limits())
def test_a_traded_decision_passes_every_limit(inputs, limits):
    view, forecast, portfolio = inputs
    result = decide(view, forecast, portfolio, limits, now=NOW)
    assert isinstance(result.reason, Reason)
    if not result.traded:
        assert result.count is None
        return
    cost = order_cost(result.count, result.price)
    assert result.count >= 1 and all(check.passed for check in result.checks)
    assert result.price == view.ask(result.side)
    assert cost <= limits.max_position_pct * portfolio.equity
    assert portfolio.cash - cost >= limits.cash_reserve_pct * portfolio.equity
    assert result.edge.edge >= result.threshold
    depth = view.ask_depth(result.side)
    assert depth is None or result.count <= depth


# --- Exits ----------------------------------------------------------------------------------


@EXAMPLES
@given(side=sides, avg=cent_prices, bid=cent_prices, hours_held=st.integers(0, 500))
def test_exits_are_symmetric_and_never_inverted(side, avg, bid, hours_held):
    def signal_for(which):
        return exit_signal(
            PositionView(
                ticker="KX-P",
                side=which,
                count=D("5"),
                avg_price=avg,
                opened_at=NOW - timedelta(hours=hours_held),
                close_time=NOW + timedelta(days=20),
                bid=bid,
            ),
            RiskLimits(),
            now=NOW,
        )

    signal = signal_for(side)
    other = signal_for("no" if side == "yes" else "yes")
    # The same prices on the held side give the same decision, whichever side is held.
    assert (signal and signal.reason) == (other and other.reason)
    if signal is not None:
        assert signal.price == bid and signal.side == side
        if bid >= avg:
            assert signal.reason != ExitReason.STOP_LOSS
        if bid <= avg:
            assert signal.reason != ExitReason.TAKE_PROFIT


# --- Positions and P&L ----------------------------------------------------------------------


def signed_yes(side: str, action: str, count: D) -> D:
    """A fill's change of the position in YES contracts (negative = NO)."""
    buys_yes = (side == "yes") == (action == "buy")
    return count if buys_yes else -count


def yes_price(side: str, price: D) -> D:
    return price if side == "yes" else 1 - price


def book(fill_list):
    state = PositionState()
    realized = D(0)
    for fill in fill_list:
        state, booked = apply_fill(state, *fill)
        realized += booked
    return state, realized


@EXAMPLES
@given(fill_list=fills, mark=cent_prices, data=st.data())
def test_pnl_is_path_independent_for_a_fill_set(fill_list, mark, data):
    shuffled = data.draw(st.permutations(fill_list))
    first, realized_first = book(fill_list)
    second, realized_second = book(shuffled)

    assert (first.side, first.count) == (second.side, second.count)

    def total(state, realized):
        assert realized == state.realized_pnl
        held_mark = mark if state.side == "yes" else 1 - mark
        return realized + unrealized_pnl(state, held_mark)

    assert total(first, realized_first) == total(second, realized_second)


@EXAMPLES
@given(fill_list=fills)
def test_netting_never_leaves_both_sides_open(fill_list):
    state = PositionState()
    net = D(0)
    for side, action, count, price, fee in fill_list:
        state, _ = apply_fill(state, side, action, count, price, fee)
        net += signed_yes(side, action, count)
        # One side at most, and the position is the sum of the signed fills.
        assert state.count >= 0 and (state.side is None) == (state.count == 0)
        assert state.net_yes == net
        assert state.cost_basis >= 0
        if state.is_open:
            assert 0 <= state.avg_price <= 1


@EXAMPLES
@given(
    fill_list=fills,
    result=st.sampled_from(["yes", "no", "scalar"]),
    scalar=st.integers(0, 10000).map(lambda t: D(t).scaleb(-4)),
)
def test_settlement_conserves_money(fill_list, result, scalar):
    state, realized_fills = book(fill_list)
    scalar_value = scalar if result == "scalar" else None
    payout = settlement_payout(state, result, scalar_value)
    settled, realized_settle = settle_position(state, result, scalar_value)

    assert realized_settle == payout - state.cost_basis
    assert not settled.is_open and settled.cost_basis == 0

    # Over the life of the market, realized P&L is exactly the cash that moved, counted in
    # YES terms (selling YES receives the YES price) plus the final position's YES value.
    yes_value = {"yes": D(1), "no": D(0), "scalar": scalar}[result]
    cash = D(0)
    for side, action, count, price, fee in fill_list:
        cash -= signed_yes(side, action, count) * yes_price(side, price) + fee
    assert realized_fills + realized_settle == cash + state.net_yes * yes_value
    assert settled.realized_pnl == realized_fills + realized_settle


@EXAMPLES
@given(fill_list=fills)
def test_void_refunds_at_cost(fill_list):
    state, _ = book(fill_list)
    settled, realized = settle_position(state, "void")
    assert realized == 0 and settled.realized_pnl == state.realized_pnl
