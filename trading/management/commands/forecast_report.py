"""``manage.py forecast_report``: how every forecaster has done on settled markets.

    manage.py forecast_report [--mode replay|paper|live] [--since YYYY-MM-DD] [--score]
                              [--include-fit-events] [--json FILE]

Reads the forecast ledger (``trading.ledger.forecast_report``): per forecaster, model, prompt
version and category, and overall per forecaster, the count, Brier, log loss, ECE and 10-bin
reliability table of the forecaster and of the market price at forecast time (on the same
rows), the Brier skill against the market and against the group's base rate; then what the
skill gate decides for each forecaster (``RiskSettings.skill_min_settled``).

``--score`` first scores the forecasts settled so far (``forecasts_score``: as of the replay
clock with ``--mode replay``, else as of now). Forecasts on the events a forecaster was fitted
on (the baseline's ``fit_events``) are left out unless ``--include-fit-events``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from config.params import MAX_YEAR, MIN_YEAR
from trading.ledger import (
    ReportGroup,
    fit_rows_left_out,
    forecast_report,
    forecasts_score,
    skill_reports,
)
from trading.management.commands.evaluate_forecaster import _n
from trading.models import Mode, RiskSettings

ALL = "*"


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        parsed.astimezone(UTC)  # the database compares in UTC
    except (ValueError, OverflowError):
        raise CommandError(f"--since {value!r} is not an ISO date or timestamp") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise CommandError(f"--since {value!r} is not between {MIN_YEAR} and {MAX_YEAR}")
    return parsed


def _label(value: str | None) -> str:
    if value is None:
        return ALL
    return value or "(none)"


class Command(BaseCommand):
    help = (
        "Score report of every forecaster on settled markets against the market price: "
        "Brier, log loss, ECE, reliability and Brier skill, per model, prompt and category."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--mode", choices=Mode.values, default=None, help="one book only")
        parser.add_argument(
            "--since", type=_since, default=None, help="forecasts made at or after this time"
        )
        parser.add_argument(
            "--score", action="store_true", help="score newly settled forecasts first"
        )
        parser.add_argument(
            "--include-fit-events",
            action="store_true",
            help="also count forecasts on the events a forecaster was fitted on",
        )
        parser.add_argument("--json", type=Path, default=None, help="also write the report here")

    def handle(self, *args: Any, **options: Any) -> None:
        mode, since = options["mode"], options["since"]
        exclude = not options["include_fit_events"]
        if options["score"]:
            now = timezone.now()
            if mode == Mode.REPLAY:
                from trading.exchanges import replay_clock

                now = replay_clock()
            scored = forecasts_score(now=now, mode=mode)
            self.stdout.write(
                f"Scored {scored} newly settled forecast(s) as of {now:%Y-%m-%d %H:%M}."
            )
        groups = forecast_report(mode=mode, since=since, exclude_fit_events=exclude)
        left_out = fit_rows_left_out(mode=mode, since=since) if exclude else {}
        min_settled = RiskSettings.load().skill_min_settled
        names = {g.forecaster for g in groups}
        skills = skill_reports(names, min_settled=min_settled, modes=mode)
        self._print(groups, skills, left_out, mode=mode, since=since)
        if options["json"] is not None:
            document = {
                "mode": mode,
                "since": since.isoformat() if since else None,
                "fit_events_left_out": left_out,
                "groups": [g.as_dict() for g in groups],
                "skill_gate": {
                    name: {**report.as_dict(), "gate": name == "market" or report.has_skill}
                    for name, report in skills.items()
                },
            }
            options["json"].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            self.stdout.write(f"Wrote {options['json']}")

    def _print(
        self,
        groups: list[ReportGroup],
        skills: dict[str, Any],
        left_out: dict[str, int],
        *,
        mode: str | None,
        since: datetime | None,
    ) -> None:
        w = self.stdout.write
        w(f"Forecast ledger — mode: {mode or 'all'}, since: {since or 'the start'}")
        for name, count in left_out.items():
            w(f"  left out: {count} {name} forecast(s) on the events its fit used")
        if not groups:
            w("No scored forecast yet (markets must settle yes/no; run with --score).")
            return
        header = (
            f"{'forecaster':<12} {'model':<16} {'prompt':<10} {'category':<14} {'n':>6} "
            f"{'Brier F':>9} {'Brier M':>9} {'LogL F':>9} {'LogL M':>9} {'ECE F':>9} "
            f"{'ECE M':>9} {'skill M':>10} {'skill BR':>10}"
        )
        w("")
        w("F = forecaster, M = market price at forecast time (same rows); skill M = 1 − Brier F "
          "/ Brier M (> 0: F beats the market); skill BR = vs the group's own base rate; "
          f"{ALL} = all")  # fmt: skip
        w(header)
        w("-" * len(header))
        for g in groups:
            w(
                f"{g.forecaster[:12]:<12} {_label(g.model)[:16]:<16} "
                f"{_label(g.prompt_version)[:10]:<10} {_label(g.category)[:14]:<14} {g.n:>6} "
                f"{_n(g.brier):>9} {_n(g.market_brier):>9} {_n(g.log_loss):>9} "
                f"{_n(g.market_log_loss):>9} {_n(g.ece):>9} {_n(g.market_ece):>9} "
                f"{_n(g.skill_vs_market):>10} {_n(g.skill_vs_base_rate):>10}"
            )
        for g in groups:
            w("")
            w(
                f"Reliability — {g.forecaster} / {_label(g.model)} / {_label(g.prompt_version)} "
                f"/ {_label(g.category)} (n = {g.n}; base rate {g.base_rate}, its Brier "
                f"{g.base_rate_brier}): bin, n, mean F → observed | mean M (n) → observed"
            )
            market_bins = g.market_reliability or [None] * len(g.reliability)
            for fb, mb in zip(g.reliability, market_bins, strict=True):
                if not fb.count and not (mb and mb.count):
                    continue
                market = (
                    f"{_n(mb.mean_forecast):>8} ({mb.count:>5}) → {_n(mb.observed_rate):>8}"
                    if mb is not None
                    else "—"
                )
                w(
                    f"  [{fb.lower:.1f}, {fb.upper:.1f}{']' if fb.upper == 1 else ')'} "
                    f"{fb.count:>6}  {_n(fb.mean_forecast):>8} → {_n(fb.observed_rate):>8} | "
                    f"{market}"
                )
        w("")
        w("Skill against the market (what the gate decides now):")
        for g in groups:
            if not g.is_overall:
                continue
            report = skills.get(g.forecaster)
            if g.forecaster == "market":
                verdict = "may trade (it is the market price: always passes)"
            elif report is not None and report.has_skill:
                verdict = "may trade (positive skill)"
            else:
                verdict = "may forecast, may not trade directionally (no proven skill)"
            w(
                f"  {g.forecaster}: Brier {_n(g.brier_on_market_rows)} vs market "
                f"{_n(g.market_brier)} on {g.n_market} forecasts → skill {_n(g.skill_vs_market)}"
                f"; gate ({report.n if report else 0} settled, needs "
                f"{report.min_settled if report else '—'}): {verdict}"
            )
