"""The "why" of a decision: which steps passed, which failed, which were not reached."""

from __future__ import annotations

from django.test import SimpleTestCase

from dashboard.why import FAILED, NOT_CHECKED, PASSED, explain


def statuses(why):
    return {s.key: s.status for s in why.steps}


class ExplainTests(SimpleTestCase):
    def test_a_trade_passed_every_step(self):
        why = explain("traded", {"trading_state": "active", "probability": "0.6", "edge": "0.1"})
        self.assertEqual(set(statuses(why).values()), {PASSED})
        self.assertEqual({f.status for f in why.filters}, {PASSED})

    def test_a_failed_filter_stops_the_later_ones(self):
        why = explain("skip_close_time", {"filter": "skip_close_time"})
        self.assertEqual([f.status for f in why.filters][:4], [PASSED, PASSED, FAILED, NOT_CHECKED])
        self.assertEqual(statuses(why)["filters"], FAILED)
        self.assertEqual(statuses(why)["forecast"], NOT_CHECKED)
        # The decide job filters before it reads the trading state.
        self.assertEqual(statuses(why)["state"], NOT_CHECKED)

    def test_a_risk_check_failure_names_the_step(self):
        checks = [{"name": "cash_reserve", "passed": False, "value": "1", "limit": "2"}]
        why = explain("risk_cash_reserve", {"trading_state": "active", "checks": checks})
        self.assertEqual(statuses(why)["edge"], PASSED)
        self.assertEqual(statuses(why)["risk"], FAILED)
        self.assertEqual(statuses(why)["size"], NOT_CHECKED)
        self.assertEqual(why.checks, checks)

    def test_no_quote_after_a_forecast_is_the_edge_step(self):
        why = explain("skip_no_quote", {"trading_state": "active", "probability": "0.5"})
        self.assertEqual(statuses(why)["edge"], FAILED)
        self.assertEqual(statuses(why)["filters"], PASSED)

    def test_a_halt_stops_before_the_filters(self):
        why = explain("trading_halted", {"trading_state": "halted"})
        self.assertEqual(statuses(why)["state"], FAILED)
        self.assertEqual({f.status for f in why.filters}, {NOT_CHECKED})

    def test_exits_and_unknown_codes(self):
        self.assertEqual(explain("exit", {"exit": "stop_loss"}).kind, "exit")
        self.assertEqual(explain("brand_new_reason", None).steps, [])
