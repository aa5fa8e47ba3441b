"""Backtests: parity with the database engine, determinism, no lookahead, exact figures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

from django.core.management import call_command
from django.test import SimpleTestCase, TestCase

from markets import matching
from markets.fees import taker_fee
from markets.recorded import MarketSpec, Quote, RecordedData, close_time, recorded_data_parse
from markets.simulator import SETTLE_DELAY
from tests.forecasters import Bullish
from trading import backtest, services, strategy
from trading.exchanges import exchange_for, replay_clock_advance
from trading.forecasters import MarketPriceForecaster
from trading.models import BacktestRun, Decision, Fill, Order, RiskSettings, TradingState

SMALL = Path(__file__).resolve().parents[1] / "data" / "recorded-small"


def run(data, forecaster=None, **params):
    book = backtest.RecordedBook(data)
    return backtest.Backtest(book, forecaster or Bullish(), backtest.BacktestParams(**params)).run()


class ParityTests(TestCase):
    """The fast backtest and the database-backed cycle take the same decisions and fills."""

    def test_it_matches_the_database_engine_on_recorded_data(self):
        # Two days of the recorded slice at 15-minute steps: entries, exits and settlements.
        call_command("load_recorded_markets", data=str(SMALL), verbosity=0)
        data = recorded_data_parse(data_dir=SMALL)
        step = timedelta(minutes=15)
        end = backtest.RecordedBook(data).start + timedelta(days=2)
        self._replay(end, step)
        result = run(data, step=step, end=end)
        self._assert_same(result)

    def test_resting_orders_and_maker_fills_match_the_database_engine(self):
        # A stretch where a stale quote leaves buys resting until trades print through them.
        # Entries rest for 90 minutes, longer than the 60-minute re-analysis: a market with an
        # entry resting is skipped, its remainder counts as exposure, it fills as trades print,
        # an exit signal cancels it, the exchange expires it.
        limits = self._window_limits(entry_order_ttl_seconds=90 * 60)
        result = self._window_parity(limits)
        self.assertTrue(any(f.maker for f in result.fills))
        self.assertTrue(any(not f.maker for f in result.fills))
        self.assertTrue(Fill.objects.filter(mode="replay", is_taker=False).exists())
        report = result.report()
        self.assertGreater(report["orders"]["resting_at_end"], 0)
        self.assertGreater(report["orders"]["canceled"], 0)
        self.assertGreater(report["funnel"].get("skip_entry_resting", 0), 0)
        self.assertTrue(Order.objects.filter(mode="replay", cancel_reason="exit").exists())

    def test_entries_that_expire_are_decided_again_as_in_the_database_engine(self):
        # The default 2-minute entries expire before the next 15-minute cycle; each market
        # whose entry expired unfilled is decided again at once, not after reanalyse_minutes.
        limits = self._window_limits()
        result = self._window_parity(limits)
        traded = sorted((d.ticker, d.at) for d in result.decisions if d.reason == "traded")
        again = [
            (a, b)
            for a, b in zip(traded, traded[1:], strict=False)
            if a[0] == b[0] and b[1] - a[1] < timedelta(minutes=int(limits.reanalyse_minutes))
        ]
        self.assertTrue(again)
        self.assertGreater(result.report()["orders"]["canceled"], 0)

    def _window_limits(self, **settings):
        RiskSettings.objects.update_or_create(pk=1, defaults=settings)
        limits = strategy.RiskLimits.from_object(RiskSettings.load())
        for name, value in settings.items():
            self.assertEqual(getattr(limits, name), value)
        return limits

    def _window_parity(self, limits):
        call_command("load_recorded_markets", data=str(SMALL), verbosity=0)
        data = recorded_data_parse(data_dir=SMALL)
        step = timedelta(minutes=15)
        start = datetime(2025, 8, 1, 12, tzinfo=UTC)
        end = datetime(2025, 8, 2, 20, tzinfo=UTC)
        # Start the database clock one tick before the backtest's first cycle in the window.
        book = backtest.RecordedBook(data)
        before = now = book.start
        while now < start:
            before, now = now, book.next_time(now, step)
        TradingState.load()
        TradingState.objects.filter(pk=TradingState.SINGLETON_PK).update(replay_clock=before)
        self._replay(end, step)
        result = run(data, step=step, start=start, end=end, limits=limits)
        self._assert_same(result)
        return result

    def _replay(self, end, step):
        while True:
            now, finished = replay_clock_advance(step)
            if finished or now > end:
                break
            services.trading_cycle_run(
                exchange=exchange_for("replay"), forecaster=Bullish(), mode="replay"
            )

    def _assert_same(self, result):
        db_decisions = sorted(
            (d.decided_at, d.market.ticker, d.reason, d.count)
            for d in Decision.objects.filter(mode="replay").select_related("market")
        )
        bt_decisions = sorted((d.at, d.ticker, d.reason, d.count) for d in result.decisions)
        self.assertGreater(len(bt_decisions), 0)
        self.assertEqual(db_decisions, bt_decisions)

        db_fills = sorted(
            (f.executed_at, f.market.ticker, f.side, f.action, f.count, f.side_price, f.fee)
            for f in Fill.objects.filter(mode="replay").select_related("market")
        )
        bt_fills = sorted(
            (f.at, f.ticker, f.side, f.action, f.count, f.price, f.fee) for f in result.fills
        )
        self.assertGreater(len(bt_fills), 0)
        self.assertEqual(db_fills, bt_fills)
        self.assertEqual(exchange_for("replay").balance(), result.cash)
        self.assertLessEqual(max(d.at for d in result.decisions), TradingState.load().replay_clock)


class BacktestTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = recorded_data_parse(data_dir=SMALL)

    def test_two_runs_give_identical_reports(self):
        first = run(self.data).report()
        second = run(self.data).report()
        first.pop("elapsed_s")
        second.pop("elapsed_s")
        self.assertEqual(first, second)
        self.assertGreater(first["trades"], 0)

    def test_deleting_all_data_after_t_changes_no_decision_before_t(self):
        full = run(self.data)
        times = sorted({d.at for d in full.decisions})
        cut = times[len(times) // 2]
        truncated = backtest.Backtest(
            backtest.RecordedBook(self.data, until=cut), Bullish(), backtest.BacktestParams()
        ).run()
        before = lambda decisions: [  # noqa: E731
            (d.at, d.ticker, d.reason, d.count, d.price) for d in decisions if d.at <= cut
        ]
        self.assertTrue(before(full.decisions))
        self.assertEqual(before(full.decisions), before(truncated.decisions))

    def test_the_report_has_the_required_keys(self):
        report = run(self.data).report()
        for key in (
            "trades",
            "fees",
            "pnl_after_fees",
            "max_drawdown",
            "brier_forecaster",
            "brier_market",
            "funnel",
            "fill_rate",
            "maker_share",
            "fees_by_type",
            "orders",
        ):
            self.assertIn(key, report)
        filled = sum(D(f) for f in report["fees_by_type"].values())
        self.assertEqual(filled, D(report["fees"]))
        self.assertGreater(D(report["maker_share"]), 0)  # resting orders met recorded trades
        self.assertLess(D(report["fill_rate"]), 1)  # a stale snapshot's depth is used once

    def test_a_what_if_replays_recorded_answers_without_the_forecaster(self):
        base = run(self.data)
        answers = backtest.recorded_answers(base.decisions)
        replayed = run(self.data, forecaster=backtest.RecordedAnswers("bullish", answers))
        a, b = base.report(), replayed.report()
        a.pop("elapsed_s"), b.pop("elapsed_s")
        self.assertEqual(a, b)
        tighter = replace(strategy.RiskLimits(), max_position_pct=D("0.01"))
        what_if = run(
            self.data, forecaster=backtest.RecordedAnswers("bullish", answers), limits=tighter
        )
        buys = lambda r: [f.count * f.price + f.fee for f in r.fills if f.action == "buy"]  # noqa: E731
        self.assertLess(max(buys(what_if)), max(buys(base)))
        # 1% of the equity (about $1,000 here) per position, fees included.
        self.assertTrue(all(cost <= D("12") for cost in buys(what_if)))


class HandComputedTests(SimpleTestCase):
    """One market, two quotes, a YES result: fees and settlement figures by hand."""

    def test_fees_and_settlement_match_hand_computation(self):
        day = date(2025, 6, 2)
        spec = MarketSpec(
            ticker="KXHIGHNY-25JUN02-B80.5",
            series="KXHIGHNY",
            event_ticker="KXHIGHNY-25JUN02",
            event_date=day,
            kind="B",
            strike=D("80.5"),
            origin="test",
            strike_type="between",
            result="yes",
        )
        data = RecordedData(markets={spec.ticker: spec})
        t0 = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
        data.snapshots[(spec.ticker, t0)] = Quote(yes_bid=D("0.30"), yes_ask=D("0.32"))
        limits = replace(
            strategy.RiskLimits(),
            exit_before_close_hours=0,
            max_hold_hours=0,
            stop_loss_pct=D("0"),
            take_profit_pct=D("0"),
        )
        result = run(data, forecaster=Bullish(), limits=limits)
        [buy] = result.fills
        # Kelly wants more than the book offers: the replay depth (100) is the cap, and
        # 100 × 0.32 + fee ceil(0.07·100·0.32·0.68 = 1.5232) = $33.53 is within 5% of $1000.
        self.assertEqual(
            (buy.side, buy.action, buy.price, buy.count), ("yes", "buy", D("0.32"), D("100"))
        )
        fee = D("1.53")
        self.assertEqual(buy.fee, fee)
        self.assertEqual(taker_fee(D("100"), D("0.32")), fee)
        report = result.report()
        self.assertEqual(report["settlements"], 1)
        expected_pnl = buy.count * (1 - D("0.32")) - fee
        self.assertEqual(D(report["pnl_after_fees"]), expected_pnl)
        self.assertEqual(result.cash, D("1000") + expected_pnl)
        self.assertEqual(report["fees"], str(fee.quantize(D("0.000001"))))
        settled_at = close_time("KXHIGHNY", day) + SETTLE_DELAY
        self.assertGreaterEqual(result.equity[-1][0], settled_at)


class ExitRepricingTests(SimpleTestCase):
    """A resting exit above the bid is cancelled and replaced toward the bid, not below its
    floor, as the engine's cancels and track steps do (strategy.exit_target)."""

    def cycle_with_resting_exit(self, bid_after: str) -> backtest.Backtest:
        day = date(2025, 6, 2)
        spec = MarketSpec(
            ticker="KXHIGHNY-25JUN02-B80.5",
            series="KXHIGHNY",
            event_ticker="KXHIGHNY-25JUN02",
            event_date=day,
            kind="B",
            strike=D("80.5"),
            origin="test",
            strike_type="between",
        )
        data = RecordedData(markets={spec.ticker: spec})
        t0 = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
        self.t1 = t0 + timedelta(minutes=15)
        bid = D(bid_after)
        data.snapshots[(spec.ticker, t0)] = Quote(yes_bid=D("0.60"), yes_ask=D("0.62"))
        data.snapshots[(spec.ticker, self.t1)] = Quote(yes_bid=bid, yes_ask=bid + D("0.02"))
        limits = replace(
            strategy.RiskLimits(),
            exit_before_close_hours=0,
            max_hold_hours=0,
            stop_loss_pct=D("0"),
            take_profit_pct=D("0"),
            exit_floor_pct=D("0.50"),
        )
        bt = backtest.Backtest(
            backtest.RecordedBook(data), Bullish(), backtest.BacktestParams(limits=limits)
        )
        self.ticker = spec.ticker
        state = strategy.PositionState(side="yes", count=D("50"), cost_basis=D("25"))
        bt.positions[spec.ticker] = backtest._Position(state, t0, close_time("KXHIGHNY", day))
        bt.last_decided[spec.ticker] = self.t1  # no new entry decision in the way
        exit_order = matching.Order("yes", "sell", D("0.60"), D("50"))
        bt.resting.append(
            backtest._Resting(spec.ticker, exit_order, t0, "exit", D("0.60"), "take_profit")
        )
        bt.cycle(self.t1)
        return bt

    def test_an_exit_above_the_bid_is_replaced_at_the_bid(self):
        bt = self.cycle_with_resting_exit("0.40")
        self.assertEqual(bt.orders_canceled, 1)
        self.assertEqual(
            [(d.at, d.reason, d.count, d.price) for d in bt.decisions],
            [(self.t1, "exit", D("50"), D("0.40"))],
        )
        [fill] = bt.fills
        self.assertEqual((fill.action, fill.count, fill.price), ("sell", D("50"), D("0.40")))
        self.assertNotIn(self.ticker, bt.positions)

    def test_the_replacement_rests_at_the_floor_when_the_bid_is_below_it(self):
        bt = self.cycle_with_resting_exit("0.20")  # floor: 0.50 × 0.60 = 0.30
        self.assertEqual([(d.reason, d.price) for d in bt.decisions], [("exit", D("0.30"))])
        self.assertEqual(bt.fills, [])
        [resting] = bt.resting
        self.assertEqual((resting.side_price, resting.chain_start), (D("0.30"), D("0.60")))


class BacktestCommandTests(TestCase):
    def test_the_command_prints_the_report_writes_json_and_stores_the_run(self):
        import json
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            text = call_command(
                "backtest",
                data=str(SMALL),
                forecaster="tests.forecasters.Bullish",
                json_path=str(out),
                no_progress=True,
            )
            report = json.loads(out.read_text())
        self.assertIn("P&L after fees", text)
        self.assertIn("fill rate", text)
        self.assertIn("maker share", text)
        run_ = BacktestRun.objects.get()
        self.assertEqual(run_.report["trades"], report["trades"])
        self.assertTrue(run_.answers)
        # A what-if on the stored forecasts with a tighter limit.
        call_command(
            "backtest",
            data=str(SMALL),
            reuse=run_.pk,
            sets=["max_position_pct=0.01"],
            no_progress=True,
        )
        what_if = BacktestRun.objects.exclude(pk=run_.pk).get()
        self.assertEqual(what_if.reused_from, run_)
        self.assertEqual(what_if.forecaster, run_.forecaster)


class MarketForecasterTests(SimpleTestCase):
    def test_the_market_forecaster_never_trades(self):
        result = run(recorded_data_parse(data_dir=SMALL), forecaster=MarketPriceForecaster())
        self.assertEqual(result.report()["trades"], 0)
