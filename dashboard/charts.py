"""Chart data for the dashboard: server-side downsampling and the JSON the browser draws.

Charts are drawn by uPlot (``static/vendor/uplot``, served as a static file) from a small
JSON spec that ``static/js/charts.js`` reads. Values travel as decimal strings (the browser
turns them into numbers for drawing only); times as Unix seconds. Long series are thinned
here, keeping each bucket's extremes, so a page never ships more than ``MAX_POINTS`` points
however long the history is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

MAX_POINTS = 400

Row = Sequence[Any]


def downsample(
    rows: Sequence[Row], key: Callable[[Row], Decimal | None], max_points: int = MAX_POINTS
) -> list[Row]:
    """At most ``max_points`` of ``rows`` (ordered by time), in order.

    The rows are cut into ``(max_points - 1) // 2`` buckets of consecutive rows; each bucket
    keeps the rows where ``key`` is lowest and highest (so spikes survive), and the very last
    row is always kept. Rows are returned as they are: values are never averaged or rounded.
    """
    n = len(rows)
    if n <= max_points:
        return list(rows)
    buckets = max((max_points - 1) // 2, 1)
    size = -(-n // buckets)  # ceil: at most `buckets` buckets
    kept: list[int] = []
    for start in range(0, n, size):
        indices = [i for i in range(start, min(start + size, n)) if key(rows[i]) is not None]
        if not indices:
            kept.append(start)
            continue
        low = min(indices, key=lambda i: key(rows[i]))  # type: ignore[arg-type, return-value]
        high = max(indices, key=lambda i: key(rows[i]))  # type: ignore[arg-type, return-value]
        kept.extend(sorted({low, high}))
    if kept[-1] != n - 1:
        kept.append(n - 1)
    return [rows[i] for i in kept]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass
class Series:
    label: str
    values: list[str | None]
    color: str
    style: str = "line"  # line | points | step | area
    dash: bool = False


@dataclass
class Chart:
    """What ``charts.js`` draws: a shared x axis and one or more series."""

    x: list[int | str]
    series: list[Series] = field(default_factory=list)
    y_format: str = "num"  # price | dollars | pct | num
    x_time: bool = True
    x_format: str = "num"
    height: int = 260
    y_min: str | None = None
    y_max: str | None = None

    @property
    def empty(self) -> bool:
        return not self.x

    def as_json(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "xTime": self.x_time,
            "xFormat": self.x_format,
            "yFormat": self.y_format,
            "height": self.height,
            "yMin": self.y_min,
            "yMax": self.y_max,
            "series": [
                {
                    "label": s.label,
                    "values": s.values,
                    "color": s.color,
                    "style": s.style,
                    "dash": s.dash,
                }
                for s in self.series
            ],
        }


BLUE, GREEN, RED, GREY, ORANGE, PURPLE = (
    "#2563eb",
    "#16a34a",
    "#dc2626",
    "#6b7280",
    "#ea580c",
    "#7c3aed",
)


def _mid(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return bid if bid is not None else ask


def price_history(
    snapshots: Sequence[Row], forecasts: Iterable[tuple[datetime, Decimal | None]]
) -> Chart:
    """YES bid / ask / last over time (rows of ``(ts, yes_bid, yes_ask, last_price)``), with
    the forecasts' probabilities as points at their own times."""
    thinned = downsample(snapshots, key=lambda r: r[3] if r[3] is not None else _mid(r[1], r[2]))
    by_time: dict[int, list[Any]] = {}
    for ts, bid, ask, last in thinned:
        by_time[epoch(ts)] = [bid, ask, last, None]
    for ts, probability in forecasts:
        if probability is None:
            continue
        by_time.setdefault(epoch(ts), [None, None, None, None])[3] = probability
    times = sorted(by_time)
    column = [[_text(by_time[t][i]) for t in times] for i in range(4)]
    return Chart(
        x=list(times),
        series=[
            Series("YES bid", column[0], GREEN, "step"),
            Series("YES ask", column[1], RED, "step"),
            Series("Last", column[2], GREY, "line", dash=True),
            Series("Forecast P(YES)", column[3], PURPLE, "points"),
        ],
        y_format="price",
        y_min="0",
        y_max="1",
    )


def equity_curve(rows: Sequence[Row]) -> Chart:
    """Equity and cash over time from rows of ``(ts, equity, cash)``."""
    thinned = downsample(rows, key=lambda r: r[1])
    return Chart(
        x=[epoch(r[0]) for r in thinned],
        series=[
            Series("Equity", [_text(r[1]) for r in thinned], BLUE, "area"),
            Series("Cash", [_text(r[2]) for r in thinned], GREY, "line", dash=True),
        ],
        y_format="dollars",
    )


@dataclass(frozen=True)
class Drawdown:
    chart: Chart
    max_drawdown: Decimal | None  # most negative fraction below the running peak
    max_drawdown_dollars: Decimal | None


def drawdown(rows: Iterable[tuple[datetime, Decimal]]) -> Drawdown:
    """Drawdown below the running peak of equity, from every row (thinned only for drawing)."""
    points: list[tuple[datetime, Decimal, Decimal]] = []
    peak: Decimal | None = None
    worst: Decimal | None = None
    worst_dollars: Decimal | None = None
    for ts, equity in rows:
        peak = equity if peak is None or equity > peak else peak
        below = equity - peak
        fraction = (below / peak).quantize(Decimal("0.000001")) if peak > 0 else Decimal(0)
        if worst is None or fraction < worst:
            worst = fraction
        if worst_dollars is None or below < worst_dollars:
            worst_dollars = below
        points.append((ts, fraction, below))
    thinned = downsample(points, key=lambda r: r[1])
    chart = Chart(
        x=[epoch(r[0]) for r in thinned],
        series=[Series("Drawdown", [_text(r[1]) for r in thinned], RED, "area")],
        y_format="pct",
        y_max="0",
    )
    return Drawdown(chart, worst, worst_dollars)


def reliability(bins: Sequence[dict[str, Any]]) -> Chart:
    """The reliability diagram: observed YES rate against mean forecast, per non-empty bin,
    beside the diagonal of perfect calibration."""
    filled = [b for b in bins if b["count"]]
    xs = ["0"] + [str(b["mean_forecast"]) for b in filled] + ["1"]
    return Chart(
        x=xs,
        series=[
            Series("Perfect calibration", xs, GREY, "line", dash=True),
            Series(
                "Observed YES rate",
                [None] + [str(b["observed_rate"]) for b in filled] + [None],
                BLUE,
                "linepoints",
            ),
        ],
        y_format="pct",
        x_time=False,
        x_format="pct",
        y_min="0",
        y_max="1",
        height=320,
    )


def brier_over_time(rows: Sequence[dict[str, Any]]) -> Chart:
    """Mean Brier score of the forecaster and of the market price, per day."""
    return Chart(
        x=[
            epoch(datetime.combine(r["day"], datetime.min.time()).replace(tzinfo=UTC)) for r in rows
        ],
        series=[
            Series("Forecaster", [_text(r["brier"]) for r in rows], BLUE, "linepoints"),
            Series("Market price", [_text(r["market_brier"]) for r in rows], ORANGE, "linepoints"),
        ],
        y_format="num",
        y_min="0",
    )
