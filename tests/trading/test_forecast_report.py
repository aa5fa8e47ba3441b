"""``forecast_report`` (the service) and ``manage.py forecast_report`` on hand-computed data.

The sample (forecaster ``llm``, model ``m1``, prompt ``v1``), as in test_ledger:

    market  category  result  p     market price
    A       Weather   yes     0.80  0.70
    B       Weather   no      0.30  0.40
    C       Crypto    yes     0.35  0.30
    D       Crypto    no      0.85  0.80

Overall: Brier (0.04 + 0.09 + 0.4225 + 0.7225) / 4 = 0.31875; market (0.09 + 0.16 + 0.49 +
0.64) / 4 = 0.345; skill vs market 1 − 0.31875 / 0.345 = 0.076087; log loss (0.223144 +
0.356675 + 1.049822 + 1.897120) / 4 = 0.881690; market log loss (−ln 0.7 − ln 0.6 − ln 0.3 −
ln 0.2) / 4 = 0.920228. Bins: [0.3, 0.4) holds 0.30 (no) and 0.35 (yes): mean 0.325, observed
0.5, |0.65 − 1| = 0.35; [0.8, 0.9) holds 0.80 (yes) and 0.85 (no): mean 0.825, observed 0.5,
|1.65 − 1| = 0.65; ECE = (0.35 + 0.65) / 4 = 0.25. The market's four prices fall in four bins:
ECE = (0.3 + 0.4 + 0.7 + 0.8) / 4 = 0.55. Base rate 0.5, its Brier 0.25, skill vs base rate
1 − 0.31875 / 0.25 = −0.275.
Weather: Brier 0.065, market 0.125, skill 0.48. Crypto: Brier 0.5725, market 0.565, skill
1 − 0.5725 / 0.565 = −0.013274.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import TestCase
from django.utils import timezone

from tests.base import make_event, make_forecast, make_market
from trading.baseline import load_fit
from trading.ledger import fit_rows_left_out, forecast_report, forecasts_score
from trading.models import RiskSettings, TradingState

D = Decimal
SAMPLE = [  # category, result, probability, market price
    ("Weather", "yes", "0.8", "0.70"),
    ("Weather", "no", "0.3", "0.40"),
    ("Crypto", "yes", "0.35", "0.30"),
    ("Crypto", "no", "0.85", "0.80"),
]


def settled_market(result: str, **kw):
    now = timezone.now()
    defaults = {
        "result": result,
        "status": "finalized",
        "open_time": now - timedelta(days=3),
        "close_time": now - timedelta(days=1),
    }
    defaults.update(kw)
    return make_market(**defaults)


def make_sample(forecaster: str = "llm", **kw) -> None:
    for category, result, p, price in SAMPLE:
        make_forecast(
            settled_market(result, category=category),
            forecaster=forecaster,
            model="m1",
            prompt_version="v1",
            probability=D(p),
            market_price=D(price),
            **kw,
        )


def by_key(groups):
    return {(g.forecaster, g.model, g.prompt_version, g.category): g for g in groups}


class ForecastReportTests(TestCase):
    def test_the_overall_row_matches_hand_computed_values(self):
        make_sample()
        forecasts_score()
        overall = by_key(forecast_report())[("llm", None, None, None)]
        self.assertTrue(overall.is_overall)
        self.assertEqual(overall.n, 4)
        self.assertEqual(overall.brier, D("0.318750"))
        self.assertEqual(overall.log_loss, D("0.881690"))
        self.assertEqual(overall.ece, D("0.250000"))
        self.assertEqual(overall.market_brier, D("0.345000"))
        self.assertEqual(overall.market_log_loss, D("0.920228"))
        self.assertEqual(overall.market_ece, D("0.550000"))
        self.assertEqual(overall.skill_vs_market, D("0.076087"))
        self.assertEqual(overall.base_rate, D("0.500000"))
        self.assertEqual(overall.base_rate_brier, D("0.250000"))
        self.assertEqual(overall.skill_vs_base_rate, D("-0.275000"))

    def test_the_reliability_table_has_ten_bins(self):
        make_sample()
        forecasts_score()
        overall = by_key(forecast_report())[("llm", None, None, None)]
        self.assertEqual(len(overall.reliability), 10)
        filled = {
            str(b.lower): (b.count, b.mean_forecast, b.observed_rate)
            for b in overall.reliability
            if b.count
        }
        self.assertEqual(
            filled,
            {
                "0.3": (2, D("0.325000"), D("0.500000")),
                "0.8": (2, D("0.825000"), D("0.500000")),
            },
        )
        market_counts = [b.count for b in overall.market_reliability]
        self.assertEqual(market_counts, [0, 0, 0, 1, 1, 0, 0, 1, 1, 0])

    def test_groups_by_model_prompt_and_category(self):
        make_sample()
        forecasts_score()
        groups = by_key(forecast_report())
        weather = groups[("llm", "m1", "v1", "Weather")]
        crypto = groups[("llm", "m1", "v1", "Crypto")]
        self.assertEqual(
            (weather.n, weather.brier, weather.market_brier), (2, D("0.065"), D("0.125"))
        )
        self.assertEqual(weather.skill_vs_market, D("0.480000"))
        self.assertEqual(
            (crypto.n, crypto.brier, crypto.market_brier), (2, D("0.5725"), D("0.565"))
        )
        self.assertEqual(crypto.skill_vs_market, D("-0.013274"))
        # Both outcomes in each category: the base rate is 0.5 there too.
        self.assertEqual(weather.base_rate, D("0.5"))

    def test_each_forecaster_comes_first_with_its_overall_row(self):
        make_sample()
        make_sample(forecaster="baseline")
        forecasts_score()
        keys = [(g.forecaster, g.category) for g in forecast_report()]
        self.assertEqual(
            keys,
            [
                ("baseline", None),
                ("baseline", "Crypto"),
                ("baseline", "Weather"),
                ("llm", None),
                ("llm", "Crypto"),
                ("llm", "Weather"),
            ],
        )

    def test_the_market_comparison_uses_only_rows_with_a_price(self):
        make_sample()
        make_forecast(
            settled_market("yes", category="Weather"),
            forecaster="llm",
            model="m1",
            prompt_version="v1",
            probability=D("0.9"),
            market_price=None,
        )
        forecasts_score()
        overall = by_key(forecast_report())[("llm", None, None, None)]
        self.assertEqual((overall.n, overall.n_market), (5, 4))
        self.assertEqual(overall.brier, D("0.257000"))  # (1.275 + 0.01) / 5
        self.assertEqual(overall.brier_on_market_rows, D("0.318750"))
        self.assertEqual(overall.skill_vs_market, D("0.076087"))

    def test_void_unscored_and_invalid_forecasts_are_left_out(self):
        make_sample()
        make_forecast(settled_market("void"), forecaster="llm", probability=D("0.5"))
        make_forecast(make_market(), forecaster="llm", probability=D("0.5"))
        make_forecast(
            settled_market("yes"), forecaster="llm", valid=False, probability=None, confidence=None
        )
        forecasts_score()
        groups = forecast_report()
        self.assertEqual(sum(g.n for g in groups if g.is_overall), 4)

    def test_an_all_yes_group_has_no_base_rate_skill(self):
        make_forecast(settled_market("yes"), forecaster="llm", probability=D("0.7"))
        forecasts_score()
        (overall, _) = forecast_report()
        self.assertEqual((overall.base_rate, overall.base_rate_brier), (D("1"), D("0")))
        self.assertIsNone(overall.skill_vs_base_rate)

    def test_mode_and_since_filter_the_rows(self):
        make_sample(mode="replay")
        old = timezone.now() - timedelta(days=10)
        make_sample(forecaster="baseline", mode="paper", created_at=old)
        forecasts_score()
        self.assertEqual({g.forecaster for g in forecast_report(mode="replay")}, {"llm"})
        self.assertEqual({g.forecaster for g in forecast_report(mode="paper")}, {"baseline"})
        recent = forecast_report(since=timezone.now() - timedelta(days=1))
        self.assertEqual({g.forecaster for g in recent}, {"llm"})

    def test_the_baselines_fit_events_are_left_out_unless_asked(self):
        fit_event = make_event(event_ticker=sorted(load_fit().fit_events)[0])
        make_forecast(settled_market("yes", event=fit_event), forecaster="baseline")
        make_forecast(settled_market("yes"), forecaster="baseline")
        forecasts_score()
        overall = by_key(forecast_report())[("baseline", None, None, None)]
        self.assertEqual(overall.n, 1)
        everything = by_key(forecast_report(exclude_fit_events=False))
        self.assertEqual(everything[("baseline", None, None, None)].n, 2)
        self.assertEqual(fit_rows_left_out(), {"baseline": 1})

    def test_it_reads_the_rows_in_one_query(self):
        make_sample()
        make_sample(forecaster="baseline")
        forecasts_score()
        with self.assertNumQueries(1):
            groups = forecast_report()
        self.assertEqual(len(groups), 6)


class ForecastReportCommandTests(TestCase):
    def run_command(self, *args: str) -> str:
        out = StringIO()
        call_command("forecast_report", *args, stdout=out)
        return out.getvalue()

    def test_it_prints_the_tables_and_the_skill_against_the_market(self):
        make_sample()
        forecasts_score()
        RiskSettings.objects.update_or_create(pk=1, defaults={"skill_min_settled": 4})
        output = self.run_command()
        overall_line = next(line for line in output.splitlines() if line.startswith("llm  "))
        for figure in ("0.318750", "0.345000", "0.881690", "0.920228", "0.250000", "0.550000",
                       "0.076087", "-0.275000"):  # fmt: skip
            self.assertIn(figure, overall_line)
        self.assertIn("Reliability — llm / * / * / *", output)
        self.assertIn(
            "[0.3, 0.4)      2  0.325000 → 0.500000 | 0.300000 (    1) → 1.000000", output
        )
        self.assertIn(
            "llm: Brier 0.318750 vs market 0.345000 on 4 forecasts → skill 0.076087; "
            "gate (4 settled, needs 4): may trade (positive skill)",
            output,
        )

    def test_a_forecaster_below_the_minimum_may_not_trade(self):
        make_sample()
        forecasts_score()
        output = self.run_command()  # skill_min_settled defaults to 50
        self.assertIn("gate (4 settled, needs 50): may forecast, may not trade", output)

    def test_the_market_forecaster_is_shown_as_passing(self):
        make_sample(forecaster="market")
        forecasts_score()
        self.assertIn("it is the market price: always passes", self.run_command())

    def test_it_writes_the_json_report(self):
        make_sample()
        forecasts_score()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "report.json"
            self.run_command("--json", str(path))
            document = json.loads(path.read_text(encoding="utf-8"))
        overall = document["groups"][0]
        self.assertEqual((overall["forecaster"], overall["model"], overall["n"]), ("llm", None, 4))
        self.assertEqual(overall["brier"], "0.318750")
        self.assertEqual(overall["market_brier"], "0.345000")
        self.assertEqual(overall["skill_vs_market"], "0.076087")
        self.assertEqual(len(overall["reliability"]), 10)
        self.assertEqual(document["skill_gate"]["llm"]["skill"], "0.076087")
        self.assertFalse(document["skill_gate"]["llm"]["gate"])

    def test_score_scores_first_and_mode_filters(self):
        make_sample(mode="paper")
        output = self.run_command("--mode", "paper", "--score")
        self.assertIn("Scored 4 newly settled forecast(s)", output)
        self.assertIn("0.318750", output)
        self.assertIn("No scored forecast yet", self.run_command("--mode", "live"))

    def test_score_in_replay_uses_the_replay_clock(self):
        make_sample(mode="replay")  # markets closed a day ago
        state = TradingState.load()
        state.replay_clock = timezone.now() - timedelta(days=2)
        state.save()
        self.assertIn("Scored 0 newly", self.run_command("--mode", "replay", "--score"))
        state.replay_clock = timezone.now()
        state.save()
        self.assertIn("Scored 4 newly", self.run_command("--mode", "replay", "--score"))

    def test_since_must_be_a_date(self):
        with self.assertRaises(CommandError):
            self.run_command("--since", "yesterday")
        make_sample()
        forecasts_score()
        self.assertIn("No scored forecast yet", self.run_command("--since", "2999-01-01"))

    def test_fit_events_left_out_are_reported(self):
        fit_event = make_event(event_ticker=sorted(load_fit().fit_events)[0])
        make_forecast(settled_market("yes", event=fit_event), forecaster="baseline")
        forecasts_score()
        self.assertIn("left out: 1 baseline forecast(s)", self.run_command())
        self.assertIn("baseline  ", self.run_command("--include-fit-events"))
