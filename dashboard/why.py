"""The "why" of one decision: which steps of the strategy it passed, and where it stopped.

``trading.strategy.decide`` checks, in order: the trading state, the candidate filters, the
forecast, the edge after fees against the confidence tier's threshold, the depth at the ask,
the risk checks on the sized order, and the size. A decision's ``reason`` names the step that
stopped it (or ``traded``), and ``details`` holds the numbers each step looked at. This module
turns the two into rows a template can show: every step passed, failed or not reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trading.reasons import Reason

PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"

# The candidate filters in the order ``strategy.candidate_filter`` applies them; the value
# shown is the ``details`` key the filter looked at (when the decision recorded it).
FILTERS: tuple[tuple[Reason, str, str | None], ...] = (
    (Reason.SKIP_STATUS, "Market open", "status"),
    (Reason.SKIP_VOLUME, "Volume at least the minimum", "volume"),
    (Reason.SKIP_CLOSE_TIME, "Closes within the allowed window", "hours_to_close"),
    (Reason.SKIP_CATEGORY, "Category not excluded", "category"),
    (Reason.SKIP_OPEN_POSITION, "No position already open", None),
    (Reason.SKIP_ENTRY_RESTING, "No entry order resting", None),
    (Reason.SKIP_ORDER_PENDING, "No order pending", None),
    (Reason.SKIP_RECENTLY_ANALYSED, "Not analysed recently", None),
    (Reason.SKIP_NO_QUOTE, "An executable quote", "yes_ask"),
)

STEPS: tuple[tuple[str, str, frozenset[Reason]], ...] = (
    ("state", "Trading state", frozenset({Reason.TRADING_HALTED, Reason.REDUCE_ONLY})),
    ("filters", "Candidate filters", frozenset(reason for reason, _, _ in FILTERS)),
    (
        "forecast",
        "Forecast",
        frozenset(
            {
                Reason.NO_FORECAST,
                Reason.AI_BUDGET_EXHAUSTED,
                Reason.INVALID_FORECAST,
                Reason.NO_SKILL,
                Reason.LOW_CONFIDENCE,
            }
        ),
    ),
    ("edge", "Edge after fees", frozenset({Reason.EDGE_TOO_SMALL})),
    ("depth", "Depth at the ask", frozenset({Reason.INSUFFICIENT_DEPTH})),
    (
        "risk",
        "Risk checks",
        frozenset(
            {
                Reason.RISK_DAILY_LOSS,
                Reason.RISK_OPEN_POSITIONS,
                Reason.RISK_POSITION_SIZE,
                Reason.RISK_CASH_RESERVE,
                Reason.RISK_CATEGORY_EXPOSURE,
            }
        ),
    ),
    ("size", "Size", frozenset({Reason.SIZE_ZERO})),
    ("traded", "Order", frozenset({Reason.TRADED})),
)


@dataclass
class Step:
    key: str
    title: str
    status: str


@dataclass
class FilterRow:
    title: str
    status: str
    value: Any = None
    key: str | None = None


@dataclass
class Why:
    kind: str  # entry | exit
    reason: str
    details: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    filters: list[FilterRow] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def step(self, key: str) -> str:
        return next((s.status for s in self.steps if s.key == key), NOT_CHECKED)

    @property
    def has_forecast_numbers(self) -> bool:
        return "probability" in self.details

    @property
    def has_edge(self) -> bool:
        return "edge" in self.details

    @property
    def has_sizing(self) -> bool:
        return "kelly_full" in self.details


def _stopped_at(reason: Reason, details: dict[str, Any]) -> str:
    # No quote after a forecast is the edge step finding no ask, not the candidate filter.
    if reason == Reason.SKIP_NO_QUOTE and "probability" in details:
        return "edge"
    return next((key for key, _, reasons in STEPS if reason in reasons), "traded")


def explain(reason_code: str, details: dict[str, Any] | None) -> Why:
    """The steps of one decision (``Decision.reason`` and ``Decision.details``)."""
    details = dict(details or {})
    try:
        reason = Reason(reason_code)
    except ValueError:
        return Why("entry", reason_code, details)
    if reason == Reason.EXIT:
        return Why("exit", reason_code, details)
    stopped = _stopped_at(reason, details)
    keys = [key for key, _, _ in STEPS]
    steps = []
    for key, title, _ in STEPS:
        if keys.index(key) < keys.index(stopped):
            status = PASSED
        elif key == stopped:
            status = PASSED if reason == Reason.TRADED else FAILED
        else:
            status = NOT_CHECKED
        steps.append(Step(key, title, status))
    if "trading_state" not in details and steps[0].status == PASSED:
        # The decide job filters candidates before the state check: the state was not read.
        steps[0].status = NOT_CHECKED
    return Why(
        "entry",
        reason_code,
        details,
        steps=steps,
        filters=_filters(reason, stopped, details),
        checks=list(details.get("checks") or []),
    )


def _filters(reason: Reason, stopped: str, details: dict[str, Any]) -> list[FilterRow]:
    """Each candidate filter: passed before the one that failed, not checked after it."""
    rows = []
    status = NOT_CHECKED if stopped == "state" else PASSED
    for code, title, key in FILTERS:
        if stopped == "filters" and code == reason:
            rows.append(FilterRow(title, FAILED, details.get(key) if key else None, key))
            status = NOT_CHECKED
            continue
        rows.append(FilterRow(title, status, details.get(key) if key else None, key))
    return rows
