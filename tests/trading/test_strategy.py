"""Hand-computed cases for the pure decision code (trading/strategy.py).

Fees are Kalshi's taker fee from markets.fees: ceil_cent(0.07 × C × P × (1 − P)).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from trading.reasons import Reason
from trading.strategy import (
    DecisionResult,
    ExitReason,
    ForecastView,
    MarketView,
    PortfolioView,
    PositionState,
    PositionView,
    RiskLimits,
    apply_fill,
    candidate_filter,
    decide,
    edge_after_fees,
    edge_for_side,
    edge_threshold,
    exit_signal,
    forecast_problem,
    kelly_fraction_for,
    order_cost,
    risk_check,
    settle,
    settle_position,
    settlement_payout,
    size_position,
    sizing_for,
    unrealized_pnl,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = RiskLimits()


def market(**overrides) -> MarketView:
    values = dict(
        ticker="KX-A",
        category="Economics",
        status="active",
        close_time=NOW + timedelta(days=5),
        volume=D("1000"),
        yes_bid=D("0.48"),
        yes_ask=D("0.50"),
        no_bid=D("0.50"),
        no_ask=D("0.52"),
    )
    values.update(overrides)
    return MarketView(**values)


def forecast(probability="0.70", confidence="0.85", **overrides) -> ForecastView:
    values = dict(
        probability=D(probability) if isinstance(probability, str) else probability,
        confidence=D(confidence) if isinstance(confidence, str) else confidence,
        forecaster="test",
    )
    values.update(overrides)
    return ForecastView(**values)


def portfolio(**overrides) -> PortfolioView:
    values = dict(cash=D("1000"), equity=D("1000"))
    values.update(overrides)
    return PortfolioView(**values)


def run(view=None, fc=None, pf=None, limits=LIMITS, **kwargs) -> DecisionResult:
    return decide(
        view or market(),
        fc if fc is not None else forecast(),
        pf or portfolio(),
        limits,
        now=NOW,
        **kwargs,
    )


# --- Module hygiene -------------------------------------------------------------------------


def test_strategy_module_imports_no_django():
    code = (
        "import sys; import trading.strategy; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_views_refuse_floats():
    with pytest.raises(TypeError):
        market(yes_ask=0.5)
    with pytest.raises(TypeError):
        portfolio(cash=1000.0)
    with pytest.raises(TypeError):
        RiskLimits(max_position_pct=0.05)
    with pytest.raises(TypeError):
        PortfolioView(cash=D(1), equity=D(1), category_exposure={"x": 1.0})


def test_risk_limits_defaults_follow_design():
    assert LIMITS.max_position_pct == D("0.05")
    assert LIMITS.max_open_positions == 15
    assert LIMITS.max_daily_loss_pct == D("0.15")
    assert LIMITS.min_volume == D("200")
    assert LIMITS.max_days_to_close == 30
    assert LIMITS.min_confidence == D("0.50")
    assert (LIMITS.edge_high, LIMITS.edge_medium, LIMITS.edge_low) == (
        D("0.06"),
        D("0.08"),
        D("0.12"),
    )
    assert LIMITS.kelly_fraction == D("0.75")
    with pytest.raises(ValueError):
        RiskLimits(max_position_pct=D("-0.01"))


def test_risk_limits_from_object_reads_settings_like_rows():
    class Row:
        max_position_pct = D("0.02")
        max_open_positions = 3
        excluded_categories = "Sports, Politics ,"
        ai_daily_budget = D("10")  # not a limit of the strategy: ignored

    limits = RiskLimits.from_object(Row())
    assert limits.max_position_pct == D("0.02")
    assert limits.max_open_positions == 3
    assert limits.excluded_categories == ("Sports", "Politics")
    assert limits.edge_high == D("0.06")  # untouched default


# --- Quotes ---------------------------------------------------------------------------------


def test_market_view_derives_missing_quotes_from_the_other_side():
    view = market(yes_ask=None, no_ask=None, yes_bid=D("0.45"), no_bid=D("0.40"))
    assert view.ask("yes") == D("0.60")  # 1 − NO bid
    assert view.ask("no") == D("0.55")  # 1 − YES bid
    view = market(yes_bid=None, no_bid=None, yes_ask=D("0.75"), no_ask=D("0.30"))
    assert view.bid("no") == D("0.25")  # 1 − YES ask
    assert view.bid("yes") == D("0.70")


def test_market_view_treats_zero_and_one_as_no_quote():
    view = market(yes_ask=D("1"), no_bid=None, no_ask=D("0"), yes_bid=None)
    assert view.ask("yes") is None
    assert view.ask("no") is None


# --- Candidate filter -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"status": "closed"}, Reason.SKIP_STATUS),
        ({"status": "initialized"}, Reason.SKIP_STATUS),
        ({"volume": D("199.99")}, Reason.SKIP_VOLUME),
        ({"volume": D("200")}, None),
        ({"close_time": None}, Reason.SKIP_CLOSE_TIME),
        ({"close_time": NOW + timedelta(days=30)}, None),
        ({"close_time": NOW + timedelta(days=30, seconds=1)}, Reason.SKIP_CLOSE_TIME),
        ({"close_time": NOW + timedelta(hours=1)}, Reason.SKIP_CLOSE_TIME),
        ({"close_time": NOW + timedelta(hours=1, seconds=1)}, None),
        ({"close_time": NOW - timedelta(hours=1)}, Reason.SKIP_CLOSE_TIME),
        (
            {"yes_ask": None, "no_ask": None, "yes_bid": None, "no_bid": None},
            Reason.SKIP_NO_QUOTE,
        ),
    ],
)
def test_candidate_filter_market_conditions(overrides, expected):
    assert candidate_filter(market(**overrides), portfolio(), LIMITS, now=NOW) == expected


def test_candidate_filter_excluded_category_is_case_insensitive():
    limits = RiskLimits(excluded_categories=("economics",))
    assert candidate_filter(market(), portfolio(), limits, now=NOW) == Reason.SKIP_CATEGORY
    assert candidate_filter(market(category="Sports"), portfolio(), limits, now=NOW) is None


def test_candidate_filter_open_position_and_pending_order():
    pf = portfolio(open_tickers=frozenset({"KX-A"}))
    assert candidate_filter(market(), pf, LIMITS, now=NOW) == Reason.SKIP_OPEN_POSITION
    pf = portfolio(pending_tickers=frozenset({"KX-A"}))
    assert candidate_filter(market(), pf, LIMITS, now=NOW) == Reason.SKIP_ORDER_PENDING
    pf = portfolio(pending_tickers=frozenset({"KX-B"}))
    assert candidate_filter(market(), pf, LIMITS, now=NOW) is None


def test_candidate_filter_recently_analysed():
    def check(minutes_ago):
        return candidate_filter(
            market(), portfolio(), LIMITS, now=NOW, last_analysed_at=NOW - minutes_ago
        )

    assert check(timedelta(minutes=59, seconds=59)) == Reason.SKIP_RECENTLY_ANALYSED
    assert check(timedelta(minutes=60)) is None


# --- Edge -----------------------------------------------------------------------------------


def test_edge_yes_at_the_ask_with_fee():
    # q 0.70, YES ask 0.55: raw 0.15; fee(1, .55) = ceil(.017325) = .02 → 0.13
    edge = edge_for_side(D("0.70"), "yes", D("0.55"))
    assert (edge.raw_edge, edge.fee, edge.fee_per_contract, edge.edge) == (
        D("0.15"),
        D("0.02"),
        D("0.02"),
        D("0.13"),
    )
    # 100 contracts: fee ceil(1.7325) = 1.74 → 0.0174 per contract → 0.1326
    edge = edge_for_side(D("0.70"), "yes", D("0.55"), D("100"))
    assert (edge.fee, edge.fee_per_contract, edge.edge) == (D("1.74"), D("0.0174"), D("0.1326"))


def test_edge_no_at_the_no_ask_with_fee():
    # q 0.20 → NO wins with 0.80; NO ask 0.60: raw 0.20; fee(1, .60) = ceil(.0168) = .02 → 0.18
    edge = edge_for_side(D("0.20"), "no", D("0.60"))
    assert (edge.win_probability, edge.raw_edge, edge.edge) == (D("0.80"), D("0.20"), D("0.18"))


def test_edge_after_fees_picks_the_better_side():
    view = market(yes_bid=D("0.40"), yes_ask=D("0.42"), no_bid=D("0.58"), no_ask=D("0.60"))
    edge = edge_after_fees(forecast("0.20"), view)
    assert (edge.side, edge.price, edge.edge) == ("no", D("0.60"), D("0.18"))
    edge = edge_after_fees(forecast("0.70"), view)
    # YES: .70 − .42 − ceil(.017052)=.02 → .26
    assert (edge.side, edge.price, edge.edge) == ("yes", D("0.42"), D("0.26"))


def test_edge_after_fees_uses_no_ask_derived_from_yes_bid():
    view = market(no_ask=None, yes_bid=D("0.45"))
    edge = edge_after_fees(forecast("0.10"), view)
    # NO at 1 − .45 = .55: .90 − .55 − .02 = .33
    assert (edge.side, edge.price, edge.edge) == ("no", D("0.55"), D("0.33"))


def test_edge_after_fees_none_without_quotes():
    view = market(yes_ask=None, no_ask=None, yes_bid=None, no_bid=None)
    assert edge_after_fees(forecast(), view) is None


def test_edge_after_fees_refuses_an_unusable_forecast():
    with pytest.raises(ValueError):
        edge_after_fees(forecast(valid=False), market())


def test_fee_inclusive_edge_is_negative_when_forecast_equals_price():
    assert edge_for_side(D("0.50"), "yes", D("0.50")).edge == D("-0.02")
    assert edge_for_side(D("0.50"), "no", D("0.50")).edge == D("-0.02")


@pytest.mark.parametrize(
    ("confidence", "threshold"),
    [
        ("1", "0.06"),
        ("0.80", "0.06"),
        ("0.79", "0.08"),
        ("0.60", "0.08"),
        ("0.59", "0.12"),
        ("0.50", "0.12"),
    ],
)
def test_edge_threshold_tiers(confidence, threshold):
    assert edge_threshold(D(confidence), LIMITS) == D(threshold)


# --- Kelly and sizing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "p", "expected"),
    [
        ("0.70", "0.50", "0.4"),
        ("0.50", "0.50", "0"),
        ("0.40", "0.50", "0"),
        ("0.70", "0.56", "0.318181"),  # 0.14 / 0.44, rounded down
        ("1", "0.20", "1"),
        ("0.90", "1", "0"),
    ],
)
def test_kelly_fraction_for_binary_contract(q, p, expected):
    assert kelly_fraction_for(D(q), D(p)) == D(expected)


def yes_edge_at_50():
    # q .70, YES at .50, fee per contract .02 → Kelly at .52: .18/.48 = .375
    return edge_for_side(D("0.70"), "yes", D("0.50"))


def test_sizing_capped_by_position_pct_with_fees_in_cost():
    # Kelly .375 × .75 = .28125 → max_kelly .25 → $250; 5% of $1000 = $50 binds.
    # 100 × .50 + 1.75 = 51.75 > 50; 96 × .50 + ceil(1.68) = 49.68 ≤ 50; 97 → 50.20.
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), LIMITS)
    assert (sizing.kelly_full, sizing.kelly, sizing.budget) == (D("0.375"), D("0.25"), D("50"))
    assert (sizing.count, sizing.cost, sizing.limited_by) == (D("96"), D("49.68"), "position_pct")
    assert size_position(yes_edge_at_50(), forecast(), D("1000"), LIMITS) == D("96")


def test_sizing_capped_by_fractional_kelly():
    # .375 × .10 = .0375 → $37.50; 72 × .5 + 1.26 = 37.26 fits, 73 → 37.78 does not.
    limits = RiskLimits(kelly_fraction=D("0.10"))
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), limits)
    assert (sizing.kelly, sizing.count, sizing.limited_by) == (D("0.0375"), D("72"), "kelly")


def test_sizing_capped_by_max_kelly():
    limits = RiskLimits(max_position_pct=D("1"))
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), limits)
    assert (sizing.kelly, sizing.budget, sizing.limited_by) == (D("0.25"), D("250"), "max_kelly")
    assert sizing.cost <= D("250") < order_cost(sizing.count + 1, D("0.50"))


def test_sizing_capped_by_max_contracts_and_depth():
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000000"), LIMITS)
    assert (sizing.count, sizing.limited_by) == (D("1000"), "max_contracts")
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), LIMITS, D("40"))
    assert (sizing.count, sizing.limited_by) == (D("40"), "depth")
    assert size_position(yes_edge_at_50(), forecast(), D("1000"), LIMITS, D("12.5")) == D("12")


def test_sizing_capped_by_cash_minus_reserve():
    # $130 cash − 10% of $1000 = $30: 57 × .5 + ceil(.9975) = 29.50; 58 → 30.02.
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), LIMITS, cash=D("130"))
    assert (sizing.count, sizing.cost, sizing.limited_by) == (D("57"), D("29.50"), "cash_reserve")
    sizing = sizing_for(yes_edge_at_50(), forecast(), D("1000"), LIMITS, cash=D("20"))
    assert (sizing.count, sizing.cost, sizing.limited_by) == (D("0"), D("0"), "cash_reserve")


def test_sizing_zero_without_edge_or_bankroll():
    no_edge = edge_for_side(D("0.50"), "yes", D("0.50"))
    assert size_position(no_edge, forecast("0.50"), D("1000"), LIMITS) == 0
    assert size_position(yes_edge_at_50(), forecast(), D("0"), LIMITS) == 0
    assert size_position(yes_edge_at_50(), forecast(), D("-5"), LIMITS) == 0


def test_sizing_for_no_side_uses_no_win_probability():
    # q .30 → NO wins .70, NO ask .52, fee .02 → Kelly at .54: .16/.46 = .347826
    edge = edge_for_side(D("0.30"), "no", D("0.52"))
    sizing = sizing_for(edge, forecast("0.30"), D("1000"), LIMITS)
    assert sizing.kelly_full == D("0.347826")
    # $50 budget: 93 × .52 + ceil(1.624896) = 49.99; 94 → 50.53
    assert (sizing.count, sizing.cost) == (D("93"), D("49.99"))


# --- Risk checks ----------------------------------------------------------------------------


def checks_by_name(cost, pf=None, limits=LIMITS, category="Economics"):
    return {c.name: c for c in risk_check(D(cost), category, pf or portfolio(), limits)}


def test_risk_check_lists_every_limit_with_numbers():
    checks = risk_check(D("10"), "Economics", portfolio(cash=D("500")), LIMITS)
    assert [c.name for c in checks] == [
        "daily_loss",
        "open_positions",
        "position_size",
        "cash_reserve",
        "category_exposure",
    ]
    assert all(c.passed for c in checks)
    as_dict = checks[2].as_dict()
    assert as_dict == {
        "name": "position_size",
        "passed": True,
        "value": "10",
        "limit": "50.00",
        "reason": "risk_position_size",
    }


def test_risk_position_size_at_and_across_limit():
    assert checks_by_name("50")["position_size"].passed
    failed = checks_by_name("50.01")["position_size"]
    assert not failed.passed and failed.reason == Reason.RISK_POSITION_SIZE
    assert (failed.value, failed.limit) == (D("50.01"), D("50.00"))


def test_risk_open_positions_at_and_across_limit():
    assert checks_by_name("1", portfolio(open_positions=14))["open_positions"].passed
    failed = checks_by_name("1", portfolio(open_positions=15))["open_positions"]
    assert not failed.passed and (failed.value, failed.limit) == (D("16"), D("15"))
    # Pending orders in other markets count; one in a market already held does not count twice.
    pf = portfolio(
        open_positions=13,
        open_tickers=frozenset({"A"}),
        pending_tickers=frozenset({"A", "B"}),
    )
    assert checks_by_name("1", pf)["open_positions"].value == D("15")
    pf = dataclasses.replace(pf, pending_tickers=frozenset({"A", "B", "C"}))
    assert not checks_by_name("1", pf)["open_positions"].passed


def test_risk_cash_reserve_at_and_across_limit():
    pf = portfolio(cash=D("500"))
    limits = RiskLimits(max_position_pct=D("1"), max_category_exposure_pct=D("1"))
    assert checks_by_name("400", pf, limits)["cash_reserve"].passed
    failed = checks_by_name("400.01", pf, limits)["cash_reserve"]
    assert not failed.passed and failed.reason == Reason.RISK_CASH_RESERVE
    assert (failed.value, failed.limit) == (D("99.99"), D("100.00"))


def test_risk_category_exposure_at_and_across_limit():
    pf = portfolio(category_exposure={"Economics": D("250"), "Sports": D("300")})
    assert checks_by_name("50", pf)["category_exposure"].passed
    failed = checks_by_name("50.01", pf)["category_exposure"]
    assert not failed.passed and (failed.value, failed.limit) == (D("300.01"), D("300.00"))
    assert not checks_by_name("1", pf, category="Sports")["category_exposure"].passed
    assert checks_by_name("1", pf, category="Weather")["category_exposure"].passed


def test_risk_daily_loss_at_and_across_limit():
    assert checks_by_name("1", portfolio(daily_pnl=D("-149.99")))["daily_loss"].passed
    at_limit = checks_by_name("1", portfolio(daily_pnl=D("-150")))["daily_loss"]
    assert not at_limit.passed and at_limit.reason == Reason.RISK_DAILY_LOSS
    assert (at_limit.value, at_limit.limit) == (D("-150"), D("-150.00"))
    assert not checks_by_name("1", portfolio(daily_pnl=D("-400")))["daily_loss"].passed
    assert checks_by_name("1", portfolio(daily_pnl=D("80")))["daily_loss"].passed


# --- decide: every reason -------------------------------------------------------------------


def test_decide_traded_yes_with_full_why():
    result = run()
    assert result.reason == Reason.TRADED and result.traded and result.action == "buy"
    assert (result.side, result.price, result.count) == ("yes", D("0.50"), D("96"))
    assert result.threshold == D("0.06") and result.kelly == D("0.25")
    assert all(c.passed for c in result.checks) and len(result.checks) == 5
    # The stored edge is at the order's size: fee ceil(1.68)/96 = .0175 → .20 − .0175
    assert result.edge.count == D("96") and result.edge.edge == D("0.1825")
    d = result.details
    assert d["reason"] == "traded" and d["limited_by"] == "position_pct"
    assert D(d["edge"]) == D("0.18") and D(d["order_edge"]) == D("0.1825")
    assert D(d["cost"]) == D("49.68")
    assert D(d["edge_yes"]) == D("0.18") and D(d["edge_no"]) == D("-0.24")
    assert d["hours_to_close"] == "120.00"


def test_decide_details_are_json_ready_strings():
    import json

    details = run().details
    json.dumps(details)
    numbers = [v for k, v in details.items() if k not in ("checks",)]
    assert not any(isinstance(v, D | int | float) and not isinstance(v, bool) for v in numbers)


def test_decide_traded_no_at_the_no_ask():
    result = run(fc=forecast("0.30"))
    assert (result.reason, result.side, result.price, result.count) == (
        Reason.TRADED,
        "no",
        D("0.52"),
        D("93"),
    )


def test_decide_edge_exactly_at_threshold_trades_and_below_does_not():
    # q .58: YES .58 − .50 − .02 = .06 = the high-confidence threshold.
    assert run(fc=forecast("0.58", "0.85")).reason == Reason.TRADED
    # The same edge at medium confidence needs .08.
    result = run(fc=forecast("0.58", "0.70"))
    assert result.reason == Reason.EDGE_TOO_SMALL and result.threshold == D("0.08")
    assert result.count is None and result.side == "yes"
    assert run(fc=forecast("0.55")).reason == Reason.EDGE_TOO_SMALL


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("halted", Reason.TRADING_HALTED),
        ("reduce_only", Reason.REDUCE_ONLY),
        ("paused?", Reason.TRADING_HALTED),
    ],
)
def test_decide_trading_state_blocks_new_entries(state, reason):
    result = run(pf=portfolio(trading_state=state))
    assert result.reason == reason and result.count is None and not result.traded


def test_decide_candidate_filter_reasons():
    assert run(view=market(status="closed")).reason == Reason.SKIP_STATUS
    assert run(view=market(volume=D("10"))).reason == Reason.SKIP_VOLUME
    assert run(view=market(close_time=NOW + timedelta(days=60))).reason == Reason.SKIP_CLOSE_TIME
    limits = RiskLimits(excluded_categories=("Economics",))
    assert run(limits=limits).reason == Reason.SKIP_CATEGORY
    pf = portfolio(open_tickers=frozenset({"KX-A"}), open_positions=1)
    assert run(pf=pf).reason == Reason.SKIP_OPEN_POSITION
    assert run(pf=portfolio(pending_tickers=frozenset({"KX-A"}))).reason == (
        Reason.SKIP_ORDER_PENDING
    )
    result = run(last_analysed_at=NOW - timedelta(minutes=5))
    assert result.reason == Reason.SKIP_RECENTLY_ANALYSED
    no_quotes = market(yes_ask=None, no_ask=None, yes_bid=None, no_bid=None)
    assert run(view=no_quotes).reason == Reason.SKIP_NO_QUOTE


def test_decide_screened_by_the_caller_skips_only_the_candidate_filter():
    # The engine runs candidate_filter itself before forecasting; decide does not repeat it.
    low_volume = market(volume=D("10"))
    assert run(view=low_volume).reason == Reason.SKIP_VOLUME
    assert run(view=low_volume, screened=True).reason == Reason.TRADED
    # The trading state and the forecast are still checked.
    halted = portfolio(trading_state="halted")
    assert run(pf=halted, screened=True).reason == Reason.TRADING_HALTED
    assert run(fc=forecast(confidence="0.10"), screened=True).reason == Reason.LOW_CONFIDENCE
    # Screened or not, a candidate that passes the filter gets the same decision.
    assert run(screened=True) == run()


def test_decide_forecast_reasons():
    result = decide(market(), None, portfolio(), LIMITS, now=NOW)
    assert result.reason == Reason.NO_FORECAST
    assert run(fc=forecast(valid=False)).reason == Reason.INVALID_FORECAST
    assert run(fc=forecast(probability=None)).reason == Reason.INVALID_FORECAST
    result = run(fc=forecast("1.2"))
    assert result.reason == Reason.INVALID_FORECAST
    assert "outside" in result.details["forecast_problem"]
    assert run(fc=forecast(probability=0.7)).reason == Reason.INVALID_FORECAST  # a float
    assert run(fc=forecast(has_skill=False)).reason == Reason.NO_SKILL
    assert run(fc=forecast("0.95", "0.49")).reason == Reason.LOW_CONFIDENCE
    # At the minimum confidence (low tier: .12), a big edge trades.
    assert run(fc=forecast("0.95", "0.50")).reason == Reason.TRADED


def test_forecast_problem_accepts_the_bounds():
    assert forecast_problem(forecast("0", "0")) is None
    assert forecast_problem(forecast("1", "1")) is None
    assert forecast_problem(forecast("-0.01")) is not None
    assert forecast_problem(forecast(confidence=D("NaN"))) is not None


def test_decide_insufficient_depth():
    assert run(view=market(yes_ask_depth=D("0"))).reason == Reason.INSUFFICIENT_DEPTH
    assert run(view=market(yes_ask_depth=D("0.5"))).reason == Reason.INSUFFICIENT_DEPTH
    # Depth on the other side does not matter.
    assert run(view=market(no_ask_depth=D("0"))).reason == Reason.TRADED
    result = run(view=market(yes_ask_depth=D("10")))
    assert (result.reason, result.count, result.details["limited_by"]) == (
        Reason.TRADED,
        D("10"),
        "depth",
    )


def test_decide_size_zero():
    result = run(limits=RiskLimits(kelly_fraction=D("0.001")))
    assert result.reason == Reason.SIZE_ZERO
    assert result.details["proposed_count"] == "0" and result.details["limited_by"] == "kelly"
    assert result.count is None


def test_decide_risk_position_size_when_one_contract_is_too_big():
    # 5% of $5 = $0.25 < one contract ($0.52 with fee).
    result = run(pf=portfolio(cash=D("5"), equity=D("5")))
    assert result.reason == Reason.RISK_POSITION_SIZE
    assert result.details["checked_cost"] == "0.52"


def test_decide_risk_open_positions():
    result = run(pf=portfolio(open_positions=15))
    assert result.reason == Reason.RISK_OPEN_POSITIONS
    assert result.count is None and result.details["proposed_count"] == "96"


def test_decide_risk_cash_reserve_when_cash_is_used_up():
    result = run(pf=portfolio(cash=D("100.30")))
    assert result.reason == Reason.RISK_CASH_RESERVE
    failed = [c for c in result.checks if not c.passed]
    assert [c.name for c in failed] == ["cash_reserve"]


def test_decide_shrinks_to_cash_above_reserve():
    result = run(pf=portfolio(cash=D("130")))
    assert (result.reason, result.count) == (Reason.TRADED, D("57"))


def test_decide_risk_category_exposure():
    result = run(pf=portfolio(category_exposure={"Economics": D("260")}))
    assert result.reason == Reason.RISK_CATEGORY_EXPOSURE


def test_decide_risk_daily_loss():
    assert run(pf=portfolio(daily_pnl=D("-150"))).reason == Reason.RISK_DAILY_LOSS
    assert run(pf=portfolio(daily_pnl=D("-149.99"))).reason == Reason.TRADED


def test_decide_uses_the_fee_function_given():
    result = run(fee_fn=lambda count, price: D("0"))
    # No fee: Kelly at .50 = .4 → capped .25; $50 / .50 = 100 contracts exactly.
    assert (result.reason, result.count, result.edge.edge) == (Reason.TRADED, D("100"), D("0.2"))


# --- Exits ----------------------------------------------------------------------------------


def position(side="yes", avg="0.40", bid="0.40", **overrides) -> PositionView:
    values = dict(
        ticker="KX-A",
        side=side,
        count=D("10"),
        avg_price=D(avg),
        opened_at=NOW - timedelta(hours=10),
        close_time=NOW + timedelta(days=5),
        bid=None if bid is None else D(bid),
    )
    values.update(overrides)
    return PositionView(**values)


def test_exit_none_while_within_limits():
    assert exit_signal(position(bid="0.45"), LIMITS, now=NOW) is None


@pytest.mark.parametrize("side", ["yes", "no"])
def test_stop_loss_at_and_across_the_limit_for_both_sides(side):
    signal = exit_signal(position(side, "0.40", "0.28"), LIMITS, now=NOW)  # −30%
    assert signal.reason == ExitReason.STOP_LOSS
    assert (signal.side, signal.count, signal.price, signal.action) == (
        side,
        D("10"),
        D("0.28"),
        "sell",
    )
    assert signal.decision_reason == Reason.EXIT and D(signal.details["return_pct"]) == D("-0.3")
    assert exit_signal(position(side, "0.40", "0.29"), LIMITS, now=NOW) is None  # −27.5%


def test_no_position_stop_uses_the_no_bid():
    # NO bought at .40; YES now .70/.75 → NO bid = 1 − .75 = .25: a 37.5% loss → stop.
    view = market(yes_bid=D("0.70"), yes_ask=D("0.75"), no_bid=None, no_ask=None)
    signal = exit_signal(position("no", "0.40", str(view.bid("no"))), LIMITS, now=NOW)
    assert signal.reason == ExitReason.STOP_LOSS and signal.price == D("0.25")
    assert D(signal.details["return_pct"]) == D("-0.375")


def test_no_position_whose_bid_rises_never_stops():
    # YES falls (.10/.15) → NO bid .85: the NO position gains; take-profit, not a stop.
    signal = exit_signal(position("no", "0.40", "0.55"), LIMITS, now=NOW)
    assert signal is None
    signal = exit_signal(position("no", "0.40", "0.85"), LIMITS, now=NOW)
    assert signal.reason == ExitReason.TAKE_PROFIT


@pytest.mark.parametrize("side", ["yes", "no"])
def test_take_profit_at_and_across_the_limit(side):
    signal = exit_signal(position(side, "0.40", "0.60"), LIMITS, now=NOW)  # +50%
    assert signal.reason == ExitReason.TAKE_PROFIT and signal.price == D("0.60")
    assert exit_signal(position(side, "0.40", "0.59"), LIMITS, now=NOW) is None


def test_exit_before_close():
    pos = position(close_time=NOW + timedelta(hours=1))
    assert exit_signal(pos, LIMITS, now=NOW).reason == ExitReason.BEFORE_CLOSE
    pos = position(close_time=NOW + timedelta(hours=1, minutes=1))
    assert exit_signal(pos, LIMITS, now=NOW) is None


def test_exit_max_hold():
    pos = position(opened_at=NOW - timedelta(hours=240))
    assert exit_signal(pos, LIMITS, now=NOW).reason == ExitReason.MAX_HOLD
    pos = position(opened_at=NOW - timedelta(hours=239, minutes=59))
    assert exit_signal(pos, LIMITS, now=NOW) is None


def test_stop_loss_takes_priority_and_no_bid_means_no_signal():
    pos = position(bid="0.10", close_time=NOW + timedelta(minutes=30))
    assert exit_signal(pos, LIMITS, now=NOW).reason == ExitReason.STOP_LOSS
    assert exit_signal(position(bid=None), LIMITS, now=NOW) is None
    assert exit_signal(position(bid="0"), LIMITS, now=NOW) is None


def test_zero_limits_disable_exits():
    limits = RiskLimits(
        stop_loss_pct=D("0"), take_profit_pct=D("0"), max_hold_hours=0, exit_before_close_hours=0
    )
    pos = position(
        bid="0.01", opened_at=NOW - timedelta(days=100), close_time=NOW + timedelta(minutes=1)
    )
    assert exit_signal(pos, limits, now=NOW) is None


# --- Positions, netting and settlement ------------------------------------------------------


def test_apply_fill_opens_and_adds_at_average_cost_without_fees():
    state, realized = apply_fill(PositionState(), "yes", "buy", D("10"), D("0.40"), D("0.17"))
    assert (state.side, state.count, state.cost_basis) == ("yes", D("10"), D("4.00"))
    assert realized == D("-0.17") and state.fees_paid == D("0.17")
    state, realized = apply_fill(state, "yes", "buy", D("10"), D("0.50"), D("0.18"))
    assert (state.count, state.cost_basis, state.avg_price) == (D("20"), D("9.00"), D("0.45"))
    assert state.realized_pnl == D("-0.35") and state.net_yes == D("20")


def test_buying_no_against_a_yes_long_nets_in_yes_terms():
    state, _ = apply_fill(PositionState(), "yes", "buy", D("10"), D("0.40"), D("0"))
    # Buy 4 NO at .50: closes 4 YES, (1 − .50) − .40 = .10 each, minus the fee.
    state, realized = apply_fill(state, "no", "buy", D("4"), D("0.50"), D("0.07"))
    assert realized == D("0.33")
    assert (state.side, state.count, state.cost_basis) == ("yes", D("6"), D("2.40"))
    # Buy 10 NO at .50: closes the 6 YES (+.60) and opens 4 NO at .50.
    state, realized = apply_fill(state, "no", "buy", D("10"), D("0.50"), D("0.18"))
    assert realized == D("0.42")
    assert (state.side, state.count, state.cost_basis, state.net_yes) == (
        "no",
        D("4"),
        D("2.00"),
        D("-4"),
    )
    # Sell the 4 NO at .70: (.70 − .50) × 4 = .80.
    state, realized = apply_fill(state, "no", "sell", D("4"), D("0.70"), D("0"))
    assert realized == D("0.80")
    assert not state.is_open and state.side is None and state.cost_basis == 0
    assert state.realized_pnl == D("0.33") + D("0.42") + D("0.80")
    assert state.fees_paid == D("0.25") and state.gross_realized_pnl == D("1.80")


def test_selling_yes_when_flat_opens_no():
    state, realized = apply_fill(PositionState(), "yes", "sell", D("5"), D("0.30"), D("0"))
    assert (state.side, state.count, state.cost_basis, realized) == ("no", D("5"), D("3.50"), 0)


def test_partial_close_carries_the_rounding_remainder():
    state, _ = apply_fill(PositionState(), "yes", "buy", D("1"), D("0.10"), D("0"))
    state, _ = apply_fill(state, "yes", "buy", D("2"), D("0.11"), D("0"))
    assert state.cost_basis == D("0.32")
    state, realized = apply_fill(state, "yes", "sell", D("1"), D("0.20"), D("0"))
    # .32 / 3 = .10666… → removed .106667 (rounded up), .213333 stays.
    assert realized == D("0.093333") and state.cost_basis == D("0.213333")
    state, realized2 = apply_fill(state, "yes", "sell", D("2"), D("0.20"), D("0"))
    assert realized2 == D("0.186667") and state.cost_basis == 0
    assert realized + realized2 == D("3") * D("0.20") - D("0.32")


def test_apply_fill_validates_input():
    empty = PositionState()
    with pytest.raises(ValueError):
        apply_fill(empty, "maybe", "buy", D("1"), D("0.5"), D("0"))
    with pytest.raises(ValueError):
        apply_fill(empty, "yes", "hold", D("1"), D("0.5"), D("0"))
    with pytest.raises(ValueError):
        apply_fill(empty, "yes", "buy", D("0"), D("0.5"), D("0"))
    with pytest.raises(ValueError):
        apply_fill(empty, "yes", "buy", D("1"), D("1.5"), D("0"))
    with pytest.raises(ValueError):
        apply_fill(empty, "yes", "buy", D("1"), D("0.5"), D("-0.01"))
    with pytest.raises(TypeError):
        apply_fill(empty, "yes", "buy", D("1"), 0.5, D("0"))
    with pytest.raises(ValueError):
        PositionState(side="yes", count=D("0"))


def test_unrealized_pnl_uses_the_held_side_bid():
    state, _ = apply_fill(PositionState(), "no", "buy", D("10"), D("0.40"), D("0"))
    assert unrealized_pnl(state, D("0.25")) == D("-1.50")
    assert unrealized_pnl(PositionState(), D("0.25")) == 0


def yes_long():
    return apply_fill(PositionState(), "yes", "buy", D("10"), D("0.40"), D("0.17"))[0]


def no_long():
    return apply_fill(PositionState(), "no", "buy", D("10"), D("0.60"), D("0.17"))[0]


@pytest.mark.parametrize(
    ("make", "result", "value", "payout", "realized"),
    [
        (yes_long, "yes", None, "10", "6.00"),
        (yes_long, "no", None, "0", "-4.00"),
        (no_long, "no", None, "10", "4.00"),
        (no_long, "yes", None, "0", "-6.00"),
        (yes_long, "void", None, "4.00", "0"),
        (no_long, "void", None, "6.00", "0"),
        (yes_long, "scalar", "0.25", "2.50", "-1.50"),
        (no_long, "scalar", "0.25", "7.50", "1.50"),
    ],
)
def test_settlement(make, result, value, payout, realized):
    state = make()
    scalar = None if value is None else D(value)
    assert settlement_payout(state, result, scalar) == D(payout)
    assert settle(state, result, scalar) == D(realized)
    new, booked = settle_position(state, result, scalar)
    assert booked == D(realized) and not new.is_open
    assert new.realized_pnl == D("-0.17") + D(realized) and new.fees_paid == D("0.17")


def test_settlement_charges_no_fee_and_refuses_bad_input():
    # Kalshi's settlement fee_cost repeats the fills' fees, booked by apply_fill: not again.
    assert settle(yes_long(), "yes") == D("6")
    assert settle(PositionState(), "yes") == 0
    with pytest.raises(ValueError):
        settle(yes_long(), "scalar")
    with pytest.raises(ValueError):
        settle(yes_long(), "scalar", D("1.5"))
    with pytest.raises(ValueError):
        settle(yes_long(), "")
