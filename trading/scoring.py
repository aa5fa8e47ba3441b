"""Proper scoring of probability forecasts against yes/no outcomes: pure functions, exact.

Every function takes forecasts (probabilities of YES in [0, 1]) and outcomes (1 = YES, 0 = NO)
as ``Decimal``, ``int`` or ``float`` and returns ``Decimal`` (quantized to ``PLACES`` = 6
decimals, ROUND_HALF_EVEN) so reports compare exactly. A float is read by its shortest repr
(``0.1`` is ``Decimal("0.1")``), never by its binary value; NaN, infinities, booleans,
probabilities outside [0, 1] and outcomes other than 0/1 raise ``ValueError``, and so does an
empty sample (a metric of nothing is not 0).

- ``brier``: mean of (p − y)²; 0 is perfect, 0.25 is "always 0.5".
- ``log_loss``: mean of −ln(p) for YES and −ln(1 − p) for NO (natural log, nats). p is first
  clipped to [eps, 1 − eps] with ``eps = LOG_LOSS_EPS = 0.000001`` (the 6-decimal resolution
  at which forecasts are stored), so one certain-and-wrong forecast costs ln(10⁶) ≈ 13.8155
  instead of infinity.
- ``reliability_table`` / ``ece``: 10 equal-width bins [0, 0.1), [0.1, 0.2), …, [0.9, 1.0]
  (1.0 falls in the last bin); ECE = Σ (nᵢ / N)·|mean forecast in bin i − observed YES rate in
  bin i| over non-empty bins.
- ``brier_skill``: 1 − Brier / Brier_reference (positive: better than the reference; None
  when the reference is perfect, where the ratio is undefined).
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

PLACES = 6
QUANTUM = Decimal(1).scaleb(-PLACES)  # 0.000001
LOG_LOSS_EPS = Decimal("0.000001")
BINS = 10
_CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)

Number = Decimal | int | float


def _q(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=decimal.ROUND_HALF_EVEN, context=_CONTEXT)


def to_decimal(value: Number, what: str = "value") -> Decimal:
    """``value`` as an exact Decimal; a float goes through its shortest repr."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is a bool, expected a number")
    if isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, Decimal | int):
        result = Decimal(value)
    else:
        raise ValueError(f"{what}: {value!r} is not a number")
    if not result.is_finite():
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return result


def _pairs(forecasts: Iterable[Number], outcomes: Iterable[Number]) -> list[tuple[Decimal, int]]:
    probs, ys = list(forecasts), list(outcomes)
    if len(probs) != len(ys):
        raise ValueError(f"{len(probs)} forecasts but {len(ys)} outcomes")
    if not probs:
        raise ValueError("no forecasts to score")
    pairs = []
    for index, (p_raw, y_raw) in enumerate(zip(probs, ys, strict=True)):
        p = to_decimal(p_raw, f"forecast #{index}")
        if not 0 <= p <= 1:
            raise ValueError(f"forecast #{index}: {p_raw!r} is outside [0, 1]")
        y = to_decimal(y_raw, f"outcome #{index}")
        if y not in (0, 1):
            raise ValueError(f"outcome #{index}: {y_raw!r} is not 0 or 1")
        pairs.append((p, int(y)))
    return pairs


def brier(forecasts: Iterable[Number], outcomes: Iterable[Number]) -> Decimal:
    """Mean squared error of the forecasts, 6 decimals (computed exactly before rounding)."""
    pairs = _pairs(forecasts, outcomes)
    total = sum(((p - y) ** 2 for p, y in pairs), Decimal(0))
    return _q(_CONTEXT.divide(total, len(pairs)))


def log_loss(
    forecasts: Iterable[Number], outcomes: Iterable[Number], *, eps: Decimal = LOG_LOSS_EPS
) -> Decimal:
    """Mean negative natural log of the probability given to what happened, 6 decimals.

    Probabilities are clipped to [eps, 1 − eps] first (see the module docstring).
    """
    if not 0 < eps < Decimal("0.5"):
        raise ValueError(f"eps {eps!r} must be in (0, 0.5)")
    pairs = _pairs(forecasts, outcomes)
    total = Decimal(0)
    for p, y in pairs:
        clipped = min(max(p, eps), 1 - eps)
        total += -(clipped if y == 1 else 1 - clipped).ln(_CONTEXT)
    return _q(_CONTEXT.divide(total, len(pairs)))


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability table; means are None for an empty bin."""

    lower: Decimal
    upper: Decimal
    count: int
    mean_forecast: Decimal | None
    observed_rate: Decimal | None

    def as_dict(self) -> dict[str, object]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "bin": f"[{self.lower}, {self.upper}{']' if self.upper == 1 else ')'}",
            "lower": str(self.lower),
            "upper": str(self.upper),
            "count": self.count,
            "mean_forecast": text(self.mean_forecast),
            "observed_rate": text(self.observed_rate),
        }


def bin_index(p: Decimal, bins: int = BINS) -> int:
    """The bin of probability ``p``: floor(p·bins), with p = 1 in the last bin."""
    return min(int((p * bins).to_integral_value(rounding=decimal.ROUND_FLOOR)), bins - 1)


def _binned(pairs: Sequence[tuple[Decimal, int]], bins: int) -> list[list[tuple[Decimal, int]]]:
    groups: list[list[tuple[Decimal, int]]] = [[] for _ in range(bins)]
    for p, y in pairs:
        groups[bin_index(p, bins)].append((p, y))
    return groups


def reliability_table(
    forecasts: Iterable[Number], outcomes: Iterable[Number], *, bins: int = BINS
) -> list[ReliabilityBin]:
    """``bins`` equal-width bins over [0, 1]: count, mean forecast and observed YES rate."""
    groups = _binned(_pairs(forecasts, outcomes), bins)
    table = []
    for index, group in enumerate(groups):
        lower = _q(Decimal(index) / bins)
        upper = _q(Decimal(index + 1) / bins)
        if group:
            mean_p = _q(_CONTEXT.divide(sum((p for p, _ in group), Decimal(0)), len(group)))
            rate = _q(_CONTEXT.divide(Decimal(sum(y for _, y in group)), len(group)))
        else:
            mean_p = rate = None
        table.append(ReliabilityBin(lower.normalize(), upper.normalize(), len(group), mean_p, rate))
    return table


def ece(forecasts: Iterable[Number], outcomes: Iterable[Number], *, bins: int = BINS) -> Decimal:
    """Expected calibration error over ``bins`` equal-width bins, 6 decimals.

    Computed from the exact bin sums (not from the rounded table): Σ |Σp − Σy| / N.
    """
    pairs = _pairs(forecasts, outcomes)
    total = Decimal(0)
    for group in _binned(pairs, bins):
        if group:
            total += abs(sum((p for p, _ in group), Decimal(0)) - sum(y for _, y in group))
    return _q(_CONTEXT.divide(total, len(pairs)))


def brier_skill(score: Number, reference: Number) -> Decimal | None:
    """Brier skill score 1 − score / reference, 6 decimals; None when the reference is 0."""
    score_d, reference_d = to_decimal(score, "score"), to_decimal(reference, "reference")
    if score_d < 0 or reference_d < 0:
        raise ValueError("Brier scores are never negative")
    if reference_d == 0:
        return None
    return _q(1 - _CONTEXT.divide(score_d, reference_d))


def base_rate(outcomes: Iterable[Number]) -> Decimal:
    """The share of YES outcomes, 6 decimals (the climatological forecast)."""
    ys = list(outcomes)
    pairs = _pairs([0] * len(ys), ys)
    return _q(_CONTEXT.divide(Decimal(sum(y for _, y in pairs)), len(pairs)))
