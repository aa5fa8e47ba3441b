"""The forecast ledger: score forecasts on settled markets, measure skill, gate trading on it.

Three services over ``Forecast`` rows (metrics from ``trading.scoring``, never re-derived here):

- ``forecasts_score(*, now, mode)`` scores every valid, unscored forecast whose market has a
  **yes or no** result known by ``now``: ``outcome`` (1/0), ``brier`` = (p − o)²,
  ``log_loss`` (p clipped as ``scoring.log_loss`` clips it), ``market_brier`` = (market price
  at forecast time − o)² when that price is known, and ``scored_at``. **void and scalar
  markets are never scored**: a voided market has no outcome to score against and a scalar
  one pays a fraction, which a yes/no Brier score does not describe; their forecasts keep
  ``outcome`` NULL and count nowhere. Invalid forecasts (no probability) are not scored either.
  Idempotent (only rows with ``scored_at`` NULL are touched) and batched: one SELECT and one
  bulk UPDATE per ``SCORE_BATCH`` rows, whatever the number of rows up to that size.
- ``forecaster_skill(...)`` / ``skill_gate(min_settled)``: one aggregate query per forecaster
  name; the gate is what ``decide_run`` takes as ``skill``. ``cycle_skill_gate(mode, now)``
  builds the one a trading cycle uses (settings, evidence modes, the cycle's clock).
- ``forecast_report(...)``: count, Brier, log loss, ECE, the 10-bin reliability table and
  Brier skill against the market and against the base rate, per forecaster, model, prompt
  version and category, plus an overall row per forecaster.

When a result counts as known ("revealed"): at the market's ``settled_time`` when recorded,
otherwise ``REVEAL_DELAY`` (the simulator's ``SETTLE_DELAY``, 1 hour) after ``close_time``,
the same rule ``markets.simulator.ReplayQuotes.outcomes`` uses. This matters in replay, where
the recorded markets carry their results from the start: scoring (and the gate, with
``as_of``) must not learn a result before the simulated clock reaches it. Live and paper
results are in the past of the wall clock when synced, so the rule only delays a result with
no ``settled_time`` by up to an hour.

Fit rows never count as evidence: a forecaster fitted on recorded markets (the ``baseline``:
``trading.baseline.load_fit().fit_events``) is neither gated nor reported on forecasts of the
events its fit used, unless explicitly asked (``exclude_fit_events=False``), so its fit and its
evaluation never share rows.
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, Q, QuerySet, Sum
from django.utils import timezone

from markets.models import Market
from markets.simulator import SETTLE_DELAY
from trading import scoring
from trading.models import Forecast, Mode, RiskSettings

REVEAL_DELAY = SETTLE_DELAY
SCORE_BATCH = 1000
SCORED_RESULTS = (Market.Result.YES, Market.Result.NO)
MARKET_FORECASTER = "market"
SCORE_FIELDS = ("outcome", "brier", "log_loss", "market_brier", "scored_at")

# Wide enough for a sum over millions of rows on both databases (SQLite sums in floats).
_SUM_FIELD = DecimalField(max_digits=30, decimal_places=6)


def _revealed_by(moment: datetime) -> Q:
    """Forecasts whose market's result is known at ``moment`` (see the module docstring).

    A market with neither a settlement time nor a close time is never taken as revealed."""
    return Q(market__settled_time__lte=moment) | Q(
        market__settled_time__isnull=True, market__close_time__lte=moment - REVEAL_DELAY
    )


def _modes(modes: str | Iterable[str] | None) -> list[str] | None:
    if modes is None:
        return None
    return [modes] if isinstance(modes, str) else list(modes)


# Forecasters fitted on recorded markets; ``fit_events`` says on which events.
FITTED_FORECASTERS = ("baseline",)


def fit_events(forecaster: str) -> frozenset[str]:
    """Event tickers the named forecaster was fitted on (empty for a forecaster with no fit)."""
    if forecaster == "baseline":
        from trading.baseline import load_fit

        return load_fit().fit_events
    return frozenset()


def _fit_rows(name: str) -> Q | None:
    events = fit_events(name)
    if not events:
        return None
    return Q(forecaster=name, market__event__event_ticker__in=sorted(events))


def _without_fit_rows(qs: QuerySet[Forecast], names: Iterable[str]) -> QuerySet[Forecast]:
    for name in names:
        condition = _fit_rows(name)
        if condition is not None:
            qs = qs.exclude(condition)
    return qs


# --- Scoring --------------------------------------------------------------------------------


def forecasts_score(*, now: datetime | None = None, mode: str | None = None) -> int:
    """Score the valid, unscored forecasts whose market settled yes/no by ``now``.

    ``now`` defaults to the wall clock; in replay pass the simulated clock. ``mode`` limits the
    scoring to one book's forecasts (None: every mode). Returns how many forecasts were scored;
    a second call with nothing newly settled returns 0 and writes nothing.
    """
    now = now or timezone.now()
    pending = Forecast.objects.filter(
        valid=True,
        probability__isnull=False,
        scored_at__isnull=True,
        market__result__in=SCORED_RESULTS,
    ).filter(_revealed_by(now))
    if mode is not None:
        pending = pending.filter(mode=mode)
    pending = pending.order_by("pk").values_list(
        "pk", "probability", "market_price", "market__result"
    )
    scored = 0
    last_pk = 0
    while True:
        chunk = list(pending.filter(pk__gt=last_pk)[:SCORE_BATCH])
        if not chunk:
            break
        rows = [_scored_row(pk, p, price, result, now) for pk, p, price, result in chunk]
        Forecast.objects.bulk_update(rows, SCORE_FIELDS, batch_size=SCORE_BATCH)
        scored += len(rows)
        if len(chunk) < SCORE_BATCH:
            break
        last_pk = chunk[-1][0]
    return scored


def _scored_row(
    pk: int, probability: Decimal, price: Decimal | None, result: str, now: datetime
) -> Forecast:
    outcome = 1 if result == Market.Result.YES else 0
    return Forecast(
        pk=pk,
        outcome=outcome,
        brier=scoring.brier([probability], [outcome]),
        log_loss=scoring.log_loss([probability], [outcome]),
        market_brier=scoring.brier([price], [outcome]) if price is not None else None,
        scored_at=now,
    )


# --- Skill and the gate ---------------------------------------------------------------------


@dataclass(frozen=True)
class SkillReport:
    """A forecaster's record against the market on its settled forecasts.

    ``n`` counts scored forecasts that have both scores (the market price at forecast time was
    known), so the forecaster and the market are compared on the same rows; ``markets`` is how
    many distinct markets they cover (re-forecasts of one market are correlated evidence).
    ``brier``/``market_brier`` are the means of the stored per-row scores (6 decimals each, so
    they may differ from a recomputation from the probabilities by < 0.000001);
    ``skill`` = 1 − brier / market_brier, None without data or when the market was perfect.
    """

    forecaster: str
    model: str
    prompt_version: str
    min_settled: int
    n: int = 0
    markets: int = 0
    brier: Decimal | None = None
    market_brier: Decimal | None = None
    skill: Decimal | None = None

    @property
    def has_skill(self) -> bool:
        """Enough settled forecasts, and strictly better than the market on them.

        ``min_settled`` 0 turns the gate off (an explicit, audited operator choice; the replay
        demo uses it so that trading starts at once).
        """
        if self.min_settled == 0:
            return True
        return self.n >= self.min_settled and self.skill is not None and self.skill > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "forecaster": self.forecaster,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "n": self.n,
            "markets": self.markets,
            "brier": _s(self.brier),
            "market_brier": _s(self.market_brier),
            "skill": _s(self.skill),
            "min_settled": self.min_settled,
            "has_skill": self.has_skill,
        }


def _mean(total: Decimal, n: int) -> Decimal:
    return (total / n).quantize(scoring.QUANTUM, rounding=decimal.ROUND_HALF_EVEN)


def forecaster_skill(
    *,
    forecaster: str,
    model: str = "",
    prompt_version: str = "",
    min_settled: int,
    modes: str | Iterable[str] | None = None,
    as_of: datetime | None = None,
    exclude_fit_events: bool = True,
) -> SkillReport:
    """Skill of ``forecaster`` against the market, from one aggregate query.

    ``model`` / ``prompt_version`` narrow the rows when given ("" = any). ``modes`` limits the
    evidence to those books (None: all). ``as_of`` (replay: the simulated clock) counts only
    forecasts made by then on markets whose result was revealed by then. The ``market``
    forecaster is measured like any other here (its skill is 0 by construction); only
    ``skill_gate`` lets it through.
    """
    qs = Forecast.objects.filter(
        forecaster=forecaster,
        valid=True,
        outcome__isnull=False,
        brier__isnull=False,
        market_brier__isnull=False,
    )
    if model:
        qs = qs.filter(model=model)
    if prompt_version:
        qs = qs.filter(prompt_version=prompt_version)
    mode_list = _modes(modes)
    if mode_list is not None:
        qs = qs.filter(mode__in=mode_list)
    if as_of is not None:
        qs = qs.filter(_revealed_by(as_of), created_at__lte=as_of)
    if exclude_fit_events:
        qs = _without_fit_rows(qs, [forecaster])
    totals = qs.aggregate(
        n=Count("pk"),
        markets=Count("market", distinct=True),
        brier=Sum("brier", output_field=_SUM_FIELD),
        market_brier=Sum("market_brier", output_field=_SUM_FIELD),
    )
    report = SkillReport(forecaster, model, prompt_version, min_settled)
    n = totals["n"]
    if not n:
        return report
    brier_sum, market_sum = Decimal(totals["brier"]), Decimal(totals["market_brier"])
    return SkillReport(
        forecaster,
        model,
        prompt_version,
        min_settled,
        n=n,
        markets=totals["markets"],
        brier=_mean(brier_sum, n),
        market_brier=_mean(market_sum, n),
        # The ratio of the sums is the ratio of the means, without rounding the means first.
        skill=scoring.brier_skill(brier_sum, market_sum),
    )


@dataclass
class SkillGate:
    """``decide_run``'s ``skill``: may forecasts of this forecaster open directional trades?

    The ``market`` forecaster always passes: its probability IS the market price, so it has no
    edge to test and never trades on one; gating it would only hide that. Every other name
    (``baseline``, ``llm``, custom ones) must show ``has_skill`` over ``min_settled`` settled
    forecasts. One aggregate query per name for the life of the gate (build one per cycle);
    ``reports`` keeps what each answer was based on.
    """

    min_settled: int
    modes: list[str] | None = None
    as_of: datetime | None = None
    exclude_fit_events: bool = True
    reports: dict[str, SkillReport] = field(default_factory=dict)

    def __call__(self, forecaster: str) -> bool:
        if forecaster == MARKET_FORECASTER:
            return True
        if forecaster not in self.reports:
            self.reports[forecaster] = forecaster_skill(
                forecaster=forecaster,
                min_settled=self.min_settled,
                modes=self.modes,
                as_of=self.as_of,
                exclude_fit_events=self.exclude_fit_events,
            )
        return self.reports[forecaster].has_skill


def skill_gate(
    min_settled: int,
    *,
    modes: str | Iterable[str] | None = None,
    as_of: datetime | None = None,
    exclude_fit_events: bool = True,
) -> SkillGate:
    """A ``SkillGate`` (see there): build one per cycle and pass it to ``decide_run``."""
    return SkillGate(min_settled, _modes(modes), as_of, exclude_fit_events)


def evidence_modes(mode: str) -> tuple[str, ...]:
    """Whose forecasts count as evidence for a cycle in ``mode``.

    Replay learns only from replay forecasts (recorded markets, simulated time). Paper and live
    share their evidence: both are forecasts made in real time on real markets and scored on
    their real results, whichever book traded on them.
    """
    return (Mode.REPLAY,) if mode == Mode.REPLAY else (Mode.PAPER, Mode.LIVE)


def cycle_skill_gate(*, mode: str, now: datetime) -> SkillGate:
    """The gate for one cycle: ``RiskSettings.skill_min_settled``, ``evidence_modes(mode)``
    and, as of ``now`` (the exchange's clock: simulated in replay), only what was known then."""
    return SkillGate(RiskSettings.load().skill_min_settled, list(evidence_modes(mode)), as_of=now)


# --- The report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportGroup:
    """Scores of one group of settled forecasts. ``None`` in model / prompt_version / category
    means "all" (the forecaster's overall row).

    Forecaster metrics (``brier``, ``log_loss``, ``ece``, ``reliability``) use all ``n`` rows.
    The market comparison uses the ``n_market`` rows that have a market price at forecast time:
    ``brier_on_market_rows`` is the forecaster's Brier on exactly those rows, and
    ``skill_vs_market`` = 1 − that / ``market_brier``. ``base_rate`` is the group's own share of
    YES outcomes (an in-sample, "climatological" reference: it knows the group's outcomes),
    ``base_rate_brier`` = the Brier of always forecasting it, and ``skill_vs_base_rate`` =
    1 − brier / base_rate_brier (None when every outcome is the same). All exact, 6 decimals.
    """

    forecaster: str
    model: str | None
    prompt_version: str | None
    category: str | None
    n: int
    brier: Decimal
    log_loss: Decimal
    ece: Decimal
    reliability: list[scoring.ReliabilityBin]
    base_rate: Decimal
    base_rate_brier: Decimal
    skill_vs_base_rate: Decimal | None
    n_market: int
    brier_on_market_rows: Decimal | None
    market_brier: Decimal | None
    market_log_loss: Decimal | None
    market_ece: Decimal | None
    market_reliability: list[scoring.ReliabilityBin]
    skill_vs_market: Decimal | None

    @property
    def is_overall(self) -> bool:
        return self.model is None and self.prompt_version is None and self.category is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "forecaster": self.forecaster,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "category": self.category,
            "n": self.n,
            "brier": _s(self.brier),
            "log_loss": _s(self.log_loss),
            "ece": _s(self.ece),
            "reliability": [b.as_dict() for b in self.reliability],
            "base_rate": _s(self.base_rate),
            "base_rate_brier": _s(self.base_rate_brier),
            "skill_vs_base_rate": _s(self.skill_vs_base_rate),
            "n_market": self.n_market,
            "brier_on_market_rows": _s(self.brier_on_market_rows),
            "market_brier": _s(self.market_brier),
            "market_log_loss": _s(self.market_log_loss),
            "market_ece": _s(self.market_ece),
            "market_reliability": [b.as_dict() for b in self.market_reliability],
            "skill_vs_market": _s(self.skill_vs_market),
        }


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


Row = tuple[Decimal, Decimal | None, int]  # probability, market price, outcome


def _group(
    forecaster: str,
    model: str | None,
    prompt_version: str | None,
    category: str | None,
    rows: list[Row],
) -> ReportGroup:
    ps = [p for p, _, _ in rows]
    ys = [y for _, _, y in rows]
    brier = scoring.brier(ps, ys)
    rate = scoring.base_rate(ys)
    rate_brier = scoring.brier([rate] * len(ys), ys)
    priced = [(p, m, y) for p, m, y in rows if m is not None]
    market: dict[str, Any] = {
        "brier_on_market_rows": None,
        "market_brier": None,
        "market_log_loss": None,
        "market_ece": None,
        "market_reliability": [],
        "skill_vs_market": None,
    }
    if priced:
        f_ps = [p for p, _, _ in priced]
        m_ps = [m for _, m, _ in priced]
        m_ys = [y for _, _, y in priced]
        on_rows = scoring.brier(f_ps, m_ys)
        m_brier = scoring.brier(m_ps, m_ys)
        market = {
            "brier_on_market_rows": on_rows,
            "market_brier": m_brier,
            "market_log_loss": scoring.log_loss(m_ps, m_ys),
            "market_ece": scoring.ece(m_ps, m_ys),
            "market_reliability": scoring.reliability_table(m_ps, m_ys),
            "skill_vs_market": scoring.brier_skill(on_rows, m_brier),
        }
    return ReportGroup(
        forecaster=forecaster,
        model=model,
        prompt_version=prompt_version,
        category=category,
        n=len(rows),
        brier=brier,
        log_loss=scoring.log_loss(ps, ys),
        ece=scoring.ece(ps, ys),
        reliability=scoring.reliability_table(ps, ys),
        base_rate=rate,
        base_rate_brier=rate_brier,
        skill_vs_base_rate=scoring.brier_skill(brier, rate_brier),
        n_market=len(priced),
        **market,
    )


def scored_forecasts(
    *,
    mode: str | None = None,
    since: datetime | None = None,
    exclude_fit_events: bool = True,
) -> QuerySet[Forecast]:
    """The forecasts a report reads: valid, scored, of ``mode`` and made at or after ``since``,
    without each forecaster's fit events unless ``exclude_fit_events`` is False."""
    qs = Forecast.objects.filter(valid=True, probability__isnull=False, outcome__isnull=False)
    if mode is not None:
        qs = qs.filter(mode=mode)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if exclude_fit_events:
        qs = _without_fit_rows(qs, FITTED_FORECASTERS)
    return qs


def fit_rows_left_out(*, mode: str | None = None, since: datetime | None = None) -> dict[str, int]:
    """How many scored forecasts ``forecast_report`` leaves out per forecaster (fit events)."""
    everything = scored_forecasts(mode=mode, since=since, exclude_fit_events=False)
    left_out = {}
    for name in FITTED_FORECASTERS:
        condition = _fit_rows(name)
        if condition is not None:
            count = everything.filter(condition).count()
            if count:
                left_out[name] = count
    return left_out


def forecast_report(
    *,
    mode: str | None = None,
    since: datetime | None = None,
    exclude_fit_events: bool = True,
) -> list[ReportGroup]:
    """Scores per forecaster, model, prompt version and category, and overall per forecaster.

    Rows are streamed with ``values_list`` (one query, no model instances) and scored with
    ``trading.scoring`` in exact Decimal arithmetic, the same functions ``evaluate_forecaster``
    uses, so the two reports agree to the last digit. (Database aggregates would compute the
    Brier means in floating point on SQLite and could not give the reliability table anyway.)
    Order: each forecaster's overall row, then its groups sorted by model, prompt version and
    category (an empty category is reported as "").
    """
    rows = (
        scored_forecasts(mode=mode, since=since, exclude_fit_events=exclude_fit_events)
        .order_by()
        .values_list(
            "forecaster",
            "model",
            "prompt_version",
            "market__category",
            "probability",
            "market_price",
            "outcome",
        )
    )
    detailed: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
    overall: dict[str, list[Row]] = defaultdict(list)
    for name, model, version, category, p, price, outcome in rows.iterator(chunk_size=2000):
        row = (p, price, outcome)
        detailed[(name, model, version, category or "")].append(row)
        overall[name].append(row)
    groups: list[ReportGroup] = []
    for name in sorted(overall):
        groups.append(_group(name, None, None, None, overall[name]))
        for key in sorted(k for k in detailed if k[0] == name):
            groups.append(_group(*key, detailed[key]))
    return groups


def skill_reports(
    names: Collection[str],
    *,
    min_settled: int,
    modes: str | Iterable[str] | None = None,
) -> dict[str, SkillReport]:
    """``forecaster_skill`` for each name (what the gate would decide now)."""
    return {
        name: forecaster_skill(forecaster=name, min_settled=min_settled, modes=modes)
        for name in sorted(names)
    }


__all__ = [
    "FITTED_FORECASTERS",
    "REVEAL_DELAY",
    "ReportGroup",
    "cycle_skill_gate",
    "evidence_modes",
    "SkillGate",
    "SkillReport",
    "fit_events",
    "fit_rows_left_out",
    "forecast_report",
    "forecaster_skill",
    "forecasts_score",
    "scored_forecasts",
    "skill_gate",
    "skill_reports",
]
