"""Each market's own fees in the strategy and the engine, zero volume, and settlement fees
(issue 12, findings 5, 6 and 7)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.test import TestCase, override_settings
from django.utils import timezone

from markets.exchange import MarketQuote
from markets.exchange_kalshi import KalshiExchange
from markets.fees import FeeSchedule, order_fee
from markets.services import market_sync
from tests.fakes import FakeKalshi, iso
from tests.forecasters import Bullish
from tests.trading.test_strategy import NOW, forecast, market, portfolio, run
from trading import services
from trading.models import Decision, Order, Position, Settlement, TradingState
from trading.reasons import Reason
from trading.strategy import (
    PositionState,
    RiskLimits,
    apply_fill,
    candidate_filter,
    decide,
    settle_position,
)

QM = "quadratic_with_maker_fees"
DOUBLE_MAKER = FeeSchedule(QM, D(2))


# --- Strategy: edge, size and cost use the market's schedule --------------------------------


def test_a_series_with_maker_fees_and_multiplier_two_changes_edge_size_and_cost():
    default = run(market())
    doubled = run(market(fees=DOUBLE_MAKER))
    assert default.reason == doubled.reason == Reason.TRADED
    # One contract at 0.50: default ceil(0.0175) = 0.02, doubled ceil(0.035) = 0.04.
    assert (default.details["fee"], doubled.details["fee"]) == ("0.02", "0.04")
    assert doubled.edge.fee == order_fee(doubled.count, D("0.50"), fees=DOUBLE_MAKER)
    assert D(doubled.details["edge_yes"]) == D("0.70") - D("0.50") - D("0.04")
    # The order's cost (its max_cost) holds the fee of its own schedule, at its size.
    for result, fees in ((default, FeeSchedule()), (doubled, DOUBLE_MAKER)):
        assert result.cost == result.count * D("0.50") + order_fee(
            result.count, D("0.50"), fees=fees
        )
    assert doubled.cost - doubled.count * D("0.50") == order_fee(
        doubled.count, D("0.50"), fees=FeeSchedule(QM, D(2)), maker=False
    )
    assert (default.count, default.cost) != (doubled.count, doubled.cost)
    assert doubled.details["fee_type"] == QM and doubled.details["fee_multiplier"] == "2"


def test_a_thin_edge_passes_under_the_default_fee_and_not_under_a_doubled_one():
    # A thin edge: at 0.56 the default fee leaves room to trade, the doubled one does not.
    limits = RiskLimits(edge_high=D("0.02"))
    fc = forecast("0.60", "0.95")
    default = run(market(yes_ask=D("0.56")), fc, limits=limits)
    doubled = run(market(yes_ask=D("0.56"), fees=FeeSchedule("quadratic", D(2))), fc, limits=limits)
    assert default.reason == Reason.TRADED
    assert doubled.edge.edge < default.edge.edge
    assert doubled.reason == Reason.EDGE_TOO_SMALL


def test_entries_pay_the_taker_rate_even_on_series_that_charge_makers_less():
    taker_only = run(market())
    maker_series = run(market(fees=FeeSchedule(QM, D(1))))
    assert (maker_series.edge.fee, maker_series.cost) == (taker_only.edge.fee, taker_only.cost)


def test_a_waived_market_pays_no_fee_until_its_waiver_ends():
    waived = FeeSchedule(QM, D(2), waived_until=NOW + timedelta(hours=1))
    result = run(market(fees=waived))
    assert result.reason == Reason.TRADED
    assert (result.edge.fee, result.edge.edge) == (D(0), D("0.20"))
    assert result.cost == result.count * D("0.50")
    assert result.details["fee_waived"] is True
    ended = FeeSchedule(QM, D(2), waived_until=NOW)
    assert run(market(fees=ended)).details["fee"] == "0.04"


# --- Zero volume ---------------------------------------------------------------------------


def test_zero_volume_is_filtered_and_unknown_volume_is_not():
    limits = RiskLimits(min_volume=D("1"))
    pf = portfolio()
    assert candidate_filter(market(volume=D(0)), pf, limits, now=NOW) == Reason.SKIP_VOLUME
    assert candidate_filter(market(volume=None), pf, limits, now=NOW) is None
    assert candidate_filter(market(volume=D(1)), pf, limits, now=NOW) is None


def test_market_view_keeps_a_volume_of_zero_and_the_fee_schedule():
    quote = MarketQuote(
        ticker="KX-A",
        event_ticker="KX",
        status="active",
        close_time=NOW + timedelta(days=5),
        yes_bid=D("0.48"),
        yes_ask=D("0.50"),
        volume=D(0),
        fees=DOUBLE_MAKER,
    )
    limits = RiskLimits(min_volume=D("1"))
    view = services.market_view(quote, limits)
    assert (view.volume, view.fees) == (D(0), DOUBLE_MAKER)
    assert candidate_filter(view, portfolio(), limits, now=NOW) == Reason.SKIP_VOLUME
    result = decide(view, forecast(), portfolio(), limits, now=NOW)
    assert result.reason == Reason.SKIP_VOLUME
    unknown = services.market_view(
        MarketQuote("KX-B", "KX", "active", NOW + timedelta(days=5), D("0.48"), D("0.50")), limits
    )
    assert unknown.volume is None
    assert candidate_filter(unknown, portfolio(), limits, now=NOW) is None


# --- Settlement fees are not charged twice -------------------------------------------------


def test_settlement_realizes_payout_minus_cost_and_the_fills_fees_once():
    # 100 YES at 0.32, taker fee ceil(0.07 × 100 × 0.32 × 0.68 = 1.5232) = 1.53.
    state, _ = apply_fill(PositionState(), "yes", "buy", D(100), D("0.32"), D("1.53"))
    settled, realized = settle_position(state, "yes")
    assert realized == D(100) - D(32)
    assert (settled.realized_pnl, settled.fees_paid) == (D("66.47"), D("1.53"))


@override_settings(TRADING_MODE="live")
class SettlementFeeTests(TestCase):
    """Kalshi's settlement fee_cost repeats the fills' fees: booked once, reported as sent."""

    def test_a_settlement_whose_fee_cost_equals_the_fills_fees_is_not_charged_again(self):
        fake = FakeKalshi()
        fake.now = timezone.now()
        ticker = "KXFEE-26SEP01-B0"
        fake.add_market(ticker, yes_bid="0.3000", yes_ask="0.3200", volume="5000.00")
        client = fake.client()
        market_sync(client=client)
        from markets.models import Market

        position = Position.objects.create(
            mode="live",
            market=Market.objects.get(ticker=ticker),
            side="yes",
            count=D(100),
            cost_basis=D("32"),
            fees_paid=D("1.53"),
            realized_pnl=D("-1.53"),
        )
        fake.add_settlement(
            ticker,
            market_result="yes",
            yes_count="100.00",
            yes_total_cost="32.0000",
            revenue_cents=10_000,
            fee_cost="1.5300",
        )
        report = services.CycleReport(mode="live", now=fake.now)
        services._reconcile_settlements(KalshiExchange(client), "live", report)
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        self.assertEqual(position.realized_pnl, D("66.47"))  # not 64.94
        self.assertEqual(position.fees_paid, D("1.53"))
        settlement = Settlement.objects.get()
        self.assertEqual(
            (settlement.payout, settlement.fee, settlement.realized_pnl),
            (D("100"), D("1.53"), D("68")),
        )

    def test_the_engine_books_a_settled_position_with_its_fees_once(self):
        fake = FakeKalshi()
        fake.now = timezone.now()
        ticker = "KXFEE-26SEP01-B0"
        fake.add_market(
            ticker,
            yes_bid="0.3000",
            yes_ask="0.3200",
            volume="5000.00",
            close_time=timezone.now() + timedelta(days=3),
        )
        client = fake.client()
        market_sync(client=client)
        exchange = KalshiExchange(client)
        TradingState.objects.update_or_create(pk=1, defaults={"live_armed": True})
        services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="live")
        services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="live")
        position = Position.objects.get(status="open")
        count, cost, fees = position.count, position.cost_basis, position.fees_paid
        self.assertGreater(fees, 0)
        settled = fake.settle_market(ticker, "yes")
        self.assertEqual(D(settled["fee_cost"]), fees)  # what Kalshi reports
        services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="live")
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        self.assertEqual(position.realized_pnl, count - cost - fees)
        self.assertEqual(TradingState.load().state, "active", TradingState.load().reason)


# --- The engine: every market trades under its own schedule ---------------------------------


@override_settings(TRADING_MODE="live")
class EngineFeeTests(TestCase):
    def test_each_market_is_decided_and_capped_with_its_own_series_fees(self):
        fake = FakeKalshi()
        fake.now = timezone.now()
        fake.add_series("KXDOUBLE", fee_type=QM, fee_multiplier=2)
        close = timezone.now() + timedelta(days=3)
        for ticker, extra in (
            ("KXPLAIN-26SEP01-B0", {}),
            ("KXDOUBLE-26SEP01-B0", {}),
            (
                "KXWAIVED-26SEP01-B0",
                {"fee_waiver_expiration_time": iso(timezone.now() + timedelta(days=1))},
            ),
        ):
            fake.add_market(
                ticker,
                yes_bid="0.4800",
                yes_ask="0.5000",
                volume="5000.00",
                close_time=close,
                **extra,
            )
        client = fake.client()
        summary = market_sync(client=client)
        self.assertEqual((summary.fees_refreshed, summary.fee_errors), (3, 0))
        TradingState.objects.update_or_create(pk=1, defaults={"live_armed": True})
        services.trading_cycle_run(
            exchange=KalshiExchange(client), forecaster=Bullish(), mode="live"
        )
        expected = {
            "KXPLAIN-26SEP01-B0": FeeSchedule(),
            "KXDOUBLE-26SEP01-B0": DOUBLE_MAKER,
            "KXWAIVED-26SEP01-B0": None,
        }
        fees_per_contract = {}
        for ticker, schedule in expected.items():
            order = Order.objects.get(market__ticker=ticker)
            decision = Decision.objects.get(pk=order.decision_id)
            contracts = order.count * D("0.50")
            fee = D(0) if schedule is None else order_fee(order.count, D("0.50"), fees=schedule)
            self.assertEqual(order.max_cost, contracts + fee, ticker)
            fees_per_contract[ticker] = D(decision.details["fee_per_contract"])
        self.assertEqual(
            fees_per_contract,
            {
                "KXPLAIN-26SEP01-B0": D("0.02"),
                "KXDOUBLE-26SEP01-B0": D("0.04"),
                "KXWAIVED-26SEP01-B0": D("0"),
            },
        )
        self.assertEqual(len(fake.accepted), 3)  # the live guard took off the right fee


class SimulatedSettlementFeeTests(TestCase):
    def test_the_simulator_reports_the_fills_fees_on_its_settlement_and_they_count_once(self):
        from markets.simulator import MarketOutcome, SimulatedExchange
        from tests.base import make_event, make_market
        from tests.sim import T0, StaticQuotes, quote

        make_market(event=make_event(category="Test"), ticker="MKT", close_time=T0 + timedelta(1))
        quotes = StaticQuotes(quote("MKT", bid="0.40", ask="0.42"))
        exchange = SimulatedExchange(
            name="paper", quotes=quotes, account="paper-fees", starting_cash=D("1000")
        )
        services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="paper")
        position = Position.objects.get(status="open")
        count, cost, fees = position.count, position.cost_basis, position.fees_paid
        self.assertGreater(fees, 0)
        quotes.by_ticker.clear()
        quotes.results["MKT"] = MarketOutcome("yes", T0 + timedelta(hours=1))
        quotes.clock = T0 + timedelta(hours=2)
        services.trading_cycle_run(exchange=exchange, forecaster=Bullish(), mode="paper")
        [reported] = exchange.settlements()
        self.assertEqual(reported.fee, fees)  # Kalshi's meaning of fee_cost
        settlement = Settlement.objects.get()
        self.assertEqual((settlement.fee, settlement.realized_pnl), (fees, count - cost))
        position.refresh_from_db()
        self.assertEqual(position.realized_pnl, count - cost - fees)
        self.assertEqual(exchange.balance(), D("1000") - cost - fees + count)
