"""Market data services: ``market_sync`` copies Kalshi's markets into our tables.

``market_sync`` pages through ``GET /markets`` (one status filter), then, in one transaction and
with set-based queries only (a bounded number of queries per 500-1000 markets, none per row):

- creates the ``Series`` (ticker = the event ticker's prefix before the first ``-``) and
  ``Event`` rows it has never seen, with empty titles (a later event sync may fill them);
- compares every market with its stored row and upserts only the new and changed ones
  (``bulk_create(update_conflicts=True)`` on the ticker); ``category`` is never touched;
- appends one ``MarketSnapshot`` per market at the sync time ``now`` (unique per market and ts:
  running again with the same ``now`` adds nothing).

A second sync of unchanged data updates no market (only new snapshots, at the new time).
``market_store`` is that transaction alone, for markets already fetched (reconcile stores a
market it first meets in a fill that way).

Fees (markets.fees). Each market's ``fee_waiver_expiration_time`` is a synced field. After the
markets are stored, the fee structure of every series they belong to whose fees are unknown or
older than ``FEES_MAX_AGE`` is fetched: ``GET /series/{ticker}`` (``fee_type``,
``fee_multiplier``) and ``GET /events?series_ticker=…&status=open`` (each open event's
``fee_type_override`` / ``fee_multiplier_override``; an event listed without them has its
override cleared). So a first sync of all open markets costs two extra requests (or more
pages) per series, later syncs almost none. A series whose reply cannot be read (an unknown
fee type, a 404, a network failure) is logged, counted in ``fee_errors`` and tried again on the
next sync; its previous fees stay, and a series never read prices as the default quadratic.

Per record: a market that cannot be read (``KalshiParseError`` from the client), or whose
values our columns cannot hold (a double beyond ``DecimalField(15, 4)``, an over-long ticker, a
NUL byte, a negative volume...), is skipped before anything is written: logged with its ticker
and field, counted in ``SyncSummary.skipped`` and listed in ``problems``; the rest is synced.
Display texts (titles and subtitles) longer than their column are shortened, not refused:
nothing is decided on them. A failure of the whole reply (bad page, HTTP error) still raises,
and the transaction means a sync writes all of its accepted markets or nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from tqdm import tqdm

from markets import kalshi
from markets.bulk import chunks, copy_rows, ids_by_key, is_postgresql
from markets.models import Event, Market, MarketSnapshot, Series, Source
from markets.money import ONE, ZERO

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
FEES_MAX_AGE = timedelta(hours=6)  # series fees older than this are fetched again

# Fields copied from Kalshi and compared to decide whether a stored market changed.
SYNCED_FIELDS = (
    "event_id",
    "market_type",
    "title",
    "subtitle",
    "yes_sub_title",
    "no_sub_title",
    "status",
    "open_time",
    "close_time",
    "latest_expiration_time",
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "yes_bid_size",
    "yes_ask_size",
    "volume",
    "volume_24h",
    "open_interest",
    "price_level_structure",
    "price_ranges",
    "rules_primary",
    "rules_secondary",
    "strike_type",
    "floor_strike",
    "cap_strike",
    "can_close_early",
    "result",
    "settlement_value",
    "settled_time",
    "fee_waiver_expiration_time",
)
# Written on upsert (the ForeignKey is written through its attname).
_UPSERT_FIELDS = [name.removesuffix("_id") for name in SYNCED_FIELDS] + ["source", "updated_at"]


@dataclass(frozen=True)
class SyncSummary:
    ts: datetime
    seen: int
    added: int
    updated: int
    unchanged: int
    snapshotted: int
    series_added: int
    events_added: int
    seconds: float
    fees_refreshed: int = 0
    fee_errors: int = 0
    skipped: int = 0  # markets left out: unreadable, or not storable (see ``problems``)
    problems: tuple[str, ...] = ()  # one "<Record>.<field>: <problem>" per skipped market

    def summary(self) -> str:
        failed = f", {self.fee_errors} failed" if self.fee_errors else ""
        text = (
            f"Synced {self.seen} markets at {self.ts:%Y-%m-%d %H:%M:%S}Z: {self.added} added, "
            f"{self.updated} updated, {self.unchanged} unchanged, {self.snapshotted} snapshots; "
            f"{self.series_added} new series, {self.events_added} new events; "
            f"fees of {self.fees_refreshed} series read{failed} "
            f"({self.seconds:.1f}s)"
        )
        if self.skipped:
            first = self.problems[0] if self.problems else ""
            more = f" and {self.skipped - 1} more" if self.skipped > 1 else ""
            text += f"; {self.skipped} skipped ({first[:200]}{more})"
        return text


# --- Per-record refusal ---------------------------------------------------------------------


class Refused(Exception):
    """One record that cannot be stored: ``field`` names the value, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def check_storable(model: type[models.Model], values: Mapping[str, Any]) -> None:
    """Raise ``Refused`` naming the first value of ``values`` that ``model``'s column cannot
    hold as is: text over ``max_length`` or with a NUL byte (PostgreSQL refuses it), a number
    with more digits than its ``DecimalField`` or outside its integer range. Values are not
    changed: what does not fit is refused, never cut or rounded."""
    for name, value in values.items():
        check_value(model._meta.get_field(name), name, value)


def check_value(field: models.Field, name: str, value: Any) -> None:
    """Raise ``Refused`` (naming ``name``) if ``field``'s column cannot hold ``value`` as is."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise Refused(name, problem)
    if isinstance(field, models.DecimalField) and isinstance(value, Decimal):
        _check_decimal(field, name, value)
        return
    try:
        field.run_validators(value)
    except ValidationError as exc:
        if isinstance(value, str) and field.max_length and len(value) > field.max_length:
            raise Refused(
                name, f"is {len(value)} characters long; the column holds {field.max_length}"
            ) from None
        raise Refused(name, "; ".join(exc.messages)[:200]) from None


def _check_decimal(field: models.DecimalField, name: str, value: Decimal) -> None:
    """The column stores ``decimal_places`` places and ``max_digits`` digits: a value with more
    decimals would be rounded by the database, one with more digits refused or (SQLite) made
    inexact."""
    shown = str(value)[:40]
    if not value.is_finite():
        raise Refused(name, f"{shown} is not a finite number")
    places, whole = field.decimal_places, field.max_digits - field.decimal_places
    try:
        exact = value.quantize(Decimal(1).scaleb(-places)) == value
    except ArithmeticError:  # more digits than the context's precision
        exact = False
    if value and value.adjusted() >= whole:
        raise Refused(
            name,
            f"{shown} does not fit the column (at most {whole} digits before the point)",
        )
    if not exact:
        raise Refused(name, f"{shown} has more than {places} decimals (the column's places)")


def _series_ticker(event_ticker: str) -> str:
    return event_ticker.split("-", 1)[0]


def _price(value: Decimal | None) -> Decimal | None:
    """A stored quote is NULL or strictly inside (0, 1) (the model's check constraints)."""
    return value if value is not None and ZERO < value < ONE else None


def _clip(text: str | None, length: int = 255) -> str:
    """A display text shortened to its column (the only values that are cut, not refused)."""
    return (text or "")[:length]


def _strike(value: Decimal | None) -> Decimal | None:
    """A strike to 4 places; one too large to round is returned as is (and refused)."""
    if value is None:
        return None
    try:
        return value.quantize(Decimal("0.0001"))
    except ArithmeticError:
        return value


def _fields(m: kalshi.Market, event_id: int) -> dict[str, Any]:
    settlement = m.settlement_value
    return {
        "event_id": event_id,
        "market_type": m.market_type,
        "title": _clip(m.title),
        "subtitle": _clip(m.subtitle),
        "yes_sub_title": _clip(m.yes_sub_title),
        "no_sub_title": _clip(m.no_sub_title),
        "status": m.status,
        "open_time": m.open_time,
        "close_time": m.close_time,
        "latest_expiration_time": m.latest_expiration_time,
        "yes_bid": _price(m.yes_bid),
        "yes_ask": _price(m.yes_ask),
        "no_bid": _price(m.no_bid),
        "no_ask": _price(m.no_ask),
        "last_price": _price(m.last_price),
        "yes_bid_size": m.yes_bid_size,
        "yes_ask_size": m.yes_ask_size,
        "volume": m.volume,
        "volume_24h": m.volume_24h,
        "open_interest": m.open_interest,
        "price_level_structure": m.price_level_structure,
        "price_ranges": [
            {"start": str(r.start), "end": str(r.end), "step": str(r.step)} for r in m.price_ranges
        ],
        "rules_primary": m.rules_primary,
        "rules_secondary": m.rules_secondary,
        "strike_type": m.strike_type or "",
        "floor_strike": _strike(m.floor_strike),
        "cap_strike": _strike(m.cap_strike),
        "can_close_early": m.can_close_early,
        "result": m.result,
        "settlement_value": settlement
        if settlement is not None and ZERO <= settlement <= ONE
        else None,
        "settled_time": m.settlement_ts,
        "fee_waiver_expiration_time": m.fee_waiver_expiration_time,
    }


_NOT_NEGATIVE = ("volume", "volume_24h", "open_interest")  # the model's check constraint
# Parsed names that differ from the column names, for messages that name Kalshi's field.
_KALSHI_NAMES = {
    "volume": "volume_fp",
    "volume_24h": "volume_24h_fp",
    "open_interest": "open_interest_fp",
    "yes_bid_size": "yes_bid_size_fp",
    "yes_ask_size": "yes_ask_size_fp",
    "settled_time": "settlement_ts",
}


def _check_market(m: kalshi.Market) -> None:
    """Raise ``Refused`` if ``m`` (or the event and series made for it) cannot be stored."""
    if not m.event_ticker:
        raise Refused("event_ticker", "is empty")
    check_storable(Market, {"ticker": m.ticker})
    check_storable(Event, {"event_ticker": m.event_ticker})
    check_storable(Series, {"ticker": _series_ticker(m.event_ticker)})
    fresh = _fields(m, 0)
    for name in _NOT_NEGATIVE:
        if fresh[name] < 0:
            raise Refused(name, f"{fresh[name]} is negative")
    try:
        check_storable(Market, {k: v for k, v in fresh.items() if k != "event_id"})
    except Refused as exc:
        raise Refused(_KALSHI_NAMES.get(exc.field, exc.field), exc.reason) from None


def _same(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
    return all(stored[name] == fresh[name] for name in SYNCED_FIELDS)


TICKERS_PER_REQUEST = 100


def _fetch(
    client: kalshi.KalshiClient,
    status: str | None,
    progress: bool,
    tickers: Sequence[str] | None = None,
    on_error: Callable[[kalshi.KalshiParseError], None] | None = None,
) -> list[kalshi.Market]:
    markets: dict[str, kalshi.Market] = {}
    bar = tqdm(desc="markets", unit="mkt", disable=None if progress else True)
    pages = (
        [client.iter_markets(status=status, on_error=on_error)]
        if tickers is None
        else [
            client.iter_markets(status=status, tickers=chunk, on_error=on_error)
            for chunk in chunks(sorted(set(tickers)), TICKERS_PER_REQUEST)
        ]
    )
    with bar:
        for page in pages:
            for market in page:
                markets[market.ticker] = market  # seen twice across pages: keep the last
                bar.update()
    return list(markets.values())


def _skip(problems: list[str], record: str, field: str, reason: str) -> None:
    logger.warning("Skipped %s: field %s: %s", record, field, reason)
    problems.append(f"{record}.{field}: {reason}")


def market_sync(
    *,
    client: kalshi.KalshiClient,
    status: str | None = "open",
    progress: bool = False,
    now: datetime | None = None,
    tickers: Sequence[str] | None = None,
) -> SyncSummary:
    """Copy Kalshi's markets with this status filter into the database; see the module doc.

    With ``tickers``, only those markets (any status when ``status`` is None): how the
    results of markets we hold or forecast reach the books once they have closed.
    """
    started = time.monotonic()
    problems: list[str] = []

    def unreadable(error: kalshi.KalshiParseError) -> None:
        record, field = error.record or "Market", error.field or "?"
        reason = error.message.removeprefix(f"{record}.{field}").lstrip(": ")
        _skip(problems, record, field, reason)

    if tickers is not None and not tickers:
        fetched: list[kalshi.Market] = []
    else:
        fetched = _fetch(client, status, progress, tickers, on_error=unreadable)
    return market_store(fetched, now=now, started=started, client=client, problems=problems)


def market_store(
    markets: list[kalshi.Market],
    *,
    now: datetime | None = None,
    started: float | None = None,
    client: kalshi.KalshiClient | None = None,
    problems: list[str] | None = None,
) -> SyncSummary:
    """Store Kalshi markets already fetched, with their series and events, as a sync does.

    A market whose values our columns cannot hold is skipped (logged, added to ``problems``).
    With a ``client`` the fees of their series are refreshed too; without one (reconcile
    storing a market it met in a fill) the next sync reads them."""
    started = time.monotonic() if started is None else started
    problems = [] if problems is None else problems
    fetched, markets = markets, []
    for m in fetched:
        try:
            _check_market(m)
        except Refused as exc:
            _skip(problems, f"Market[{kalshi.shown_key(m.ticker)}]", exc.field, exc.reason)
        else:
            markets.append(m)
    now = now or timezone.now()
    with transaction.atomic():
        series_added, events_added, event_ids = _ensure_events(markets, now)
        added, updated, unchanged, market_ids = _upsert_markets(markets, event_ids, now)
        snapshotted = _snapshot(markets, market_ids, now)
    fees_refreshed, fee_errors = (
        _refresh_fees(client, markets, now) if client is not None else (0, 0)
    )
    return SyncSummary(
        ts=now,
        seen=len(markets),
        added=added,
        updated=updated,
        unchanged=unchanged,
        snapshotted=snapshotted,
        series_added=series_added,
        events_added=events_added,
        seconds=time.monotonic() - started,
        fees_refreshed=fees_refreshed,
        fee_errors=fee_errors,
        skipped=len(problems),
        problems=tuple(problems),
    )


def _ensure_events(markets: list[kalshi.Market], now: datetime) -> tuple[int, int, dict[str, int]]:
    event_tickers = sorted({m.event_ticker for m in markets})
    series_tickers = sorted({_series_ticker(t) for t in event_tickers})
    series_ids = ids_by_key(Series, "ticker", series_tickers)
    new_series = [
        Series(ticker=t[:64], created_at=now, updated_at=now)
        for t in series_tickers
        if t not in series_ids
    ]
    Series.objects.bulk_create(new_series, batch_size=BATCH_SIZE, ignore_conflicts=True)
    if new_series:
        series_ids = ids_by_key(Series, "ticker", series_tickers)
    event_ids = ids_by_key(Event, "event_ticker", event_tickers)
    new_events = [
        Event(
            event_ticker=t[:96],
            series_id=series_ids[_series_ticker(t)],
            source=Source.KALSHI,
            created_at=now,
            updated_at=now,
        )
        for t in event_tickers
        if t not in event_ids
    ]
    Event.objects.bulk_create(new_events, batch_size=BATCH_SIZE, ignore_conflicts=True)
    if new_events:
        event_ids = ids_by_key(Event, "event_ticker", event_tickers)
    return len(new_series), len(new_events), event_ids


def _refresh_fees(
    client: kalshi.KalshiClient, markets: list[kalshi.Market], now: datetime
) -> tuple[int, int]:
    """Read the fees of the markets' series that are unknown or stale (module doc); returns
    (series read, series that failed). A few set-based queries whatever the number of series."""
    wanted = sorted({_series_ticker(m.event_ticker) for m in markets})
    stale: dict[str, int] = {}
    for chunk in chunks(wanted):
        for pk, ticker, synced in Series.objects.filter(ticker__in=chunk).values_list(
            "id", "ticker", "fees_synced_at"
        ):
            if synced is None or now - synced >= FEES_MAX_AGE:
                stale[ticker] = pk
    by_fees: dict[tuple[str, Decimal], list[int]] = {}  # one UPDATE per distinct fee structure
    overrides: dict[str, tuple[str, Decimal | None]] = {}
    errors = 0
    for ticker, pk in stale.items():
        try:
            series = client.get_series(ticker)
            events = list(client.iter_events(series_ticker=ticker, status="open"))
        except kalshi.KalshiError as exc:
            errors += 1
            logger.warning("fees of series %s not read: %s", ticker, exc.message)
            continue
        by_fees.setdefault((series.fee_type, series.fee_multiplier), []).append(pk)
        for event in events:
            overrides[event.event_ticker] = (
                event.fee_type_override or "",
                event.fee_multiplier_override,
            )
    for (fee_type, multiplier), pks in by_fees.items():
        for chunk in chunks(pks):
            Series.objects.filter(pk__in=chunk).update(
                fee_type=fee_type, fee_multiplier=multiplier, fees_synced_at=now
            )
    changed: list[Event] = []
    for chunk in chunks(sorted(overrides)):
        for pk, ticker, *stored in Event.objects.filter(event_ticker__in=chunk).values_list(
            "id", "event_ticker", "fee_type_override", "fee_multiplier_override"
        ):
            fee_type, multiplier = overrides[ticker]
            if tuple(stored) != (fee_type, multiplier):
                changed.append(
                    Event(pk=pk, fee_type_override=fee_type, fee_multiplier_override=multiplier)
                )
    if changed:
        Event.objects.bulk_update(
            changed, ["fee_type_override", "fee_multiplier_override"], batch_size=BATCH_SIZE
        )
    return sum(len(pks) for pks in by_fees.values()), errors


def _upsert_markets(
    markets: list[kalshi.Market], event_ids: dict[str, int], now: datetime
) -> tuple[int, int, int, dict[str, int]]:
    tickers = [m.ticker for m in markets]
    stored: dict[str, dict[str, Any]] = {}
    for chunk in chunks(tickers):
        for row in Market.objects.filter(ticker__in=chunk).values("id", "ticker", *SYNCED_FIELDS):
            stored[row["ticker"]] = row
    rows: list[Market] = []
    added = updated = 0
    for m in markets:
        fresh = _fields(m, event_ids[m.event_ticker])
        old = stored.get(m.ticker)
        if old is not None and _same(old, fresh):
            continue
        if old is None:
            added += 1
        else:
            updated += 1
        rows.append(
            Market(
                ticker=m.ticker,
                source=Source.KALSHI,
                created_at=now,
                updated_at=now,
                **fresh,
            )
        )
    if rows and is_postgresql():
        copy_rows(
            Market,
            rows,
            ["ticker", "category", "created_at", *_UPSERT_FIELDS],
            conflict="(ticker)",
            update=_UPSERT_FIELDS,
        )
    elif rows:
        Market.objects.bulk_create(
            rows,
            batch_size=BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["ticker"],
            update_fields=_UPSERT_FIELDS,
        )
    ids = {ticker: row["id"] for ticker, row in stored.items()}
    if added:
        ids = ids_by_key(Market, "ticker", tickers)
    return added, updated, len(markets) - added - updated, ids


def _snapshot(markets: list[kalshi.Market], market_ids: dict[str, int], now: datetime) -> int:
    existing: set[int] = set()
    ids = [market_ids[m.ticker] for m in markets]
    for chunk in chunks(ids):
        existing.update(
            MarketSnapshot.objects.filter(market_id__in=chunk, ts=now).values_list(
                "market_id", flat=True
            )
        )
    snapshots = [
        MarketSnapshot(
            market_id=market_ids[m.ticker],
            ts=now,
            yes_bid=_price(m.yes_bid),
            yes_ask=_price(m.yes_ask),
            no_bid=_price(m.no_bid),
            no_ask=_price(m.no_ask),
            last_price=_price(m.last_price),
            volume=m.volume,
            open_interest=m.open_interest,
            source=Source.KALSHI,
        )
        for m in markets
        if market_ids[m.ticker] not in existing
    ]
    if snapshots and is_postgresql():
        copy_rows(MarketSnapshot, snapshots, _SNAPSHOT_FIELDS, conflict="(market_id, ts)")
    else:
        MarketSnapshot.objects.bulk_create(snapshots, batch_size=BATCH_SIZE, ignore_conflicts=True)
    return len(snapshots)


_SNAPSHOT_FIELDS = [
    "market",
    "ts",
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "volume",
    "open_interest",
    "source",
]
