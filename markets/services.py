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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
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

    def summary(self) -> str:
        failed = f", {self.fee_errors} failed" if self.fee_errors else ""
        return (
            f"Synced {self.seen} markets at {self.ts:%Y-%m-%d %H:%M:%S}Z: {self.added} added, "
            f"{self.updated} updated, {self.unchanged} unchanged, {self.snapshotted} snapshots; "
            f"{self.series_added} new series, {self.events_added} new events; "
            f"fees of {self.fees_refreshed} series read{failed} "
            f"({self.seconds:.1f}s)"
        )


def _series_ticker(event_ticker: str) -> str:
    return event_ticker.split("-", 1)[0]


def _price(value: Decimal | None) -> Decimal | None:
    """A stored quote is NULL or strictly inside (0, 1) (the model's check constraints)."""
    return value if value is not None and ZERO < value < ONE else None


def _clip(text: str | None, length: int = 255) -> str:
    return (text or "")[:length]


def _strike(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    value = value.quantize(Decimal("0.0001"))
    return value if abs(value) < Decimal("1e11") else None  # max_digits=15, 4 places


def _fields(m: kalshi.Market, event_id: int) -> dict[str, Any]:
    settlement = m.settlement_value
    return {
        "event_id": event_id,
        "market_type": m.market_type,
        "title": _clip(m.title),
        "subtitle": _clip(m.subtitle),
        "yes_sub_title": _clip(m.yes_sub_title),
        "no_sub_title": _clip(m.no_sub_title),
        "status": m.status[:16],
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
        "price_level_structure": m.price_level_structure[:32],
        "price_ranges": [
            {"start": str(r.start), "end": str(r.end), "step": str(r.step)} for r in m.price_ranges
        ],
        "rules_primary": m.rules_primary,
        "rules_secondary": m.rules_secondary,
        "strike_type": _clip(m.strike_type, 32),
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


def _same(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
    return all(stored[name] == fresh[name] for name in SYNCED_FIELDS)


TICKERS_PER_REQUEST = 100


def _fetch(
    client: kalshi.KalshiClient,
    status: str | None,
    progress: bool,
    tickers: Sequence[str] | None = None,
) -> list[kalshi.Market]:
    markets: dict[str, kalshi.Market] = {}
    bar = tqdm(desc="markets", unit="mkt", disable=None if progress else True)
    pages = (
        [client.iter_markets(status=status)]
        if tickers is None
        else [
            client.iter_markets(status=status, tickers=chunk)
            for chunk in chunks(sorted(set(tickers)), TICKERS_PER_REQUEST)
        ]
    )
    with bar:
        for page in pages:
            for market in page:
                markets[market.ticker] = market  # seen twice across pages: keep the last
                bar.update()
    return list(markets.values())


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
    if tickers is not None and not tickers:
        markets: list[kalshi.Market] = []
    else:
        markets = _fetch(client, status, progress, tickers)
    return market_store(markets, now=now, started=started, client=client)


def market_store(
    markets: list[kalshi.Market],
    *,
    now: datetime | None = None,
    started: float | None = None,
    client: kalshi.KalshiClient | None = None,
) -> SyncSummary:
    """Store Kalshi markets already fetched, with their series and events, as a sync does.

    With a ``client`` the fees of their series are refreshed too; without one (reconcile
    storing a market it met in a fill) the next sync reads them."""
    started = time.monotonic() if started is None else started
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
