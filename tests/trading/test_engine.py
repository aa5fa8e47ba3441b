"""The engine end to end on the simulated exchange: decide → execute → reconcile → settle,
and the promises: no duplicate orders, unknown outcomes block, foreign orders halt."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from markets.exchange import OrderOutcomeUnknown
from markets.models import SimOrder
from markets.simulator import MarketOutcome, SimulatedExchange
from tests.base import make_event, make_market
from tests.sim import T0, StaticQuotes, quote
from trading import services
from trading.forecasters import ForecastResult
from trading.models import (
    Decision,
    Fill,
    JobLease,
    JobRun,
    Order,
    Position,
    RiskSettings,
    Settlement,
    TradingState,
)


class ConfidentForecaster:
    """Always says YES with 80% probability and 0.9 confidence."""

    name = "confident"
    needs_skill = False

    def __init__(self, probability="0.80"):
        self.probability = D(probability)
        self.calls = 0

    def forecast(self, q, *, now):
        self.calls += 1
        return ForecastResult(self.probability, D("0.9"), rationale="test")


class AcceptThenFail(SimulatedExchange):
    """Accepts the order (it rests on the book) and then the answer is lost."""

    def place_order(self, request):
        super().place_order(request)
        raise OrderOutcomeUnknown("read timeout")


class FailBeforeAccepting(SimulatedExchange):
    def place_order(self, request):
        raise OrderOutcomeUnknown("connect timeout after send")


class EngineTests(TestCase):
    def setUp(self):
        event = make_event(category="Test")
        self.market = make_market(event=event, ticker="MKT", close_time=T0 + timedelta(days=1))
        self.quotes = StaticQuotes(quote("MKT", bid="0.40", ask="0.42"))
        self.exchange = SimulatedExchange(
            name="paper", quotes=self.quotes, account="paper-test", starting_cash=D("1000")
        )
        self.forecaster = ConfidentForecaster()

    def cycle(self, exchange=None):
        return services.trading_cycle_run(
            exchange=exchange or self.exchange, forecaster=self.forecaster, mode="paper"
        )

    def test_a_cycle_trades_an_edge_and_books_the_fill_and_position(self):
        report = self.cycle()
        self.assertEqual(report.counts.get("traded"), 1, report.counts)
        decision = Decision.objects.get(reason="traded")
        order = Order.objects.get(decision=decision)
        self.assertEqual(order.client_order_id, f"kd-paper-{decision.pk}")
        self.assertEqual(order.status, Order.Status.FILLED)
        self.assertEqual(order.yes_price, D("0.42"))
        fill = Fill.objects.get(order=order)
        position = Position.objects.get(market=self.market, status="open")
        self.assertEqual((position.side, position.count), ("yes", fill.count))
        self.assertEqual(position.cost_basis, fill.count * D("0.42"))
        self.assertEqual(position.fees_paid, fill.fee)
        # Position size cap: 5% of $1000 equity, fees included.
        self.assertLessEqual(position.cost_basis + position.fees_paid, D("50"))
        self.assertEqual(SimOrder.objects.count(), 1)

    def test_a_second_cycle_never_sends_the_same_order_again(self):
        self.cycle()
        self.cycle()
        self.quotes.clock += timedelta(hours=2)
        self.cycle()
        self.assertEqual(SimOrder.objects.count(), 1)
        self.assertEqual(Order.objects.count(), 1)

    def test_settlement_closes_the_position_with_exact_pnl(self):
        self.cycle()
        position = Position.objects.get(status="open")
        count, cost, fees = position.count, position.cost_basis, position.fees_paid
        self.quotes.by_ticker.clear()
        self.quotes.results["MKT"] = MarketOutcome("yes", T0 + timedelta(hours=1))
        self.quotes.clock = T0 + timedelta(hours=2)
        self.cycle()
        settlement = Settlement.objects.get(market=self.market)
        self.assertEqual(settlement.payout, count)
        self.assertEqual(settlement.realized_pnl, count - cost)
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        # Realized over the position's life: payout − cost − fees paid.
        self.assertEqual(position.realized_pnl, count - cost - fees)
        self.assertEqual(self.exchange.balance(), D("1000") - cost - fees + count)

    def test_an_unknown_outcome_blocks_the_market_until_reconcile_finds_the_order(self):
        exchange = AcceptThenFail(
            name="paper", quotes=self.quotes, account="paper-test", starting_cash=D("1000")
        )
        # The entry lives longer than this test's two hours (the exchange would expire it).
        RiskSettings.objects.update_or_create(pk=1, defaults={"entry_order_ttl_seconds": 4 * 3600})
        services.decide_run(exchange=exchange, forecaster=self.forecaster, mode="paper", now=T0)
        # The book empties before the order arrives: it rests unfilled.
        self.quotes.by_ticker["MKT"] = quote("MKT", bid="0.40", ask="0.42", depth="0")
        services.execute_run(exchange=exchange, mode="paper", now=T0, reconciled_at=_now())
        order = Order.objects.get()
        self.assertEqual(order.status, Order.Status.UNKNOWN)
        # Another intent on the same market is not sent while the first is unknown.
        self.quotes.clock += timedelta(hours=2)
        services.decide_run(
            exchange=exchange, forecaster=self.forecaster, mode="paper", now=self.quotes.clock
        )
        self.assertFalse(Order.objects.filter(status="approved").exists())
        # Reconciliation finds our client_order_id on the exchange and adopts the outcome.
        services.reconcile_run(exchange=exchange, mode="paper", now=self.quotes.clock)
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.ACKED)
        self.assertIsNotNone(order.exchange_order_id)
        self.assertEqual(SimOrder.objects.count(), 1)

    def test_an_order_never_accepted_becomes_not_placed_after_the_grace_period(self):
        exchange = FailBeforeAccepting(
            name="paper", quotes=self.quotes, account="paper-test", starting_cash=D("1000")
        )
        services.decide_run(exchange=exchange, forecaster=self.forecaster, mode="paper", now=T0)
        services.execute_run(exchange=exchange, mode="paper", now=T0, reconciled_at=_now())
        order = Order.objects.get()
        self.assertEqual(order.status, Order.Status.UNKNOWN)
        services.reconcile_run(exchange=exchange, mode="paper", now=T0)
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.UNKNOWN)  # too soon to tell
        self.quotes.clock = T0 + services.UNKNOWN_GRACE
        services.reconcile_run(exchange=exchange, mode="paper", now=self.quotes.clock)
        order.refresh_from_db()
        self.assertEqual(order.status, Order.Status.NOT_PLACED)
        self.assertEqual(SimOrder.objects.count(), 0)

    def test_a_halt_sends_nothing(self):
        services.halt("operator test")
        self.cycle()
        self.assertEqual(SimOrder.objects.count(), 0)
        self.assertFalse(Decision.objects.filter(reason="traded").exists())
        self.assertTrue(Decision.objects.filter(reason="trading_halted").exists())

    def test_approved_intents_wait_without_a_fresh_reconcile(self):
        services.decide_run(
            exchange=self.exchange, forecaster=self.forecaster, mode="paper", now=T0
        )
        report = services.execute_run(exchange=self.exchange, mode="paper", now=T0)
        self.assertEqual(report.counts, {"orders_gated": 1})
        self.assertEqual(SimOrder.objects.count(), 0)

    def test_a_foreign_order_on_the_exchange_halts_trading(self):
        from markets.exchange import OrderRequest

        self.exchange.place_order(OrderRequest("manual-1", "MKT", "yes", "buy", D("0.30"), D("1")))
        self.cycle()
        state = TradingState.load()
        self.assertEqual(state.state, "halted")
        self.assertIn("foreign order", state.reason)

    def test_a_stop_loss_exit_is_a_real_sell_order(self):
        self.cycle()
        position = Position.objects.get(status="open")
        # The YES bid collapses far below the 0.42 entry: a stop-loss.
        self.quotes.by_ticker["MKT"] = quote("MKT", bid="0.20", ask="0.22")
        self.quotes.clock += timedelta(minutes=5)
        self.cycle()
        exit_order = Order.objects.get(purpose="exit")
        self.assertEqual((exit_order.side, exit_order.action), ("yes", "sell"))
        self.assertEqual(exit_order.status, Order.Status.FILLED)
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")
        self.assertEqual(SimOrder.objects.filter(action="sell").count(), 1)

    def test_a_second_run_is_refused_while_the_lease_is_held(self):
        token = services.lease_acquire(services.LEASE_NAME, owner="other")
        self.assertIsNotNone(token)
        run = services.run_job("trading_cycle", "paper", lambda run, tok: self.cycle())
        self.assertEqual(run.status, JobRun.Status.SKIPPED)
        self.assertEqual(SimOrder.objects.count(), 0)
        services.lease_release(services.LEASE_NAME, token)
        run = services.run_job("trading_cycle", "paper", lambda run, tok: self.cycle())
        self.assertEqual(run.status, JobRun.Status.OK)
        self.assertEqual(JobLease.objects.get().token, token + 1)


def _now():
    from django.utils import timezone

    return timezone.now()


class AuthFailure(SimulatedExchange):
    def place_order(self, request):
        from markets.exchange import ExchangeAuthError

        raise ExchangeAuthError("HTTP 401 unauthorized")


class AuthFailureTests(TestCase):
    def test_a_401_on_create_rejects_the_order_and_halts_trading(self):
        make_market(ticker="MKT", close_time=T0 + timedelta(days=1))
        exchange = AuthFailure(
            name="paper", quotes=StaticQuotes(quote("MKT")), account="a", starting_cash=D("1000")
        )
        services.trading_cycle_run(
            exchange=exchange, forecaster=ConfidentForecaster(), mode="paper"
        )
        self.assertEqual(Order.objects.get().status, Order.Status.REJECTED)
        state = TradingState.load()
        self.assertEqual(state.state, "halted")
        self.assertIn("401", state.reason)


class FlattenTests(TestCase):
    def test_flatten_writes_an_exit_intent_that_the_next_cycle_sends(self):
        market = make_market(ticker="MKT", close_time=T0 + timedelta(days=1))
        quotes = StaticQuotes(quote("MKT", bid="0.40", ask="0.42"))
        exchange = SimulatedExchange(
            name="paper", quotes=quotes, account="f", starting_cash=D("1000")
        )
        services.trading_cycle_run(
            exchange=exchange, forecaster=ConfidentForecaster(), mode="paper"
        )
        position = Position.objects.get(status="open")
        market.yes_bid, market.no_bid = D("0.40"), D("0.58")
        market.save()
        with CaptureQueriesContext(connection) as flatten:
            order = services.position_flatten(position=position)
        self.assertEqual(
            (order.purpose, order.action, order.status), ("flatten", "sell", "approved")
        )
        # An operator's action is committed durably (decide's own write need not wait).
        self.assertFalse(any("synchronous_commit" in q["sql"] for q in flatten.captured_queries))
        with self.assertRaises(ValueError):
            services.position_flatten(position=position)  # one open order at a time
        quotes.clock += timedelta(minutes=5)
        services.trading_cycle_run(
            exchange=exchange, forecaster=ConfidentForecaster(), mode="paper"
        )
        position.refresh_from_db()
        self.assertEqual(position.status, "closed")


class DailyLossBreakerTests(TestCase):
    def test_a_loss_beyond_the_daily_limit_switches_to_reduce_only_and_exits_still_run(self):
        from trading.models import RiskSettings

        RiskSettings.objects.update_or_create(pk=1, defaults={"max_daily_loss_pct": D("0.01")})
        make_market(ticker="MKT", close_time=T0 + timedelta(days=1))
        make_market(ticker="OTHER", close_time=T0 + timedelta(days=1))
        quotes = StaticQuotes(quote("MKT", bid="0.40", ask="0.42"))
        exchange = SimulatedExchange(
            name="paper", quotes=quotes, account="b", starting_cash=D("1000")
        )
        services.trading_cycle_run(
            exchange=exchange, forecaster=ConfidentForecaster(), mode="paper"
        )
        self.assertEqual(Position.objects.open().count(), 1)
        # The market collapses: the position loses far more than 1% of equity today.
        quotes.by_ticker["MKT"] = quote("MKT", bid="0.05", ask="0.07")
        quotes.by_ticker["OTHER"] = quote("OTHER", bid="0.40", ask="0.42")
        quotes.clock += timedelta(minutes=5)
        report = services.trading_cycle_run(
            exchange=exchange, forecaster=ConfidentForecaster(), mode="paper"
        )
        state = TradingState.load()
        self.assertEqual(state.state, "reduce_only")
        self.assertIn("daily loss", state.reason)
        self.assertEqual(report.counts.get("daily_loss_breaker"), 1)
        # No new entry on the other market; the stop-loss exit still went out.
        self.assertFalse(Order.objects.filter(market__ticker="OTHER").exists())
        self.assertTrue(Order.objects.filter(purpose="exit").exists())


class SkillGateTests(TestCase):
    def test_a_forecaster_without_proven_skill_forecasts_but_does_not_trade(self):
        class Unproven(ConfidentForecaster):
            name = "unproven"
            needs_skill = True

        make_market(ticker="MKT", close_time=T0 + timedelta(days=1))
        exchange = SimulatedExchange(
            name="paper", quotes=StaticQuotes(quote("MKT")), account="g", starting_cash=D("1000")
        )
        forecaster = Unproven()
        services.trading_cycle_run(exchange=exchange, forecaster=forecaster, mode="paper")
        self.assertEqual(forecaster.calls, 1)
        decision = Decision.objects.get()
        self.assertEqual(decision.reason, "no_skill")
        self.assertIsNotNone(decision.forecast)
        self.assertFalse(Order.objects.exists())


class DecideBatchTests(TestCase):
    """decide writes many rows at once: each decision must point at its own forecast."""

    def setUp(self):
        event = make_event(category="Test")
        tickers = [f"B{i}" for i in range(12)]
        for ticker in tickers:
            make_market(event=event, ticker=ticker, close_time=T0 + timedelta(days=1))
        # Every third market is filtered out before forecasting (no volume).
        self.quotes = StaticQuotes(
            *(quote(t, volume=D("1") if i % 3 == 0 else D("5000")) for i, t in enumerate(tickers))
        )
        self.exchange = SimulatedExchange(
            name="paper", quotes=self.quotes, account="paper-batch", starting_cash=D("1000")
        )

    def decide(self, now):
        return services.decide_run(
            exchange=self.exchange,
            forecaster=ConfidentForecaster(probability="0.43"),
            mode="paper",
            now=now,
        )

    def test_each_decision_links_the_forecast_of_its_own_market(self):
        self.decide(T0)
        decisions = list(Decision.objects.select_related("market", "forecast"))
        self.assertEqual(len(decisions), 12)
        filtered = [d for d in decisions if d.reason == "skip_volume"]
        self.assertEqual(len(filtered), 4)
        self.assertTrue(all(d.forecast is None for d in filtered))
        forecast_for = [d for d in decisions if d.forecast is not None]
        self.assertEqual(len(forecast_for), 8)
        for decision in forecast_for:
            self.assertEqual(decision.forecast.market_id, decision.market_id)
            self.assertEqual(decision.created_at, T0)
            self.assertEqual(decision.details["ticker"], decision.market.ticker)

    def test_a_decision_stands_for_reanalyse_minutes_then_the_market_is_decided_again(self):
        self.decide(T0)
        report = self.decide(T0 + timedelta(minutes=59))
        self.assertEqual(report.counts, {"skip_recently_analysed": 12})
        self.assertEqual(Decision.objects.count(), 12)
        self.decide(T0 + timedelta(minutes=60))
        self.assertEqual(Decision.objects.count(), 24)


class DecideQueryCountTests(TestCase):
    """A decide cycle's queries do not grow with the number of candidate markets."""

    def queries_for(self, n: int, prefix: str) -> int:
        event = make_event(category="Test")
        quotes = []
        for i in range(n):
            make_market(event=event, ticker=f"{prefix}{i}", close_time=T0 + timedelta(days=1))
            # Half are forecast and decided; half stop at a filter.
            quotes.append(quote(f"{prefix}{i}", volume=D("5000") if i % 2 else D("1")))
        exchange = SimulatedExchange(
            name="paper",
            quotes=StaticQuotes(*quotes),
            account=f"q-{prefix}",
            starting_cash=D("1000"),
        )
        with CaptureQueriesContext(connection) as ctx:
            services.decide_run(
                exchange=exchange,
                forecaster=ConfidentForecaster(probability="0.43"),
                mode="paper",
                now=T0,
            )
        async_commit = any("synchronous_commit" in q["sql"] for q in ctx.captured_queries)
        self.assertEqual(async_commit, connection.vendor == "postgresql")
        self.assertEqual(Decision.objects.filter(market__ticker__startswith=prefix).count(), n)
        return len(ctx.captured_queries)

    def test_ten_markets_and_six_hundred_take_the_same_number_of_queries(self):
        self.queries_for(3, "WARM")  # settings and state rows are created on first use
        self.assertEqual(self.queries_for(10, "S"), self.queries_for(600, "L"))
