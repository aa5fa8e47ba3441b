"""Load the recorded Kalshi data shipped in ``markets/data/kalshi/`` (its SOURCE.md explains it).

``recorded_markets_load(data_dir=...)`` reads and validates every file first, in pure Python,
then writes series, events, markets and snapshots in one transaction with bulk operations.
A malformed or missing file raises :class:`RecordedDataError` naming the file, the row and the
column/value, before anything is written.

Layout of ``data_dir`` (all of it required; ``market_logs/`` may hold any number of files,
including none):

- ``jetpackjules-kalshi-trader/KXHIGHNY_candles_5m.csv``: 5-minute trade candles;
- ``jetpackjules-kalshi-trader/kalshi_settlement_vs_actual_weather.csv``: the candles' results;
- ``jetpackjules-kalshi-trader/market_logs/market_data_<EVENT>.csv``: top-of-book logs;
- ``juliettemorrell-kalshi-test/kalshi_markets.csv``: first/last trade and result per market.

Row numbers in messages count the header as row 1, so they match a text editor's line numbers.

What each market gets (all markets are daily-high-temperature markets, one event per city-day):

- ``title`` "Highest temperature in NYC on Aug 19, 2025"; ``yes_sub_title`` from the ticker:
  ``B79.5`` is "79° to 80°" (strike_type ``between``, floor 79, cap 80), a lower tail ``T75``
  is "74° or below" (``less``, cap 75), an upper tail ``T82`` is "83° or above" (``greater``,
  floor 82). Whether a ``T`` ticker is the lower or the upper tail is not in the ticker: it is
  the lower tail when its strike is below every bracket of its event, the upper tail when above
  (or, with no bracket recorded, the lower/higher of the event's two tails).
- ``open_time``: 10:00 America/New_York on the day before the event date. SOURCE.md says a
  market opens "about 10:00 ET on the day before", and no recorded trade or quote is earlier.
- ``close_time``: the end of the event day in the city's *local standard time* (the NWS
  climate day), i.e. midnight UTC-5 for NYC and Miami, UTC-6 for Chicago and Austin, UTC-8 for
  Los Angeles. In winter that is midnight local time; under daylight saving it is 01:00 local.
  This is an assumption fitted to the data: juliettemorrell's last trades run until 00:59
  local daylight time in every city (NYC 00:59 EDT, Los Angeles 00:59 PDT = 03:59 ET), so
  "midnight ET" would put 743 of its 906 last trades after the close. No recorded trade or
  non-empty quote is later than this close (only the empty books logged after settlement).
- ``result``/``settlement_value`` (1 or 0), ``status`` ``finalized`` when a result is known,
  otherwise ``closed``. Results come only from the data, never guessed (SOURCE.md's rules):
  the settlement csv for the candles, the final quote for market_logs, the ``result`` column for
  juliettemorrell. ``settled_time`` stays NULL (not recorded).
- Fees: the recorded data has no fee fields (no series ``fee_type``/``fee_multiplier``, no
  event override, no waiver), so every recorded series is stored with Kalshi's default
  schedule, ``quadratic`` × 1 (``RECORDED_FEES``), and events without an override. That is an
  assumption: the real KXHIGH series may have been charged differently.
- The market row's own quote fields stay NULL: quotes over time live in ``MarketSnapshot`` so
  that a replay reading "as of t" never sees a later price.

Snapshots (``source="recorded"``; every stored price strictly inside (0, 1), else NULL):

- candles: one per candle at the bucket END (start + 5 minutes), ``last_price`` = close/100.
  bid/ask are NULL (the file has trades only) and ``volume`` is NULL (``count`` is a number of
  trades, not contracts).
- market_logs: timestamps are US/Pacific wall time (America/Los_Angeles; an ambiguous time in
  the autumn fold is read as the first occurrence) converted to UTC. ``yes_bid`` =
  best_yes_bid/100, ``no_bid`` = best_no_bid/100, ``yes_ask`` = 1 − no_bid, ``no_ask`` =
  1 − yes_bid; a bid of 0 or 100 means no quote, so it and the ask derived from it are NULL.
  Several rows of one market at one timestamp: the last row wins. Rows are kept as recorded
  (SOURCE.md notes stale first rows and two crossed rows).
- juliettemorrell: one at ``open_ts`` (last_price = open_yes) and one at ``close_ts``
  (last_price = close_yes) when present; a price of exactly 0 or 1 is stored as NULL.

Loading is idempotent: series, events and markets are compared field by field and only
changed rows are updated; existing (market, ts) snapshots are left alone (snapshots are
append-only), so a second run reports nothing added and nothing updated.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.db import models, transaction
from django.utils import timezone as dj_timezone
from tqdm import tqdm

from markets.bulk import chunks, ids_by_key
from markets.fees import DEFAULT_FEES
from markets.models import Event, Market, MarketSnapshot, Series, Source
from markets.money import ONE, ZERO, MoneyError, parse_price

CATEGORY = "Climate and Weather"
JETPACK_DIR = "jetpackjules-kalshi-trader"
CANDLES_FILE = f"{JETPACK_DIR}/KXHIGHNY_candles_5m.csv"
SETTLEMENT_FILE = f"{JETPACK_DIR}/kalshi_settlement_vs_actual_weather.csv"
MARKET_LOGS_DIR = f"{JETPACK_DIR}/market_logs"
JULIETTE_FILE = "juliettemorrell-kalshi-test/kalshi_markets.csv"

EASTERN = ZoneInfo("America/New_York")
PACIFIC = ZoneInfo("America/Los_Angeles")
OPEN_TIME_ET = time(10, 0)
CANDLE_WIDTH = timedelta(minutes=5)
BATCH_SIZE = 2000

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_TICKER_RE = re.compile(
    r"^(?P<series>KXHIGH[A-Z]+)-(?P<yy>\d{2})(?P<mon>[A-Z]{3})(?P<dd>\d{2})"
    r"-(?P<kind>[BT])(?P<strike>-?\d+(?:\.\d+)?)$"
)
_WINNER_RE = re.compile(r"^(-?\d+)° to (-?\d+)°$")
_LOG_NAME_RE = re.compile(r"^market_data_(?P<event>[A-Z0-9-]+)\.csv$")


@dataclass(frozen=True)
class City:
    code: str  # juliettemorrell's `city` column
    name: str  # as it appears in titles
    standard_utc_offset: int  # hours; the NWS climate day runs in local standard time
    station: str = ""  # settlement station, when SOURCE.md names it


SERIES: dict[str, City] = {
    "KXHIGHNY": City("NY", "NYC", -5, "Central Park, New York"),
    "KXHIGHCHI": City("CHI", "Chicago", -6),
    "KXHIGHMIA": City("MIA", "Miami", -5),
    "KXHIGHAUS": City("AUS", "Austin", -6),
    "KXHIGHLAX": City("LAX", "Los Angeles", -8),
}


class RecordedDataError(ValueError):
    """A recorded-data file is missing or malformed; the message names the file and row."""


class _CellError(ValueError):
    """A bad value in one row; the caller adds the file and row number."""


# --- Parsed data (no Django) ----------------------------------------------------------------


class Quote(NamedTuple):
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    no_bid: Decimal | None = None
    no_ask: Decimal | None = None
    last_price: Decimal | None = None


@dataclass
class MarketSpec:
    ticker: str
    series: str
    event_ticker: str
    event_date: date
    kind: str  # "B" bracket or "T" tail
    strike: Decimal
    origin: str  # "file, row N" where first seen, for error messages
    strike_type: str = ""  # between / less / greater; "" while a tail's side is unknown
    result: str = ""
    result_origin: str = ""

    def set_strike_type(self, strike_type: str, origin: str) -> None:
        if self.strike_type and self.strike_type != strike_type:
            raise RecordedDataError(
                f"{origin}: {self.ticker} is {strike_type!r} here but {self.strike_type!r} "
                f"at {self.origin}"
            )
        self.strike_type = strike_type

    def set_result(self, result: str, origin: str) -> None:
        if self.result and self.result != result:
            raise RecordedDataError(
                f"{origin}: result {result!r} for {self.ticker} contradicts {self.result!r} "
                f"from {self.result_origin}"
            )
        self.result, self.result_origin = result, origin


@dataclass
class RecordedData:
    markets: dict[str, MarketSpec] = field(default_factory=dict)
    snapshots: dict[tuple[str, datetime], Quote] = field(default_factory=dict)

    def market(self, ticker: str, origin: str) -> MarketSpec:
        spec = self.markets.get(ticker)
        if spec is None:
            spec = self.markets[ticker] = _parse_ticker(ticker, origin)
        return spec


# --- Cell parsers ---------------------------------------------------------------------------


MAX_STRIKE = Decimal(1000)  # °F: far beyond any daily high


def _parse_ticker(ticker: str, origin: str) -> MarketSpec:
    match = _TICKER_RE.match(ticker)
    if not match:
        raise _CellError(f"{ticker!r} is not a daily-high ticker like KXHIGHNY-25AUG19-B79.5")
    if match["series"] not in SERIES:
        raise _CellError(f"{ticker!r}: unknown series {match['series']!r}")
    if match["mon"] not in _MONTHS:
        raise _CellError(f"{ticker!r}: unknown month {match['mon']!r}")
    try:
        event_date = date(
            2000 + int(match["yy"]), _MONTHS.index(match["mon"]) + 1, int(match["dd"])
        )
    except ValueError:
        raise _CellError(f"{ticker!r}: not a real date") from None
    strike = Decimal(match["strike"])
    if abs(strike) > MAX_STRIKE:  # a temperature; a longer number breaks the arithmetic below
        raise _CellError(f"{ticker[:80]!r}: the strike is out of range (at most {MAX_STRIKE})")
    kind = match["kind"]
    # A bracket B79.5 covers the whole degrees 79 and 80; a tail T75 has a whole-degree strike.
    if kind == "B" and strike % 1 != Decimal("0.5") and strike % 1 != Decimal("-0.5"):
        raise _CellError(f"{ticker!r}: a bracket strike ends in .5")
    if kind == "T" and strike != strike.to_integral_value():
        raise _CellError(f"{ticker!r}: a tail strike is a whole number")
    return MarketSpec(
        ticker=ticker,
        series=match["series"],
        event_ticker=ticker.rsplit("-", 1)[0],
        event_date=event_date,
        kind=kind,
        strike=strike,
        origin=origin,
        strike_type="between" if kind == "B" else "",
    )


def _decimal(value: str, column: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise _CellError(f"column {column!r}: {value!r} is not a number") from None
    if not result.is_finite():
        raise _CellError(f"column {column!r}: {value!r} is not a finite number")
    return result


@lru_cache(maxsize=1024)
def _cents_to_price(value: str, column: str) -> Decimal:
    """``"79"`` or ``"79.0"`` cents → ``Decimal("0.79")``, exact; 0 and 100 included."""
    try:
        return parse_price(_decimal(value, column) / 100, f"column {column!r}: {value!r} cents")
    except MoneyError as exc:
        raise _CellError(str(exc)) from None


def _dollar_price(value: str, column: str) -> Decimal:
    try:
        return parse_price(value, f"column {column!r}")
    except MoneyError as exc:
        raise _CellError(str(exc)) from None


def _inside(price: Decimal | None) -> Decimal | None:
    """A price of 0 or 1 (or none) is no quote: stored prices are strictly inside (0, 1)."""
    return price if price is not None and ZERO < price < ONE else None


def _timestamp(value: str, column: str, *, naive_zone: ZoneInfo | None = None) -> datetime:
    """Parse an ISO timestamp to UTC. ``naive_zone`` given: the value must carry no zone."""
    try:
        if len(value) <= 10:  # a bare date is not a timestamp
            raise ValueError
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _CellError(f"column {column!r}: {value!r} is not an ISO timestamp") from None
    if naive_zone is not None:
        if parsed.tzinfo is not None:
            raise _CellError(f"column {column!r}: {value!r} has a zone; expected local time")
        parsed = parsed.replace(tzinfo=naive_zone)
    elif parsed.tzinfo is None:
        raise _CellError(f"column {column!r}: {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _iso_date(value: str, column: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _CellError(f"column {column!r}: {value!r} is not a YYYY-MM-DD date") from None


# --- File readers ---------------------------------------------------------------------------


def _rows(path: Path, columns: Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield ``("<path>, row N", row)``; a missing file, header or column raises."""
    if not path.is_file():
        raise RecordedDataError(f"{path}: missing file")
    line = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise RecordedDataError(f"{path}, row 1: empty file, expected a header")
            for column in columns:
                if column not in header:
                    raise RecordedDataError(f"{path}, row 1: missing column {column!r}")
            for row in reader:
                line = reader.line_num
                origin = f"{path}, row {line}"
                # DictReader files surplus fields under the key None and fills missing ones
                # with None.
                if None in row or None in row.values():
                    extra = len(row.pop(None, None) or [])  # type: ignore[call-overload]
                    found = sum(1 for v in row.values() if v is not None) + extra
                    raise RecordedDataError(f"{origin}: {found} fields, expected {len(header)}")
                yield origin, row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RecordedDataError(f"{path}, after row {line}: unreadable ({exc})") from None


def _located(origin: str, exc: Exception) -> RecordedDataError:
    return RecordedDataError(f"{origin}: {exc}")


def _read_candles(path: Path, data: RecordedData) -> set[str]:
    """Candles → trade snapshots at the bucket end. Returns the event tickers seen."""
    events: set[str] = set()
    columns = ("market_id", "ticker", "start", "open", "high", "low", "close", "count")
    for origin, row in _rows(path, columns):
        try:
            ticker = row["ticker"]
            if row["market_id"] != ticker:
                raise _CellError(f"column 'market_id': {row['market_id']!r} differs from ticker")
            spec = data.market(ticker, origin)
            end = _timestamp(row["start"], "start") + CANDLE_WIDTH
            for column in ("open", "high", "low"):
                _cents_to_price(row[column], column)
            close = _cents_to_price(row["close"], "close")
            count = _decimal(row["count"], "count")
            if count < 0 or count != count.to_integral_value():
                raise _CellError(f"column 'count': {row['count']!r} is not a trade count")
        except (_CellError, MoneyError) as exc:
            raise _located(origin, exc) from None
        events.add(spec.event_ticker)
        data.snapshots[(ticker, end)] = Quote(last_price=_inside(close))
    return events


def _read_settlements(path: Path, data: RecordedData, candle_events: set[str]) -> None:
    """The candles' results: the listed bracket of a listed date is yes, the rest no.

    A date whose event has no candles is skipped (no market to settle); a winner with no candles
    is still created, since Kalshi reported it.
    """
    seen: dict[date, str] = {}
    for origin, row in _rows(path, ("date", "kalshi_settlement_temp", "winning_market")):
        try:
            day = _iso_date(row["date"], "date")
            match = _WINNER_RE.match(row["winning_market"])
            if not match or int(match[2]) != int(match[1]) + 1:
                raise _CellError(
                    f"column 'winning_market': {row['winning_market']!r} is not like '79° to 80°'"
                )
            midpoint = Decimal(match[1]) + Decimal("0.5")
            temp = _decimal(row["kalshi_settlement_temp"], "kalshi_settlement_temp")
            if temp != midpoint:
                raise _CellError(
                    f"column 'kalshi_settlement_temp': {row['kalshi_settlement_temp']!r} is not "
                    f"the midpoint of {row['winning_market']!r}"
                )
            if day in seen:
                raise _CellError(f"column 'date': {row['date']!r} is also at {seen[day]}")
            seen[day] = origin
            event_ticker = f"KXHIGHNY-{day:%y}{_MONTHS[day.month - 1]}{day:%d}"
            if event_ticker not in candle_events:
                continue
            winner = data.market(f"{event_ticker}-B{midpoint}", origin)
        except (_CellError, MoneyError) as exc:
            raise _located(origin, exc) from None
        for spec in data.markets.values():
            if spec.event_ticker == event_ticker:
                spec.set_result("yes" if spec is winner else "no", origin)


def _read_market_log(path: Path, data: RecordedData) -> None:
    """One event's top-of-book log; the result is inferred from each market's final quote."""
    name = _LOG_NAME_RE.match(path.name)
    if not name:
        raise RecordedDataError(f"{path}: file name is not market_data_<EVENT>.csv")
    event_ticker = name["event"]
    final: dict[str, tuple[Decimal, str]] = {}  # ticker → (yes bid, origin) of last non-empty
    columns = ("timestamp", "market_ticker", "best_yes_bid", "best_no_bid")
    implied = ("implied_no_ask", "implied_yes_ask")
    for origin, row in _rows(path, (*columns, *implied)):
        try:
            ticker = row["market_ticker"]
            spec = data.market(ticker, origin)
            if spec.event_ticker != event_ticker:
                raise _CellError(f"column 'market_ticker': {ticker!r} is not in {event_ticker}")
            ts = _timestamp(row["timestamp"], "timestamp", naive_zone=PACIFIC)
            yes_bid = _cents_to_price(row["best_yes_bid"], "best_yes_bid")
            no_bid = _cents_to_price(row["best_no_bid"], "best_no_bid")
            if _cents_to_price(row["implied_no_ask"], "implied_no_ask") != ONE - yes_bid:
                raise _CellError(
                    f"column 'implied_no_ask': {row['implied_no_ask']!r} ≠ 100 − yes bid"
                )
            if _cents_to_price(row["implied_yes_ask"], "implied_yes_ask") != ONE - no_bid:
                raise _CellError(
                    f"column 'implied_yes_ask': {row['implied_yes_ask']!r} ≠ 100 − no bid"
                )
        except (_CellError, MoneyError) as exc:
            raise _located(origin, exc) from None
        yes_bid_q, no_bid_q = _inside(yes_bid), _inside(no_bid)
        data.snapshots[(ticker, ts)] = Quote(
            yes_bid=yes_bid_q,
            yes_ask=ONE - no_bid_q if no_bid_q is not None else None,
            no_bid=no_bid_q,
            no_ask=ONE - yes_bid_q if yes_bid_q is not None else None,
        )
        if yes_bid or no_bid:  # an all-zero row is the empty book after settlement
            final[ticker] = (yes_bid, origin)

    # SOURCE.md: exactly one market ends with yes bid 99, the others at ≤ 1. Anything else is
    # left unresolved rather than guessed.
    yes = [t for t, (bid, _) in final.items() if bid >= Decimal("0.99")]
    no = [t for t, (bid, _) in final.items() if bid <= Decimal("0.01")]
    event_markets = [t for t, s in data.markets.items() if s.event_ticker == event_ticker]
    if len(yes) == 1 and len(yes) + len(no) == len(event_markets):
        for ticker in event_markets:
            data.markets[ticker].set_result(
                "yes" if ticker in yes else "no", f"{final[ticker][1]} (final quote)"
            )


def _read_juliette(path: Path, data: RecordedData) -> None:
    columns = (
        "city", "settle_date", "event_ticker", "market_ticker", "lower", "upper", "side",
        "open_yes", "open_ts", "close_yes", "close_ts", "result",
    )  # fmt: skip
    sides = {"bracket": "between", "tail_lo": "less", "tail_hi": "greater"}
    for origin, row in _rows(path, columns):
        try:
            spec = data.market(row["market_ticker"], origin)
            if row["event_ticker"] != spec.event_ticker:
                raise _CellError(f"column 'event_ticker': {row['event_ticker']!r} ≠ ticker's event")
            if _iso_date(row["settle_date"], "settle_date") != spec.event_date:
                raise _CellError(f"column 'settle_date': {row['settle_date']!r} ≠ ticker's date")
            if row["city"] != SERIES[spec.series].code:
                raise _CellError(f"column 'city': {row['city']!r} ≠ ticker's {spec.series}")
            side = sides.get(row["side"])
            if side is None or (side == "between") != (spec.kind == "B"):
                raise _CellError(f"column 'side': {row['side']!r} does not fit {spec.ticker}")
            lower, upper = _decimal(row["lower"], "lower"), _decimal(row["upper"], "upper")
            expected = {
                "between": (spec.strike, spec.strike + 1),
                "less": (Decimal(-100), spec.strike),
                "greater": (spec.strike, Decimal(200)),
            }[side]
            if (lower, upper) != expected:
                raise _CellError(f"columns 'lower'/'upper': {row['lower']}/{row['upper']} ≠ {side}")
            points = []
            for price_col, ts_col in (("open_yes", "open_ts"), ("close_yes", "close_ts")):
                if not row[price_col] and not row[ts_col]:
                    continue
                points.append(
                    (_timestamp(row[ts_col], ts_col), _dollar_price(row[price_col], price_col))
                )
            if row["result"] not in ("yes", "no", ""):
                raise _CellError(f"column 'result': {row['result']!r} is not yes/no")
            spec.set_strike_type(side, origin)
        except (_CellError, MoneyError) as exc:
            raise _located(origin, exc) from None
        for ts, price in points:
            data.snapshots[(spec.ticker, ts)] = Quote(last_price=_inside(price))
        if row["result"]:
            spec.set_result(row["result"], origin)


def _resolve_tails(data: RecordedData) -> None:
    """Tell lower from upper tails where no file said: compare with the event's brackets."""
    by_event: dict[str, list[MarketSpec]] = defaultdict(list)
    for spec in data.markets.values():
        by_event[spec.event_ticker].append(spec)
    for specs in by_event.values():
        brackets = [s.strike for s in specs if s.kind == "B"]
        tails = sorted(s.strike for s in specs if s.kind == "T")
        for spec in specs:
            if spec.strike_type:
                continue
            if brackets and spec.strike < min(brackets):
                spec.strike_type = "less"
            elif brackets and spec.strike > max(brackets):
                spec.strike_type = "greater"
            elif not brackets and len(tails) == 2 and tails[0] != tails[1]:
                spec.strike_type = "less" if spec.strike == tails[0] else "greater"
            else:
                raise RecordedDataError(
                    f"{spec.origin}: cannot tell whether {spec.ticker} is the lower or the "
                    "upper tail of its event"
                )


def recorded_data_parse(*, data_dir: Path, progress: bool = False) -> RecordedData:
    """Read and validate every file under ``data_dir``; raises RecordedDataError, writes nothing."""
    if not data_dir.is_dir():
        raise RecordedDataError(f"{data_dir}: missing data folder")
    logs_dir = data_dir / MARKET_LOGS_DIR
    if not logs_dir.is_dir():
        raise RecordedDataError(f"{logs_dir}: missing folder")
    logs = sorted(logs_dir.glob("market_data_*.csv"))
    data = RecordedData()
    with tqdm(total=3 + len(logs), desc="reading", unit="file", disable=_disable(progress)) as bar:
        candle_events = _read_candles(data_dir / CANDLES_FILE, data)
        bar.update()
        _read_settlements(data_dir / SETTLEMENT_FILE, data, candle_events)
        bar.update()
        for path in logs:
            _read_market_log(path, data)
            bar.update()
        _read_juliette(data_dir / JULIETTE_FILE, data)
        bar.update()
    _resolve_tails(data)
    return data


# --- Titles and times -----------------------------------------------------------------------


def _day_text(day: date) -> str:
    return f"{_MONTHS[day.month - 1].title()} {day.day}, {day.year}"


def _degrees(value: Decimal) -> str:
    return f"{int(value)}°"


def yes_sub_title(spec: MarketSpec) -> str:
    if spec.strike_type == "between":
        return (
            f"{_degrees(spec.strike - Decimal('0.5'))} to {_degrees(spec.strike + Decimal('0.5'))}"
        )
    if spec.strike_type == "less":
        return f"{_degrees(spec.strike - 1)} or below"
    return f"{_degrees(spec.strike + 1)} or above"


def _strikes(spec: MarketSpec) -> tuple[Decimal | None, Decimal | None]:
    """(floor_strike, cap_strike) as Kalshi sets them for these markets."""
    if spec.strike_type == "between":
        return spec.strike - Decimal("0.5"), spec.strike + Decimal("0.5")
    if spec.strike_type == "less":
        return None, spec.strike
    return spec.strike, None


def _rules(spec: MarketSpec) -> str:
    city = SERIES[spec.series]
    where = f"in {city.station}" if city.station else f"for {city.name}"
    floor, cap = _strikes(spec)
    if spec.strike_type == "between":
        condition = f"between {_degrees(floor)} and {_degrees(cap)} inclusive"  # type: ignore[arg-type]
    elif spec.strike_type == "less":
        condition = f"below {_degrees(cap)}"  # type: ignore[arg-type]
    else:
        condition = f"above {_degrees(floor)}"  # type: ignore[arg-type]
    return (
        f"If the highest temperature recorded {where} on {_day_text(spec.event_date)}, per the "
        f"National Weather Service's Daily Climate Report, is {condition}, the market resolves "
        "to Yes; otherwise No."
    )


def open_time(event_date: date) -> datetime:
    return datetime.combine(event_date - timedelta(days=1), OPEN_TIME_ET, EASTERN).astimezone(UTC)


def close_time(series: str, event_date: date) -> datetime:
    standard = timezone(timedelta(hours=SERIES[series].standard_utc_offset))
    return datetime.combine(event_date + timedelta(days=1), time(0), standard).astimezone(UTC)


def _title(spec: MarketSpec) -> str:
    return f"Highest temperature in {SERIES[spec.series].name} on {_day_text(spec.event_date)}"


# --- Writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    total: int
    added: int
    updated: int

    def text(self, noun: str) -> str:
        return f"{self.total} {noun} (+{self.added} added, ~{self.updated} updated)"


@dataclass(frozen=True)
class LoadSummary:
    series: Counts
    events: Counts
    markets: Counts
    snapshots: int
    snapshots_added: int
    results_yes: int
    results_no: int

    def summary(self) -> str:
        return (
            f"Loaded {self.series.text('series')}, {self.events.text('events')}, "
            f"{self.markets.text('markets')}, "
            f"{self.snapshots} snapshots (+{self.snapshots_added} added), "
            f"{self.results_yes + self.results_no} results ({self.results_yes} yes, "
            f"{self.results_no} no)"
        )


def _disable(progress: bool) -> bool | None:
    return None if progress else True  # None: tqdm shows the bar only on a terminal


def _upsert(
    model: type[models.Model], key: str, desired: dict[str, dict[str, Any]]
) -> tuple[dict[str, int], Counts]:
    """Create missing rows and update changed ones in bulk; return {key: pk} and the counts."""
    keys = list(desired)
    existing: dict[str, Any] = {}
    for chunk in chunks(keys):
        for obj in model._default_manager.filter(**{f"{key}__in": chunk}):
            existing[getattr(obj, key)] = obj
    now = dj_timezone.now()
    to_create, to_update = [], []
    for value, fields in desired.items():
        obj = existing.get(value)
        if obj is None:
            to_create.append(model(**{key: value}, **fields, created_at=now, updated_at=now))
        elif any(getattr(obj, name) != new for name, new in fields.items()):
            for name, new in fields.items():
                setattr(obj, name, new)
            obj.updated_at = now
            to_update.append(obj)
    field_names = list(next(iter(desired.values()), {}))
    model._default_manager.bulk_create(to_create, batch_size=BATCH_SIZE)
    if to_update:
        model._default_manager.bulk_update(
            to_update, [*field_names, "updated_at"], batch_size=BATCH_SIZE
        )
    return ids_by_key(model, key, keys), Counts(len(desired), len(to_create), len(to_update))


# Recorded data carries no fees: the default quadratic schedule (module doc).
RECORDED_FEES = DEFAULT_FEES


def _write(data: RecordedData, progress: bool) -> LoadSummary:
    specs = sorted(data.markets.values(), key=lambda s: s.ticker)
    series_ids, series_counts = _upsert(
        Series,
        "ticker",
        {
            s: {
                "title": f"Highest temperature in {SERIES[s].name}",
                "category": CATEGORY,
                "frequency": "daily",
                "fee_type": RECORDED_FEES.fee_type,
                "fee_multiplier": RECORDED_FEES.multiplier,
            }
            for s in sorted({spec.series for spec in specs})
        },
    )
    events: dict[str, dict[str, Any]] = {}
    for spec in specs:
        events[spec.event_ticker] = {
            "series_id": series_ids[spec.series],
            "title": _title(spec),
            "sub_title": f"On {_day_text(spec.event_date)}",
            "category": CATEGORY,
            "mutually_exclusive": True,
            "strike_date": close_time(spec.series, spec.event_date),
            "source": Source.RECORDED,
        }
    event_ids, event_counts = _upsert(Event, "event_ticker", events)
    markets: dict[str, dict[str, Any]] = {}
    for spec in specs:
        floor, cap = _strikes(spec)
        sub_title = yes_sub_title(spec)
        markets[spec.ticker] = {
            "event_id": event_ids[spec.event_ticker],
            "market_type": Market.MarketType.BINARY,
            "title": _title(spec),
            "yes_sub_title": sub_title,
            "no_sub_title": sub_title,
            "category": CATEGORY,
            "status": Market.Status.FINALIZED if spec.result else Market.Status.CLOSED,
            "open_time": open_time(spec.event_date),
            "close_time": close_time(spec.series, spec.event_date),
            "rules_primary": _rules(spec),
            "strike_type": spec.strike_type,
            "floor_strike": floor,
            "cap_strike": cap,
            "result": spec.result,
            "settlement_value": {"yes": ONE, "no": ZERO}.get(spec.result),
            "source": Source.RECORDED,
        }
    market_ids, market_counts = _upsert(Market, "ticker", markets)

    # Snapshots are append-only: add the (market, ts) pairs not stored yet.
    existing: set[tuple[int, datetime]] = set()
    for chunk in chunks(list(market_ids.values())):
        existing.update(
            MarketSnapshot.objects.filter(market_id__in=chunk).values_list("market_id", "ts")
        )
    new = [
        MarketSnapshot(
            market_id=market_ids[ticker], ts=ts, source=Source.RECORDED, **quote._asdict()
        )
        for (ticker, ts), quote in data.snapshots.items()
        if (market_ids[ticker], ts) not in existing
    ]
    with tqdm(total=len(new), desc="snapshots", unit="row", disable=_disable(progress)) as bar:
        for batch in chunks(new, BATCH_SIZE):
            MarketSnapshot.objects.bulk_create(batch, ignore_conflicts=True)
            bar.update(len(batch))
    results = [spec.result for spec in specs]
    return LoadSummary(
        series=series_counts,
        events=event_counts,
        markets=market_counts,
        snapshots=len(data.snapshots),
        snapshots_added=len(new),
        results_yes=results.count("yes"),
        results_no=results.count("no"),
    )


def recorded_markets_load(*, data_dir: Path, progress: bool = False) -> LoadSummary:
    """Parse and validate all of ``data_dir``, then write it in one transaction.

    Raises RecordedDataError (naming file, row and column/value) before anything is written
    when a file is missing or malformed; a database error rolls the whole load back.
    """
    data = recorded_data_parse(data_dir=data_dir, progress=progress)
    with transaction.atomic():
        return _write(data, progress)
