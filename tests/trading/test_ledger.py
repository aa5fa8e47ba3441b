"""The forecast ledger: scoring settled forecasts, skill against the market, the skill gate.

The hand-computed sample (forecaster ``llm``), four markets settled yes/no:

    market  result  p     market price   (p − o)²   −ln(p or 1 − p)   (price − o)²
    A       yes     0.80  0.70           0.0400     0.223144          0.09
    B       no      0.30  0.40           0.0900     0.356675          0.16
    C       yes     0.35  0.30           0.4225     1.049822          0.49
    D       no      0.85  0.80           0.7225     1.897120          0.64

Brier = 1.275 / 4 = 0.318750, market Brier = 1.38 / 4 = 0.345, skill = 1 − 0.31875 / 0.345
= 0.076087 (0.0760869…).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from unittest import mock

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.base import make_event, make_forecast, make_market
from trading import ledger
from trading.baseline import load_fit
from trading.ledger import (
    REVEAL_DELAY,
    SkillGate,
    cycle_skill_gate,
    evidence_modes,
    forecaster_skill,
    forecasts_score,
    skill_gate,
)
from trading.models import Forecast, RiskSettings

D = Decimal
SAMPLE = [  # result, probability, market price
    ("yes", "0.8", "0.70"),
    ("no", "0.3", "0.40"),
    ("yes", "0.35", "0.30"),
    ("no", "0.85", "0.80"),
]


def settled_market(result: str, **kw):
    """A market whose result is known: closed a day ago (revealed REVEAL_DELAY later)."""
    now = timezone.now()
    defaults = {
        "result": result,
        "status": "finalized",
        "open_time": now - timedelta(days=3),
        "close_time": now - timedelta(days=1),
    }
    defaults.update(kw)
    return make_market(**defaults)


def sample(forecaster: str = "llm", *, wrong: bool = False, **kw) -> list[Forecast]:
    """The four forecasts of the module docstring (``wrong``: 0.1 for a YES, 0.9 for a NO:
    Brier 0.81, far worse than the market's 0.345)."""
    rows = []
    for result, p, price in SAMPLE:
        probability = D(p) if not wrong else D("0.1") if result == "yes" else D("0.9")
        rows.append(
            make_forecast(
                settled_market(result),
                forecaster=forecaster,
                probability=probability,
                market_price=D(price),
                **kw,
            )
        )
    return rows


class ForecastsScoreTests(TestCase):
    def test_it_scores_against_hand_computed_values(self):
        forecasts = sample(model="m1", prompt_version="v1")
        now = timezone.now()
        self.assertEqual(forecasts_score(now=now), 4)
        got = {
            f.pk: (f.outcome, f.brier, f.log_loss, f.market_brier, f.scored_at)
            for f in Forecast.objects.all()
        }
        expected = [
            (1, D("0.040000"), D("0.223144"), D("0.090000")),
            (0, D("0.090000"), D("0.356675"), D("0.160000")),
            (1, D("0.422500"), D("1.049822"), D("0.490000")),
            (0, D("0.722500"), D("1.897120"), D("0.640000")),
        ]
        for forecast, row in zip(forecasts, expected, strict=True):
            self.assertEqual(got[forecast.pk][:4], row)
            self.assertEqual(got[forecast.pk][4], now)

    def test_log_loss_is_clipped_like_scoring(self):
        certain_and_wrong = make_forecast(settled_market("no"), probability=D("1"))
        certain_and_right = make_forecast(settled_market("yes"), probability=D("1"))
        forecasts_score()
        certain_and_wrong.refresh_from_db()
        certain_and_right.refresh_from_db()
        self.assertEqual(certain_and_wrong.log_loss, D("13.815511"))  # ln(10⁶)
        self.assertEqual(certain_and_wrong.brier, D("1"))
        self.assertEqual(certain_and_right.log_loss, D("0.000001"))

    def test_it_is_idempotent(self):
        sample()
        first = timezone.now() - timedelta(minutes=5)
        self.assertEqual(forecasts_score(now=first), 4)
        before = list(Forecast.objects.order_by("pk").values_list(*ledger.SCORE_FIELDS))
        self.assertEqual(forecasts_score(), 0)
        after = list(Forecast.objects.order_by("pk").values_list(*ledger.SCORE_FIELDS))
        self.assertEqual(before, after)  # scored_at included: nothing rewritten

    def test_a_later_settlement_scores_only_the_new_rows(self):
        sample()
        forecasts_score()
        late = make_forecast(settled_market("yes"), probability=D("0.6"), market_price=D("0.5"))
        self.assertEqual(forecasts_score(), 1)
        late.refresh_from_db()
        self.assertEqual((late.outcome, late.brier, late.market_brier), (1, D("0.16"), D("0.25")))

    def test_void_scalar_and_unsettled_markets_are_not_scored(self):
        void = make_forecast(settled_market("void"), probability=D("0.4"))
        scalar = make_forecast(settled_market("scalar"), probability=D("0.4"))
        open_ = make_forecast(make_market(), probability=D("0.4"))
        self.assertEqual(forecasts_score(), 0)
        for forecast in (void, scalar, open_):
            forecast.refresh_from_db()
            self.assertIsNone(forecast.outcome)
            self.assertIsNone(forecast.brier)
            self.assertIsNone(forecast.scored_at)

    def test_invalid_forecasts_are_not_scored(self):
        invalid = make_forecast(
            settled_market("yes"), valid=False, probability=None, confidence=None, error="NaN"
        )
        self.assertEqual(forecasts_score(), 0)
        invalid.refresh_from_db()
        self.assertIsNone(invalid.scored_at)

    def test_without_a_market_price_the_market_brier_stays_empty(self):
        forecast = make_forecast(settled_market("yes"), probability=D("0.9"), market_price=None)
        forecasts_score()
        forecast.refresh_from_db()
        self.assertEqual(forecast.brier, D("0.01"))
        self.assertIsNone(forecast.market_brier)

    def test_a_result_counts_only_once_revealed(self):
        close = timezone.now() - timedelta(days=1)
        forecast = make_forecast(
            settled_market("yes", close_time=close, settled_time=None), probability=D("0.7")
        )
        recorded = make_forecast(
            settled_market("no", close_time=close, settled_time=close + timedelta(hours=3)),
            probability=D("0.7"),
        )
        self.assertEqual(forecasts_score(now=close + REVEAL_DELAY - timedelta(seconds=1)), 0)
        self.assertEqual(forecasts_score(now=close + REVEAL_DELAY), 1)  # close + 1 h
        forecast.refresh_from_db()
        self.assertEqual(forecast.outcome, 1)
        self.assertEqual(forecasts_score(now=close + timedelta(hours=2, minutes=59)), 0)
        self.assertEqual(forecasts_score(now=close + timedelta(hours=3)), 1)  # settled_time
        recorded.refresh_from_db()
        self.assertEqual(recorded.outcome, 0)

    def test_mode_limits_scoring_to_one_book(self):
        paper = make_forecast(settled_market("yes"), mode="paper")
        replay = make_forecast(settled_market("yes"), mode="replay")
        self.assertEqual(forecasts_score(mode="replay"), 1)
        paper.refresh_from_db()
        replay.refresh_from_db()
        self.assertIsNone(paper.scored_at)
        self.assertIsNotNone(replay.scored_at)

    def test_it_scores_in_batches_and_misses_nothing(self):
        sample()
        make_forecast(settled_market("yes"), probability=D("0.5"))
        with mock.patch.object(ledger, "SCORE_BATCH", 2):
            self.assertEqual(forecasts_score(), 5)
        self.assertFalse(Forecast.objects.filter(scored_at__isnull=True).exists())

    def test_its_query_count_does_not_grow_with_rows(self):
        def queries_to_score(n: int) -> int:
            for index in range(n):
                make_forecast(settled_market("yes" if index % 2 else "no"))
            with CaptureQueriesContext(connection) as ctx:
                scored = forecasts_score()
            self.assertEqual(scored, n)
            return len(ctx.captured_queries)

        few = queries_to_score(3)
        many = queries_to_score(40)
        self.assertEqual(few, many)
        self.assertLessEqual(many, 3)  # one SELECT, one UPDATE (and a savepoint at most)


class ForecasterSkillTests(TestCase):
    def test_it_measures_skill_against_the_market(self):
        sample()
        forecasts_score()
        report = forecaster_skill(forecaster="llm", min_settled=4)
        self.assertEqual(report.n, 4)
        self.assertEqual(report.markets, 4)
        self.assertEqual(report.brier, D("0.318750"))
        self.assertEqual(report.market_brier, D("0.345000"))
        self.assertEqual(report.skill, D("0.076087"))
        self.assertTrue(report.has_skill)

    def test_unscored_and_unpriced_rows_do_not_count(self):
        sample()
        forecasts_score()
        make_forecast(make_market(), forecaster="llm")  # not settled
        make_forecast(settled_market("yes"), forecaster="llm", market_price=None)
        forecasts_score()
        self.assertEqual(forecaster_skill(forecaster="llm", min_settled=1).n, 4)

    def test_model_and_prompt_version_narrow_the_rows(self):
        sample(model="m1", prompt_version="v1")
        sample(model="m2", prompt_version="v1", wrong=True)
        forecasts_score()
        self.assertEqual(forecaster_skill(forecaster="llm", min_settled=1).n, 8)
        m1 = forecaster_skill(forecaster="llm", model="m1", min_settled=1)
        self.assertEqual((m1.n, m1.skill), (4, D("0.076087")))
        m2 = forecaster_skill(forecaster="llm", model="m2", prompt_version="v1", min_settled=1)
        self.assertEqual(m2.n, 4)
        self.assertLess(m2.skill, 0)
        self.assertEqual(
            forecaster_skill(forecaster="llm", prompt_version="v9", min_settled=1).n, 0
        )

    def test_no_data_is_no_skill(self):
        report = forecaster_skill(forecaster="llm", min_settled=1)
        self.assertEqual((report.n, report.skill, report.brier), (0, None, None))
        self.assertFalse(report.has_skill)

    def test_min_settled_zero_turns_the_gate_off(self):
        self.assertTrue(forecaster_skill(forecaster="llm", min_settled=0).has_skill)

    def test_as_of_sees_neither_later_forecasts_nor_later_results(self):
        close = timezone.now() - timedelta(days=2)
        market = settled_market("yes", close_time=close)
        make_forecast(
            market, forecaster="llm", probability=D("0.9"), created_at=close - timedelta(hours=5)
        )
        forecasts_score()
        before_reveal = close + REVEAL_DELAY - timedelta(minutes=1)
        self.assertEqual(
            forecaster_skill(forecaster="llm", min_settled=1, as_of=before_reveal).n, 0
        )
        self.assertEqual(
            forecaster_skill(forecaster="llm", min_settled=1, as_of=close + REVEAL_DELAY).n, 1
        )
        self.assertEqual(
            forecaster_skill(forecaster="llm", min_settled=1, as_of=close - timedelta(hours=6)).n,
            0,
        )

    def test_modes_limit_the_evidence(self):
        sample(mode="replay")
        sample(mode="paper", wrong=True)
        forecasts_score()
        self.assertGreater(
            forecaster_skill(forecaster="llm", min_settled=1, modes="replay").skill, 0
        )
        self.assertLess(forecaster_skill(forecaster="llm", min_settled=1, modes=["paper"]).skill, 0)
        self.assertEqual(
            forecaster_skill(forecaster="llm", min_settled=1, modes=("paper", "replay")).n, 8
        )

    def test_the_baselines_fit_events_are_not_evidence(self):
        fit_event = make_event(event_ticker=sorted(load_fit().fit_events)[0])
        make_forecast(
            settled_market("yes", event=fit_event), forecaster="baseline", probability=D("0.99")
        )
        make_forecast(settled_market("yes"), forecaster="baseline", probability=D("0.6"))
        forecasts_score()
        self.assertEqual(forecaster_skill(forecaster="baseline", min_settled=1).n, 1)
        everything = forecaster_skill(
            forecaster="baseline", min_settled=1, exclude_fit_events=False
        )
        self.assertEqual(everything.n, 2)


class SkillGateTests(TestCase):
    def test_below_min_settled_it_refuses(self):
        sample()
        forecasts_score()
        self.assertFalse(skill_gate(5)("llm"))

    def test_positive_skill_over_min_settled_passes(self):
        sample()
        forecasts_score()
        self.assertTrue(skill_gate(4)("llm"))

    def test_negative_skill_is_refused_however_many_rows(self):
        sample(wrong=True)
        sample(wrong=True)
        forecasts_score()
        report = forecaster_skill(forecaster="llm", min_settled=1)
        self.assertEqual((report.n, report.brier), (8, D("0.810000")))
        self.assertEqual(report.skill, D("-1.347826"))  # 1 − 0.81 / 0.345
        self.assertFalse(skill_gate(1)("llm"))

    def test_zero_skill_is_refused(self):
        for result, _, price in SAMPLE:  # a forecaster that repeats the market price
            make_forecast(
                settled_market(result),
                forecaster="llm",
                probability=D(price),
                market_price=D(price),
            )
        forecasts_score()
        self.assertEqual(forecaster_skill(forecaster="llm", min_settled=1).skill, D(0))
        self.assertFalse(skill_gate(1)("llm"))

    def test_the_market_forecaster_always_passes_without_a_query(self):
        gate = skill_gate(1000)
        with self.assertNumQueries(0):
            self.assertTrue(gate("market"))

    def test_baseline_and_llm_must_earn_it(self):
        gate = skill_gate(1)  # no data is no skill
        self.assertFalse(gate("baseline"))
        self.assertFalse(gate("llm"))
        # 0 is the operator's explicit "gate off".
        self.assertTrue(skill_gate(0)("baseline"))

    def test_one_query_per_forecaster_name_per_gate(self):
        sample()
        sample(forecaster="baseline", wrong=True)
        forecasts_score()
        gate = skill_gate(4)
        with self.assertNumQueries(2):
            for _ in range(10):  # ten markets in a cycle
                self.assertTrue(gate("llm"))
                self.assertFalse(gate("baseline"))
        assert isinstance(gate, SkillGate)
        self.assertEqual(gate.reports["llm"].skill, D("0.076087"))

    def test_a_new_gate_sees_new_evidence(self):
        gate = skill_gate(4)
        self.assertFalse(gate("llm"))
        sample()
        forecasts_score()
        self.assertFalse(gate("llm"))  # cached for the cycle
        self.assertTrue(skill_gate(4)("llm"))

    def test_the_gate_passes_as_of_and_modes_through(self):
        sample(mode="replay")
        forecasts_score()
        self.assertTrue(skill_gate(4, modes="replay")("llm"))
        self.assertFalse(skill_gate(4, modes="paper")("llm"))
        long_ago = timezone.now() - timedelta(days=30)
        self.assertFalse(skill_gate(4, as_of=long_ago)("llm"))


class CycleSkillGateTests(TestCase):
    def test_evidence_modes(self):
        self.assertEqual(evidence_modes("replay"), ("replay",))
        self.assertEqual(evidence_modes("paper"), ("paper", "live"))
        self.assertEqual(evidence_modes("live"), ("paper", "live"))

    def test_it_reads_min_settled_from_the_risk_settings(self):
        sample(mode="paper")
        forecasts_score()
        RiskSettings.objects.update_or_create(pk=1, defaults={"skill_min_settled": 4})
        now = timezone.now()
        self.assertTrue(cycle_skill_gate(mode="live", now=now)("llm"))  # paper evidence counts
        self.assertFalse(cycle_skill_gate(mode="replay", now=now)("llm"))  # but not in replay
        RiskSettings.objects.filter(pk=1).update(skill_min_settled=5)
        self.assertFalse(cycle_skill_gate(mode="paper", now=now)("llm"))

    def test_in_replay_it_knows_only_what_the_clock_has_reached(self):
        close = timezone.now() - timedelta(days=1)
        for result, p, price in SAMPLE:
            make_forecast(
                settled_market(result, close_time=close),
                forecaster="llm",
                mode="replay",
                probability=D(p),
                market_price=D(price),
                created_at=close - timedelta(hours=2),
            )
        forecasts_score(now=close + REVEAL_DELAY, mode="replay")
        RiskSettings.objects.update_or_create(pk=1, defaults={"skill_min_settled": 4})
        self.assertFalse(cycle_skill_gate(mode="replay", now=close)("llm"))
        self.assertTrue(cycle_skill_gate(mode="replay", now=close + REVEAL_DELAY)("llm"))
