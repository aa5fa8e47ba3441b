"""Backtest the engine over recorded Kalshi data and store the run."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from config.params import MAX_YEAR, MIN_YEAR
from markets.recorded import RecordedDataError, recorded_data_parse
from trading import backtest, strategy
from trading.forecasters import forecaster_for
from trading.models import BacktestRun, RiskSettings

MAX_STEP_MINUTES = 7 * 24 * 60  # a week per cycle
MAX_CASH = Decimal(10) ** 9  # a billion dollars: far more than any desk, inside a money column
CENT = Decimal("0.01")
# RiskLimits fields that are not columns of RiskSettings: fractions, checked here.
_FRACTION_LIMITS = ("high_confidence", "medium_confidence")


def _moment(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value) or parse_datetime(f"{value}T00:00:00+00:00")
        if parsed is not None and parsed.tzinfo is not None:
            parsed.astimezone(UTC)  # compared in UTC
    except (ValueError, OverflowError):  # well-formed but not a real date or time
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"{option}: {value!r} is not an ISO date or time with a time zone")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise CommandError(f"{option}: {value!r} is not between {MIN_YEAR} and {MAX_YEAR}")
    return parsed


def _cash(value: str) -> Decimal:
    """--cash: a finite, positive dollar amount in whole cents."""
    try:
        cash = Decimal(value)
    except InvalidOperation:
        cash = None
    if cash is None or not cash.is_finite() or not 0 < cash <= MAX_CASH:
        raise CommandError(f"--cash: {value!r} is not a dollar amount above 0 and up to {MAX_CASH}")
    if cash != cash.quantize(CENT):
        raise CommandError(f"--cash: {value!r} has fractions of a cent")
    return cash


def _overrides(pairs: list[str]) -> strategy.RiskLimits:
    """The limits in force with the ``--set NAME=VALUE`` what-ifs applied, each checked with the
    validators ``set_risk``, the admin and the dashboard use (``RiskSettings.full_clean``)."""
    known = {f.name for f in fields(strategy.RiskLimits)}
    row = RiskSettings.load()  # changed in memory only: a what-if is never saved
    extra: dict[str, Decimal] = {}
    for pair in pairs:
        name, sep, raw = (part.strip() for part in pair.partition("="))
        if name not in known or not sep or not raw:
            raise CommandError(
                f"--set {pair!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}"
            )
        if name in _FRACTION_LIMITS:
            try:
                value = Decimal(raw)
            except InvalidOperation:
                value = None
            if value is None or not value.is_finite() or not 0 <= value <= 1:
                raise CommandError(f"--set {pair!r}: {name} is a fraction from 0 to 1")
            extra[name] = value
            continue
        field = RiskSettings._meta.get_field(name)
        try:
            setattr(row, name, field.to_python(raw))
        except ValidationError as exc:
            raise CommandError(f"--set {pair!r}: {'; '.join(exc.messages)}") from None
    try:
        row.full_clean(validate_unique=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{name}: {' '.join(messages)}" if name != NON_FIELD_ERRORS else " ".join(messages)
            for name, messages in exc.message_dict.items()
        )
        raise CommandError(f"--set: {problems}") from None
    return replace(strategy.RiskLimits.from_object(row), **extra)


class Command(BaseCommand):
    help = "Replay the engine over recorded markets and report trades, P&L, scores and funnel."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data", default=str(settings.RECORDED_DATA_DIR))
        parser.add_argument(
            "--forecaster",
            default="baseline",
            help="baseline, market, llm, or a dotted Forecaster class path",
        )
        parser.add_argument("--from", dest="start", default=None, help="ISO time (UTC offset)")
        parser.add_argument("--to", dest="end", default=None, help="ISO time (UTC offset)")
        parser.add_argument("--json", dest="json_path", default=None)
        parser.add_argument("--step", type=int, default=5, help="minutes per cycle")
        parser.add_argument("--cash", default="1000.00", help="starting cash in dollars")
        parser.add_argument(
            "--set",
            dest="sets",
            action="append",
            default=[],
            help="risk limit override NAME=VALUE (repeatable): a what-if",
        )
        parser.add_argument(
            "--reuse",
            type=int,
            default=None,
            help="replay the forecasts of stored run N (no model calls)",
        )
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--no-store", action="store_true", help="do not store the run")

    def handle(self, *args, **o) -> str:
        # Every argument is checked before anything runs or is stored.
        limits = _overrides(o["sets"])
        cash = _cash(o["cash"])
        if not 1 <= o["step"] <= MAX_STEP_MINUTES:
            raise CommandError(f"--step: {o['step']} is not from 1 to {MAX_STEP_MINUTES} minutes")
        start, end = _moment(o["start"], "--from"), _moment(o["end"], "--to")
        if start and end and start >= end:
            raise CommandError(f"--from {o['start']} is not before --to {o['end']}")
        source = None
        if o["reuse"] is not None:
            source = BacktestRun.objects.filter(pk=o["reuse"]).first()
            if source is None:
                raise CommandError(f"--reuse: there is no stored backtest #{o['reuse']}")
            answers = {tuple(k.split("|", 1)): tuple(v) for k, v in source.answers.items()}
            forecaster = backtest.RecordedAnswers(source.forecaster, answers)
        else:
            try:
                forecaster = forecaster_for(o["forecaster"])
            except (ValueError, ImportError) as exc:
                raise CommandError(str(exc)) from None
        params = backtest.BacktestParams(
            forecaster=getattr(forecaster, "name", o["forecaster"]),
            start=start,
            end=end,
            step=backtest.DEFAULT_STEP * o["step"] / 5,
            starting_cash=cash,
            limits=limits,
        )
        data_dir = Path(o["data"])
        try:
            data = recorded_data_parse(data_dir=data_dir, progress=not o["no_progress"])
        except RecordedDataError as exc:
            raise CommandError(str(exc)) from None
        book = backtest.RecordedBook(data)
        total = None
        if book.start and book.end:
            total = int((book.end - book.start) / params.step)
        with tqdm(
            total=total,
            desc="replaying",
            unit="step",
            disable=o["no_progress"] or None,
            file=self.stderr,
        ) as bar:
            result = backtest.Backtest(
                book, forecaster, params, on_step=lambda _now: bar.update()
            ).run()
        report = result.report()
        if not o["no_store"]:
            answers = {
                f"{t}|{at}": list(v)
                for (t, at), v in backtest.recorded_answers(result.decisions).items()
            }
            run = BacktestRun.objects.create(
                forecaster=params.forecaster,
                data_dir=str(data_dir),
                reused_from=source,
                params={
                    "from": o["start"],
                    "to": o["end"],
                    "step_minutes": o["step"],
                    "cash": str(cash),
                    "overrides": o["sets"],
                },
                report=report,
                answers=answers,
                elapsed_ms=int(result.elapsed_s * 1000),
            )
            report_id = f"Stored as backtest #{run.pk}."
        else:
            report_id = ""
        if o["json_path"]:
            Path(o["json_path"]).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return _text(report) + ("\n" + report_id if report_id else "")


def _text(r: dict) -> str:
    lines = [
        f"Backtest {r['data_from']} → {r['data_to']} with forecaster {r['forecaster']}",
        f"  steps {r['steps']}, market-steps {r['market_steps']}, decisions {r['decisions']}",
        f"  trades {r['trades']}, fills {r['fills']}, fees ${r['fees']} "
        f"(taker ${r['fees_by_type']['taker']}, maker ${r['fees_by_type']['maker']})",
        f"  orders {r['orders'].get('placed', 0)} (rejected {r['orders'].get('rejected', 0)}, "
        f"canceled {r['orders'].get('canceled', 0)}, resting at the end "
        f"{r['orders'].get('resting_at_end', 0)}); fill rate {r['fill_rate']} "
        f"({r['contracts_filled']} of {r['contracts_ordered']} contracts), "
        f"maker share {r['maker_share']}",
        f"  P&L after fees ${r['pnl_after_fees']} (equity ${r['final_equity']} from "
        f"${r['starting_cash']}), max drawdown {r['max_drawdown']}, "
        f"max exposure {r['max_exposure']}",
        f"  positions closed {r['closed_positions']} (win rate {r['win_rate']}), "
        f"still open {r['open_positions']}, settlements {r['settlements']}",
        f"  Brier: forecaster {r['brier_forecaster']} vs market {r['brier_market']} "
        f"over {r['scored_forecasts']} scored forecasts",
        "  Funnel: " + ", ".join(f"{k}={v}" for k, v in r["funnel"].items()),
    ]
    if r["calibration"]:
        lines.append("  Calibration (bin: n, mean forecast, observed):")
        for row in r["calibration"]:
            if row.get("count"):
                lines.append(
                    f"    {row.get('lower', '')}-{row.get('upper', '')}: {row['count']}, "
                    f"{row.get('mean_forecast')}, {row.get('observed_rate')}"
                )
    lines.append(f"  elapsed {r['elapsed_s']} s")
    return "\n".join(lines)
