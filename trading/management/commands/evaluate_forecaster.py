"""``manage.py evaluate_forecaster``: score a forecaster on resolved Kalshi questions.

    manage.py evaluate_forecaster [--data DIR] [--forecaster baseline|market|llm] [--limit N]
                                  [--json FILE] [--no-progress]
    manage.py evaluate_forecaster --fit-baseline [--recorded DIR] [--json FILE]

``--data`` is a folder in the kalshi-questions format (read as it is, see
``trading.evaluation``); the default is the copy shipped in ``trading/data/kalshi-questions``.
Only rows with a real pre-close price are scored, the result is never shown to the forecaster,
and a forecaster is never scored on the events it was fitted on. The report gives count, Brier,
log loss, ECE and the 10-bin reliability table for the forecaster and for the market price,
overall and per category, and the Brier skill of the forecaster against the market.

``--fit-baseline`` refits the baseline's coefficients on the recorded markets (default
``RECORDED_DATA_DIR``) and prints the fit; with ``--json`` it writes the document that ships
as ``trading/data/baseline_fit.json``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from trading.evaluation import Evaluation, QuestionDataError, evaluate, read_questions
from trading.forecasters import Forecaster, MarketPriceForecaster

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "kalshi-questions"
FORECASTERS = ("baseline", "market", "llm")


def _forecaster(name: str) -> Forecaster:
    if name == "market":
        return MarketPriceForecaster()
    if name == "baseline":
        from trading.baseline import BaselineForecaster

        return BaselineForecaster()
    # llm: only once trading.llm provides an LLMForecaster (and its settings are in place).
    try:
        module = importlib.import_module("trading.llm")
    except ImportError:
        module = None
    if module is None or not hasattr(module, "LLMForecaster"):
        raise CommandError(
            "The LLM forecaster is not configured: trading.llm.LLMForecaster does not exist "
            "in this installation. Use --forecaster baseline or --forecaster market."
        )
    try:
        factory = getattr(module, "llm_forecaster", None)
        return factory() if callable(factory) else module.LLMForecaster()
    except Exception as exc:  # noqa: BLE001 - a missing key or provider is a usage error here
        raise CommandError(f"The LLM forecaster is not configured: {exc}") from exc


def _n(value: Any) -> str:
    return "—" if value is None else str(value)


class Command(BaseCommand):
    help = (
        "Score a forecaster (baseline, market or llm) against the market price on a folder of "
        "resolved Kalshi questions: Brier, log loss, ECE, reliability, overall and per category."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            type=Path,
            default=DEFAULT_DATA,
            help=f"folder in the kalshi-questions format (default: {DEFAULT_DATA})",
        )
        parser.add_argument("--forecaster", choices=FORECASTERS, default="baseline")
        parser.add_argument("--limit", type=int, default=None, help="score at most N questions")
        parser.add_argument("--json", type=Path, default=None, help="also write the report here")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--fit-baseline",
            action="store_true",
            help="refit the baseline on the recorded markets instead of evaluating",
        )
        parser.add_argument(
            "--recorded",
            type=Path,
            default=None,
            help="recorded markets for --fit-baseline (default: RECORDED_DATA_DIR)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["fit_baseline"]:
            self._fit(options)
            return
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        forecaster = _forecaster(options["forecaster"])
        try:
            questions = read_questions(options["data"])
        except QuestionDataError as exc:
            raise CommandError(str(exc)) from exc
        for note in questions.notes:
            self.stderr.write(f"note: {note}")
        result = evaluate(
            forecaster,
            questions,
            limit=options["limit"],
            progress=not options["no_progress"],
        )
        report = result.as_json()
        try:
            report["data"] = options["data"].resolve().relative_to(settings.BASE_DIR).as_posix()
        except ValueError:
            report["data"] = str(options["data"])
        report["files"] = [
            {"path": f.path, "format": f.format, "rows": f.rows, "usable": f.usable,
             "skipped": dict(sorted(f.skipped.items()))}
            for f in questions.files
        ]  # fmt: skip
        self._print(result, report)
        if options["json"] is not None:
            options["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"Wrote {options['json']}")

    def _fit(self, options: dict[str, Any]) -> None:
        from markets.recorded import RecordedDataError
        from trading.baseline import fit_baseline, recorded_fit_samples

        data_dir = Path(options["recorded"] or settings.RECORDED_DATA_DIR)
        try:
            samples = recorded_fit_samples(data_dir=data_dir)
        except RecordedDataError as exc:
            raise CommandError(str(exc)) from exc
        if not samples:
            raise CommandError(f"{data_dir}: no settled market with a price to fit on")
        try:
            note = data_dir.resolve().relative_to(settings.BASE_DIR).as_posix()
        except ValueError:
            note = data_dir.name
        document = fit_baseline(samples, data_note=note)
        shown = {k: v for k, v in document.items() if not k.endswith("_events")}
        self.stdout.write(json.dumps(shown, indent=2))
        if options["json"] is not None:
            options["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"Wrote {options['json']}")

    def _print(self, result: Evaluation, report: dict[str, Any]) -> None:
        w = self.stdout.write
        w(f"Forecaster: {result.forecaster}    data: {report['data']}")
        for f in report["files"]:
            skipped = ", ".join(f"{k}: {v}" for k, v in f["skipped"].items()) or "none"
            w(f"  {f['path']}: {f['rows']} rows, {f['usable']} with a pre-close price "
              f"(skipped {skipped})")  # fmt: skip
        w(
            f"Questions: {result.usable} usable, {result.excluded_fit_events} left out (fit "
            f"events), {result.asked} asked, {len(result.scored)} scored, "
            f"{sum(result.invalid.values())} invalid"
        )
        if result.stopped:
            w(f"Stopped early: {result.stopped}.")
        for error, count in result.invalid.most_common(5):
            w(f"  invalid x{count}: {error}")
        if not result.scored:
            w("No question could be scored.")
            return
        header = (
            f"{'category':<24} {'n':>5} {'Brier F':>9} {'Brier M':>9} {'LogL F':>9} "
            f"{'LogL M':>9} {'ECE F':>9} {'ECE M':>9} {'skill':>10}"
        )
        w("")
        w("F = forecaster, M = market price; skill = 1 − Brier F / Brier M (> 0: F is better)")
        w(header)
        w("-" * len(header))
        groups = [("ALL", result.overall()), *result.by_category().items()]
        for name, group in groups:
            f, m = group["forecaster"], group["market"]
            w(
                f"{name[:24]:<24} {group['n']:>5} {_n(f['brier']):>9} {_n(m['brier']):>9} "
                f"{_n(f['log_loss']):>9} {_n(m['log_loss']):>9} {_n(f['ece']):>9} "
                f"{_n(m['ece']):>9} {_n(group['skill']):>10}"
            )
        w("")
        w(f"Base rate {report['base_rate']} (Brier {report['brier_base_rate']}); "
          f"forecaster's skill vs the base rate {report['brier_skill_vs_base_rate']}")  # fmt: skip
        for name, group in groups:
            w("")
            w(f"Reliability — {name} (n = {group['n']}): bin, n, mean F → observed | "
              "mean M (n) → observed")  # fmt: skip
            f_bins, m_bins = group["forecaster"]["reliability"], group["market"]["reliability"]
            for fb, mb in zip(f_bins, m_bins, strict=True):
                if not fb.count and not mb.count:
                    continue
                w(
                    f"  [{fb.lower:.1f}, {fb.upper:.1f}{']' if fb.upper == 1 else ')'} "
                    f"{fb.count:>5}  {_n(fb.mean_forecast):>8} → {_n(fb.observed_rate):>8} | "
                    f"{_n(mb.mean_forecast):>8} ({mb.count:>4}) → {_n(mb.observed_rate):>8}"
                )
