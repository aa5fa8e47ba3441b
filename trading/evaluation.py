"""Score a forecaster on resolved Kalshi questions in the ``kalshi-questions`` folder format.

``read_questions(data_dir)`` reads the folder as it is (its SOURCE.md explains the files) into
uniform ``QuestionRow``s; ``evaluate(forecaster, rows)`` asks the forecaster about every row
that has a real pre-close price and scores it, and the market price beside it, on the result.

Formats, found anywhere under ``data_dir`` by extension:

- ``*.jsonl`` (benrossjenkins ``resolved_markets.jsonl``): one object per line with ``event``,
  ``market_snapshot`` (``*_dollars`` strings), ``result`` and ``snapshot_ts``. Usable only when
  ``snapshot_ts`` < ``event.close_time`` and the book is real (not yes bid 0 / ask 1):
  SOURCE.md's 91 rows. A ``last_price_dollars`` of 0 means "no trade in that candle".
- ``*.csv`` (Prophet Arena ``subset_data_100.csv``): one event per row; ``market_outcome`` and
  ``market_info`` are Python-dict literals (read with ``ast.literal_eval``; the ``sources``
  column is never parsed). One question per ``market_outcome`` label. Usable only with a
  ``market_info`` entry that is ``active`` with no result, snapshotted before both its
  ``close_time`` and its ``expected_expiration_time`` (SOURCE.md: 12 markets were snapshotted
  after the event, when the price may know the answer). Prices are in cents.
- ``*.parquet`` (``kalshi_markets.parquet``, read with pyarrow): text and result only. Its
  prices were read after settlement, so **no row is usable** as a forecast; categories come
  from ``kalshi_series_categories.json`` in the same folder (series = ``event_ticker`` up to
  the first ``-``). Without pyarrow installed the file is listed as not read (it holds no
  scoreable row, so no score changes).

The pre-close price is ``trading.baseline.book_price``: the YES bid/ask mid, else the last
trade. A ticker seen twice with a price is scored once (the first file in path order).

What a forecaster is shown: a ``MarketQuote`` with status ``active``, an empty ``result``, the
pre-close book and ``observed_at`` = the snapshot time, and ``now`` = the snapshot time. A
forecaster that also reads text may define ``forecast_question(quote, question, *, now)``; it
then gets a ``QuestionText`` (title, subtitle, rules, category...), which has no result field.
The result is never passed to either.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqdm import tqdm

from markets.exchange import MarketQuote
from markets.money import MoneyError, parse_price
from trading import scoring
from trading.baseline import book_price
from trading.forecasters import Forecaster, ForecastResult

CATEGORIES_FILE = "kalshi_series_categories.json"
UNKNOWN_CATEGORY = "(none)"

# Skip reasons (counted in reports).
SKIP_AFTER_CLOSE = "snapshot at or after close"
SKIP_AFTER_EXPIRATION = "snapshot at or after expected expiration"
SKIP_EMPTY_BOOK = "empty book (yes bid 0 / ask 1)"
SKIP_NO_PRICE = "no price in the snapshot"
SKIP_NO_SNAPSHOT = "no market snapshot"
SKIP_NOT_ACTIVE = "snapshot not of an active, unresolved market"
SKIP_SETTLED_PRICES = "prices read after settlement"
SKIP_NO_RESULT = "no yes/no result"
SKIP_DUPLICATE = "duplicate ticker"


class QuestionDataError(ValueError):
    """A questions file is malformed; the message names the file and line/row."""


@dataclass(frozen=True)
class QuestionRow:
    """One resolved yes/no market, read from any of the formats.

    ``price`` is the pre-close YES price (None when the row has none: see ``skip_reason``);
    ``result`` is 1 (yes), 0 (no) or None (voided / unknown).
    """

    source: str
    ticker: str
    event_ticker: str
    category: str
    title: str
    rules: str
    result: int | None
    price: Decimal | None = None
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    last_price: Decimal | None = None
    subtitle: str = ""
    event_title: str = ""
    close_time: datetime | None = None
    observed_at: datetime | None = None
    skip_reason: str = ""

    @property
    def usable(self) -> bool:
        return not self.skip_reason and self.price is not None and self.result is not None


@dataclass(frozen=True)
class QuestionText:
    """The text a question-aware forecaster may read. Deliberately has no result."""

    ticker: str
    event_ticker: str
    category: str
    event_title: str
    title: str
    subtitle: str
    rules: str
    close_time: datetime | None


@dataclass
class FileSummary:
    path: str
    format: str
    rows: int = 0
    usable: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class QuestionSet:
    rows: list[QuestionRow]
    files: list[FileSummary]
    notes: list[str] = field(default_factory=list)

    def usable(self) -> list[QuestionRow]:
        return [row for row in self.rows if row.usable]

    def skipped(self) -> Counter[str]:
        return Counter(row.skip_reason for row in self.rows if row.skip_reason)


# --- Reading --------------------------------------------------------------------------------


def _timestamp(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or len(value) <= 10:
        raise ValueError(f"{what}: {value!r} is not an ISO timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{what}: {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _result(value: Any) -> int | None:
    return {"yes": 1, "no": 0}.get(value) if isinstance(value, str) else None


def _cents(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}: {value!r} is not a whole number of cents")
    return parse_price(Decimal(value) / 100, what)


def _text(*parts: Any) -> str:
    return "\n\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def _read_jsonl(path: Path, source: str) -> list[QuestionRow]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(_jsonl_row(json.loads(line), source))
            except (ValueError, KeyError, TypeError, MoneyError) as exc:
                raise QuestionDataError(f"{path}, line {line_no}: {exc!r}") from None
    return rows


def _jsonl_row(obj: dict[str, Any], source: str) -> QuestionRow:
    event, snap = obj["event"], obj["market_snapshot"]
    close = _timestamp(event["close_time"], "event.close_time")
    observed = datetime.fromtimestamp(int(obj["snapshot_ts"]), UTC)
    bid = parse_price(snap["yes_bid_dollars"], "yes_bid_dollars")
    ask = parse_price(snap["yes_ask_dollars"], "yes_ask_dollars")
    last = parse_price(snap["last_price_dollars"], "last_price_dollars") or None  # 0: no trade
    skip = ""
    if observed >= close:
        skip = SKIP_AFTER_CLOSE
    elif bid == 0 and ask == 1:
        skip = SKIP_EMPTY_BOOK
    price = book_price(bid, ask, last)
    if not skip and price is None:
        skip = SKIP_NO_PRICE
    result = _result(obj["result"])
    if not skip and result is None:
        skip = SKIP_NO_RESULT
    return QuestionRow(
        source=source,
        ticker=event["market_ticker"],
        event_ticker=event["event_ticker"],
        category=event.get("category") or UNKNOWN_CATEGORY,
        title=event.get("title") or "",
        subtitle=event.get("subtitle") or "",
        rules=_text(event.get("rules")),
        result=result,
        price=None if skip else price,
        yes_bid=bid,
        yes_ask=ask,
        last_price=last,
        close_time=close,
        observed_at=observed,
        skip_reason=skip,
    )


_CSV_COLUMNS = ("event_ticker", "title", "category", "market_outcome", "market_info")


def _read_subset_csv(path: Path, source: str) -> list[QuestionRow]:
    csv.field_size_limit(sys.maxsize)  # the `sources` column holds whole news summaries
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [
            c for c in (*_CSV_COLUMNS, "snapshot_time") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise QuestionDataError(
                f"{path}, row 1: missing column(s) {', '.join(missing)} "
                "(expected the Prophet Arena subset_data_100.csv layout)"
            )
        for record in reader:
            where = f"{path}, row {reader.line_num}"
            try:
                rows.extend(_csv_rows(record, source))
            except (ValueError, KeyError, TypeError, SyntaxError, MoneyError) as exc:
                raise QuestionDataError(f"{where}: {exc!r}") from None
    return rows


def _csv_rows(record: dict[str, str], source: str) -> Iterable[QuestionRow]:
    outcomes = ast.literal_eval(record["market_outcome"])
    infos = ast.literal_eval(record["market_info"]) if record["market_info"].strip() else {}
    if not isinstance(outcomes, dict) or not isinstance(infos, dict):
        raise ValueError("market_outcome and market_info must be dict literals")
    observed = _timestamp(record["snapshot_time"], "snapshot_time")
    for label, outcome in outcomes.items():
        if outcome not in (0, 1) or isinstance(outcome, bool):
            raise ValueError(f"market_outcome[{label!r}]: {outcome!r} is not 0 or 1")
        info = infos.get(label)
        base = {
            "source": source,
            "event_ticker": record["event_ticker"],
            "category": record["category"] or UNKNOWN_CATEGORY,
            "event_title": record["title"],
            "result": int(outcome),
            "observed_at": observed,
        }
        if not isinstance(info, dict):
            yield QuestionRow(
                ticker=f"{record['event_ticker']}:{label}",
                title=str(label),
                rules="",
                skip_reason=SKIP_NO_SNAPSHOT,
                **base,
            )
            continue
        close = _timestamp(info["close_time"], "market_info.close_time")
        expected = info.get("expected_expiration_time")
        bid = _cents(info.get("yes_bid"), "yes_bid")
        ask = _cents(info.get("yes_ask"), "yes_ask")
        last = _cents(info.get("last_price"), "last_price") or None  # 0: never traded
        skip = ""
        if info.get("status") != "active" or info.get("result"):
            skip = SKIP_NOT_ACTIVE
        elif observed >= close:
            skip = SKIP_AFTER_CLOSE
        elif expected and observed >= _timestamp(expected, "expected_expiration_time"):
            skip = SKIP_AFTER_EXPIRATION
        price = book_price(bid, ask, last)
        if not skip and price is None:
            skip = SKIP_NO_PRICE
        yield QuestionRow(
            ticker=info["ticker"],
            title=info.get("title") or str(label),
            subtitle=info.get("yes_sub_title") or info.get("subtitle") or "",
            rules=_text(info.get("rules_primary"), info.get("rules_secondary")),
            price=None if skip else price,
            yes_bid=bid,
            yes_ask=ask,
            last_price=last,
            close_time=close,
            skip_reason=skip,
            **base,
        )


_PARQUET_COLUMNS = ("ticker", "event_ticker", "title", "rules_primary", "result")


def _read_parquet(path: Path, source: str, categories: dict[str, str]) -> list[QuestionRow]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in _PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        raise QuestionDataError(f"{path}: missing column(s) {', '.join(missing)}")
    rows = []
    for index, rec in enumerate(table.to_pylist()):
        try:
            close = _timestamp(rec["close_time"], "close_time") if rec.get("close_time") else None
        except ValueError as exc:
            raise QuestionDataError(f"{path}, row {index}: {exc}") from None
        result = _result(rec["result"])
        series = str(rec["event_ticker"]).split("-", 1)[0]
        rows.append(
            QuestionRow(
                source=source,
                ticker=rec["ticker"],
                event_ticker=rec["event_ticker"],
                category=categories.get(series) or UNKNOWN_CATEGORY,
                title=rec.get("title") or "",
                subtitle=rec.get("yes_sub_title") or rec.get("subtitle") or "",
                rules=_text(rec.get("rules_primary"), rec.get("rules_secondary")),
                result=result,
                close_time=close,
                # SOURCE.md: last_price/previous_price were read after settlement.
                skip_reason=SKIP_SETTLED_PRICES if result is not None else SKIP_NO_RESULT,
            )
        )
    return rows


def _categories(folder: Path) -> dict[str, str]:
    path = folder / CATEGORIES_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise QuestionDataError(f"{path}: expected an object of series → category")
    return {str(k): str(v) for k, v in data.items()}


def read_questions(data_dir: Path) -> QuestionSet:
    """Read every ``*.jsonl``, ``*.csv`` and ``*.parquet`` under ``data_dir`` (see module doc)."""
    if not data_dir.is_dir():
        raise QuestionDataError(f"{data_dir}: not a folder")
    paths = sorted(
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and p.suffix in (".jsonl", ".csv", ".parquet")
        and not any(part.startswith(".") for part in p.relative_to(data_dir).parts)
    )
    if not paths:
        raise QuestionDataError(f"{data_dir}: no .jsonl, .csv or .parquet questions file")
    rows: list[QuestionRow] = []
    files: list[FileSummary] = []
    notes: list[str] = []
    for path in paths:
        source = path.relative_to(data_dir).as_posix()
        fmt = path.suffix.lstrip(".")
        if fmt == "jsonl":
            file_rows = _read_jsonl(path, source)
        elif fmt == "csv":
            file_rows = _read_subset_csv(path, source)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                notes.append(
                    f"{source}: not read, pyarrow is not installed (its prices were read after "
                    "settlement, so it has no row to score)"
                )
                continue
            file_rows = _read_parquet(path, source, _categories(path.parent))
        rows.extend(file_rows)
        files.append(FileSummary(source, fmt))

    # A ticker is scored once, from the first file (path order) that has a price for it.
    seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        if row.usable:
            if row.ticker in seen:
                rows[index] = replace(row, price=None, skip_reason=SKIP_DUPLICATE)
            else:
                seen[row.ticker] = row.source
    by_source = {f.path: f for f in files}
    for row in rows:
        summary = by_source[row.source]
        summary.rows += 1
        if row.usable:
            summary.usable += 1
        else:
            summary.skipped[row.skip_reason] += 1
    return QuestionSet(rows, files, notes)


# --- What the forecaster sees ---------------------------------------------------------------


def question_quote(row: QuestionRow) -> MarketQuote:
    """The pre-close quote of ``row``: ``quote.mid`` equals ``row.price``; no result in it."""
    use_book = book_price(row.yes_bid, row.yes_ask, None) is not None
    return MarketQuote(
        ticker=row.ticker,
        event_ticker=row.event_ticker,
        status="active",
        close_time=row.close_time,
        yes_bid=row.yes_bid if use_book else None,
        yes_ask=row.yes_ask if use_book else None,
        last_price=row.last_price,
        category=row.category,
        result="",
        observed_at=row.observed_at,
    )


def question_text(row: QuestionRow) -> QuestionText:
    return QuestionText(
        ticker=row.ticker,
        event_ticker=row.event_ticker,
        category=row.category,
        event_title=row.event_title,
        title=row.title,
        subtitle=row.subtitle,
        rules=row.rules,
        close_time=row.close_time,
    )


def ask(forecaster: Forecaster, row: QuestionRow) -> ForecastResult:
    """One forecast for ``row``, as of its snapshot time; an exception becomes invalid."""
    quote = question_quote(row)
    now = row.observed_at or datetime.now(UTC)
    try:
        by_text: Callable[..., ForecastResult] | None = getattr(
            forecaster, "forecast_question", None
        )
        if by_text is not None:
            return by_text(quote, question_text(row), now=now)
        return forecaster.forecast(quote, now=now)
    except Exception as exc:  # noqa: BLE001 - one bad answer must not stop the evaluation
        return ForecastResult(None, None, valid=False, error=f"{type(exc).__name__}: {exc}")


# --- Scoring --------------------------------------------------------------------------------


def _ordering_key(row: QuestionRow) -> str:
    """A fixed pseudo-random order, so ``--limit`` takes a mixed sample, not one file."""
    return hashlib.sha256(row.ticker.encode("utf-8")).hexdigest()


def metrics(probabilities: Sequence[Decimal], outcomes: Sequence[int]) -> dict[str, Any]:
    if not probabilities:
        return {"n": 0, "brier": None, "log_loss": None, "ece": None, "reliability": []}
    return {
        "n": len(probabilities),
        "brier": scoring.brier(probabilities, outcomes),
        "log_loss": scoring.log_loss(probabilities, outcomes),
        "ece": scoring.ece(probabilities, outcomes),
        "reliability": scoring.reliability_table(probabilities, outcomes),
    }


@dataclass(frozen=True)
class Scored:
    row: QuestionRow
    probability: Decimal


@dataclass
class Evaluation:
    forecaster: str
    rows_read: int
    usable: int
    excluded_fit_events: int
    asked: int
    scored: list[Scored]
    invalid: Counter[str]
    skipped: Counter[str]
    stopped: str = ""  # why the run ended early ("" = every question was asked)

    def _group(self, scored: Sequence[Scored]) -> dict[str, Any]:
        ys = [s.row.result for s in scored]
        forecaster = metrics([s.probability for s in scored], ys)  # type: ignore[arg-type]
        market = metrics([s.row.price for s in scored], ys)  # type: ignore[misc]
        skill = None
        if forecaster["brier"] is not None and market["brier"] is not None:
            skill = scoring.brier_skill(forecaster["brier"], market["brier"])
        return {"n": len(scored), "forecaster": forecaster, "market": market, "skill": skill}

    def overall(self) -> dict[str, Any]:
        return self._group(self.scored)

    def by_category(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[Scored]] = defaultdict(list)
        for s in self.scored:
            groups[s.row.category].append(s)
        return {name: self._group(groups[name]) for name in sorted(groups)}

    def as_json(self) -> dict[str, Any]:
        """The report file: numbers as strings (exact), None as null."""

        def flat(group: dict[str, Any]) -> dict[str, Any]:
            f, m = group["forecaster"], group["market"]
            return {
                "n": group["n"],
                "brier_forecaster": _s(f["brier"]),
                "brier_market": _s(m["brier"]),
                "log_loss_forecaster": _s(f["log_loss"]),
                "log_loss_market": _s(m["log_loss"]),
                "ece_forecaster": _s(f["ece"]),
                "ece_market": _s(m["ece"]),
                "brier_skill_vs_market": _s(group["skill"]),
                "reliability_forecaster": [b.as_dict() for b in f["reliability"]],
                "reliability_market": [b.as_dict() for b in m["reliability"]],
            }

        overall = self.overall()
        ys = [s.row.result for s in self.scored]
        base: dict[str, Any] = {"base_rate": None, "brier_base_rate": None,
                                "brier_skill_vs_base_rate": None}  # fmt: skip
        if ys:
            rate = scoring.base_rate(ys)  # type: ignore[arg-type]
            brier_rate = scoring.brier([rate] * len(ys), ys)  # type: ignore[arg-type]
            base = {
                "base_rate": str(rate),
                "brier_base_rate": str(brier_rate),
                "brier_skill_vs_base_rate": _s(
                    scoring.brier_skill(overall["forecaster"]["brier"], brier_rate)
                ),
            }
        return {
            "forecaster": self.forecaster,
            **flat(overall),
            **base,
            "rows_read": self.rows_read,
            "rows_usable": self.usable,
            "rows_excluded_fit_events": self.excluded_fit_events,
            "rows_asked": self.asked,
            "rows_invalid": sum(self.invalid.values()),
            "stopped_early": self.stopped or None,
            "invalid_errors": dict(self.invalid.most_common()),
            "skipped": dict(sorted(self.skipped.items())),
            "categories": {name: flat(group) for name, group in self.by_category().items()},
        }


def _s(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def evaluate(
    forecaster: Forecaster,
    questions: QuestionSet,
    *,
    limit: int | None = None,
    progress: bool = False,
) -> Evaluation:
    """Ask ``forecaster`` about every usable row (at most ``limit``) and collect the scores.

    Rows of events the forecaster was fitted on (its ``fit_events`` attribute, if any) are
    left out, so no forecaster is scored on its own training rows. Invalid answers are
    counted by error and left out of both the forecaster's and the market's metrics, so the
    two are always compared on the same rows. An answer flagged ``budget_exhausted`` ends the
    run early (``Evaluation.stopped``): the rows scored so far are still reported.
    """
    fit_events = frozenset(getattr(forecaster, "fit_events", ()) or ())
    usable = sorted(questions.usable(), key=_ordering_key)
    candidates = [row for row in usable if row.event_ticker not in fit_events]
    excluded = len(usable) - len(candidates)
    if limit is not None:
        candidates = candidates[:limit]
    scored: list[Scored] = []
    invalid: Counter[str] = Counter()
    stopped = ""
    bar = tqdm(candidates, desc=f"forecasting ({forecaster.name})", unit="q",
               disable=None if progress else True)  # fmt: skip
    for row in bar:
        result = ask(forecaster, row)
        probability = result.probability
        if not result.valid:
            invalid[result.error or "invalid forecast"] += 1
            if result.budget_exhausted:
                stopped = "the AI budget is exhausted"  # asking on would only repeat it
                break
            continue
        if not isinstance(probability, Decimal) or not (0 <= probability <= 1):
            invalid["probability is not a Decimal in [0, 1]"] += 1
            continue
        scored.append(Scored(row, probability))
    return Evaluation(
        forecaster=forecaster.name,
        rows_read=len(questions.rows),
        usable=len(usable),
        excluded_fit_events=excluded,
        asked=len(candidates),
        scored=scored,
        invalid=invalid,
        skipped=questions.skipped(),
        stopped=stopped,
    )
