"""Fuzzing the exchange edge with replies generated from Kalshi's OpenAPI spec.

Bodies for markets, events, orders, fills, positions, settlements and the balance are generated
with hypothesis-jsonschema from ``tests/contracts/kalshi-openapi.yaml`` (converted from OpenAPI
3.0 to JSON Schema below) and served at the HTTP transport, so the real client parses them. Each
reply is drawn from one of three variants of the spec:

- ``spec``: the schemas as published (FixedPointDollars is any string, doubles any double, ...);
- ``plausible``: money strings shaped like Kalshi's (prices in [0, 1] with 4 decimals), so that
  most records parse and the sync's database path runs;
- ``wide``: money strings with up to 16 digits before the point and up to 7 after (exact values
  the spec allows that our columns may not hold).

Strings (outside ``plausible``) may hold NUL bytes and lone surrogates; numbers may be any double
or any integer.

Properties: the client raises nothing but ``KalshiError``; ``KalshiExchange``'s money reads raise
nothing but ``ExchangeDataError`` and what they return fits our columns (they are written to the
trading tables to prove it); ``market_sync`` raises nothing but ``KalshiError``, every market it
stores is stored whole (each column equal to the parsed value) and every other market is counted
as skipped.

CI runs a fixed number of examples with a fixed seed (``derandomize``). A longer, randomly seeded
run: ``FUZZ_MAX_EXAMPLES=3000 pytest tests/markets/test_fuzz_exchange.py`` (see README).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import httpx
import hypothesis_jsonschema._from_schema as jsonschema_strategies
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import from_schema

from markets import kalshi
from markets.exchange import ExchangeDataError
from markets.exchange_kalshi import KalshiExchange
from markets.models import Market, MarketSnapshot
from markets.services import SYNCED_FIELDS, _fields, market_sync
from tests.base import make_market
from tests.contracts import spec_dict
from tests.fakes import FakeKalshi
from trading.models import AccountSnapshot, Fill, Order, Position, Settlement


class _ManyWithMore:
    """hypothesis-jsonschema 0.23.1 (its latest release) draws object properties with
    ``many(...).more()``, a Hypothesis internal that Hypothesis 6.170 replaced by a context
    manager and an iterator. This adapter offers the old calls over the new protocol, for that
    one use (``from_object_schema``); remove it once hypothesis-jsonschema supports it."""

    _END = object()

    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture_utils.many(data, **sizes)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, self._END) is self._END:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


class _ConjectureUtils:
    many = _ManyWithMore


if not hasattr(conjecture_utils.many, "more"):
    jsonschema_strategies.cu = _ConjectureUtils  # type: ignore[assignment]


FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES") or 0)
FUZZ = settings(
    max_examples=FUZZ_MAX_EXAMPLES or 20,
    derandomize=not FUZZ_MAX_EXAMPLES,  # CI: a fixed seed; a long run explores new inputs
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

TICKER = "KXFUZZ-26SEP01-T1"
MAX_ITEMS = 4  # records per generated page: enough to mix good and bad ones, quick to draw
_DROP = {"description", "example", "deprecated", "readOnly", "writeOnly", "externalDocs", "xml"}

# Inside (0, 1) ("wide" replies bring 0 and 1, Kalshi's "no bid" and "no ask").
_PRICE = r"^0\.[0-9]{3}[1-9]$"
# Per variant: schemas replaced by name, and (plausible only) non-empty strings and lists and the
# fields our parser needs although the spec leaves them optional (a fill's created_time).
_VARIANTS: dict[str, dict[str, Any]] = {
    "spec": {"schemas": {}},
    "plausible": {
        "schemas": {
            "FixedPointDollars": {"type": "string", "pattern": _PRICE},
            "FixedPointCount": {"type": "string", "pattern": r"^[1-9][0-9]{0,3}\.[0-9]{2}$"},
        },
        "properties": {
            "start": {"type": "string", "pattern": _PRICE},
            "end": {"type": "string", "pattern": _PRICE},
            "step": {"type": "string", "pattern": r"^0\.0[0-9]{2}[1-9]$"},
            "floor_strike": {"type": "number", "minimum": -1e6, "maximum": 1e6},
            "cap_strike": {"type": "number", "minimum": -1e6, "maximum": 1e6},
        },
        "nonempty": True,
        "required": {"created_time"},
    },
    "wide": {
        "schemas": {
            "FixedPointDollars": {"type": "string", "pattern": r"^-?[0-9]{1,16}(\.[0-9]{1,7})?$"},
            "FixedPointCount": {"type": "string", "pattern": r"^-?[0-9]{1,16}(\.[0-9]{1,3})?$"},
        },
    },
}


def _convert(node: Any, components: dict[str, Any], variant: dict[str, Any], depth: int) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: refs inlined, ``nullable`` as a null alternative,
    arrays capped at MAX_ITEMS, objects without extra properties (the client ignores them)."""
    if isinstance(node, list):
        return [_convert(item, components, variant, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        if depth > 12:
            return {}
        target = variant["schemas"].get(name, components[name])
        return _convert(target, components, variant, depth + 1)
    out = {
        key: _convert(value, components, variant, depth)
        for key, value in node.items()
        if key not in _DROP and not key.startswith("x-") and key != "nullable"
    }
    if out.get("type") == "array":
        out["maxItems"] = min(out.get("maxItems", MAX_ITEMS), MAX_ITEMS)
        if variant.get("nonempty"):
            out["minItems"] = max(out.get("minItems", 0), 1)
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)
        for name, schema in variant.get("properties", {}).items():
            if name in out["properties"]:
                out["properties"][name] = schema
        wanted = variant.get("required", set()) & set(out["properties"])
        if wanted:
            out["required"] = sorted(set(out.get("required", [])) | wanted)
    if (
        variant.get("nonempty")
        and out.get("type") == "string"
        and not {"enum", "pattern", "format"} & set(out)
    ):
        out["minLength"] = 1
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def reply_schema(name: str, variant: str) -> dict[str, Any]:
    components = spec_dict()["components"]["schemas"]
    return _convert(components[name], components, _VARIANTS[variant], 0)


def replies(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """A reply body for the spec schema ``name``, from any of the three variants."""
    # Plausible replies (clean text) twice as often: they are the ones that reach the database.
    # The others may hold NUL bytes and lone surrogates in any string.
    plausible = from_schema(reply_schema(name, "plausible"), allow_x00=False, codec="utf-8")
    spec, wide = (from_schema(reply_schema(name, v), codec=None) for v in ("spec", "wide"))
    return st.one_of(plausible, spec, plausible, wide)


def serving(body: dict[str, Any], key: str | None) -> httpx.MockTransport:
    """Answer the first request with ``body`` and any later page with an empty last page."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        payload = body if len(calls) == 1 or key is None else {key: [], "cursor": ""}
        return httpx.Response(200, content=json.dumps(payload).encode())

    return httpx.MockTransport(handler)


def client_for(body: dict[str, Any], key: str | None) -> kalshi.KalshiClient:
    return kalshi.KalshiClient(
        base_url="https://fuzz.invalid/trade-api/v2",
        transport=serving(body, key),
        sleep=lambda seconds: None,
        max_retries=0,
    )


def _is_exact(value: Any) -> bool:
    return value is None or (isinstance(value, Decimal) and value.is_finite())


def _is_utc(value: Any) -> bool:
    return value is None or (isinstance(value, datetime) and value.utcoffset() is not None)


class ClientFuzzTests(TestCase):
    """The client raises only KalshiError (with the record and field for a bad record). Orders,
    fills, positions, settlements and the balance go through the client in ExchangeFuzzTests."""

    def read(self, body, key, call):
        try:
            return call(client_for(body, key))
        except kalshi.KalshiError as exc:
            self.assertTrue(exc.message)
            if isinstance(exc, kalshi.KalshiParseError) and exc.field is not None:
                self.assertIn(exc.field, exc.message)
            return None

    @FUZZ
    @given(replies("GetMarketsResponse"))
    def test_markets(self, body):
        items = body.get("markets") or []
        strict = self.read(body, "markets", lambda c: c.get_markets())
        skipped = []
        markets = self.read(body, "markets", lambda c: c.get_markets(on_error=skipped.append))
        if markets is None:  # the page itself is unreadable
            self.assertIsNone(strict)
            return
        # Without on_error one bad market fails the read; with it, it is left out and reported.
        self.assertEqual(strict is None, bool(skipped))
        self.assertEqual(len(markets) + len(skipped), len(items))
        self.assertTrue(all(e.record and e.field for e in skipped))
        for m in markets:
            self.assertTrue(m.ticker)
            for name in ("yes_bid", "volume", "floor_strike", "settlement_value"):
                self.assertTrue(_is_exact(getattr(m, name)), name)
            self.assertTrue(_is_utc(m.close_time) and _is_utc(m.settlement_ts))

    @FUZZ
    @given(replies("GetEventsResponse"))
    def test_events(self, body):
        skipped = []
        events = self.read(body, "events", lambda c: c.get_events(on_error=skipped.append))
        if events is not None:
            self.assertEqual(len(events) + len(skipped), len(body.get("events") or []))


class ExchangeFuzzTests(TestCase):
    """Money reads: a value or ExchangeDataError, never anything else; what is returned can be
    written to our books on this database."""

    def exchange(self, body, key) -> KalshiExchange:
        return KalshiExchange(client_for(body, key))

    def market(self, ticker: str) -> Market:
        return Market.objects.filter(ticker=ticker).first() or make_market(ticker=ticker)

    @FUZZ
    @given(replies("GetFillsResponse"))
    def test_fills_are_read_whole_or_refused(self, body):
        try:
            fills = self.exchange(body, "fills").fills()
        except ExchangeDataError as exc:
            self.assertIn("halt", exc.message)
            event("fills refused")
            return
        event(f"fills stored: {'some' if fills else 'none'}")
        for index, f in enumerate(fills):
            Fill.objects.create(
                fill_id=f"{index}-{f.fill_id}"[:64],
                mode="live",
                exchange_order_id=f.order_id,
                market=self.market(f.ticker),
                side=f.side,
                action=f.action,
                count=f.count,
                yes_price=f.yes_price,
                fee=f.fee,
                is_taker=f.is_taker,
                executed_at=f.executed_at,
            )
            stored = Fill.objects.get(fill_id=f"{index}-{f.fill_id}"[:64])
            self.assertEqual((stored.count, stored.fee), (f.count, f.fee))

    @FUZZ
    @given(replies("GetOrdersResponse"))
    def test_orders_are_read_whole_or_refused(self, body):
        try:
            orders = self.exchange(body, "orders").orders()
        except ExchangeDataError:
            return
        for o in orders:
            self.assertTrue(all(_is_exact(v) for v in (o.count, o.filled_count, o.fees)))
            for value in (o.count, o.filled_count, o.remaining_count):
                self.assertEqual(Order._meta.get_field("count").clean(value, None), value)
            self.assertEqual(Order._meta.get_field("fees_paid").clean(o.fees, None), o.fees)

    @FUZZ
    @given(replies("GetPositionsResponse"))
    def test_positions_are_read_whole_or_refused(self, body):
        try:
            positions = self.exchange(body, "market_positions").positions()
        except ExchangeDataError:
            return
        for p in positions:
            for name, value in (
                ("count", abs(p.position)),
                ("realized_pnl", p.realized_pnl),
                ("fees_paid", p.fees_paid),
            ):
                self.assertEqual(Position._meta.get_field(name).clean(value, None), value)

    @FUZZ
    @given(replies("GetSettlementsResponse"))
    def test_settlements_are_read_whole_or_refused(self, body):
        try:
            settlements = self.exchange(body, "settlements").settlements()
        except ExchangeDataError:
            return
        for s in settlements:
            for name, value in (
                ("yes_count", s.yes_count),
                ("no_count", s.no_count),
                ("payout", s.revenue),
                ("fee", s.fee),
            ):
                self.assertEqual(Settlement._meta.get_field(name).clean(value, None), value)

    @FUZZ
    @given(replies("GetBalanceResponse"))
    def test_the_balance_is_read_whole_or_refused(self, body):
        try:
            balance = self.exchange(body, None).balance()
        except ExchangeDataError:
            return
        self.assertEqual(AccountSnapshot._meta.get_field("cash").clean(balance, None), balance)


class SyncFuzzTests(TestCase):
    """market_sync raises only KalshiError; a market is stored whole or counted as skipped."""

    @FUZZ
    @given(replies("GetMarketsResponse"))
    def test_markets_are_synced_whole_or_skipped(self, body):
        try:
            summary = market_sync(client=client_for(body, "markets"), status=None)
        except kalshi.KalshiError:
            self.assertFalse(Market.objects.exists())
            return
        event(f"markets stored: {'some' if summary.seen else 'none'}")
        event(f"markets skipped: {'some' if summary.skipped else 'none'}")
        parsed, unreadable = {}, 0
        for item in body.get("markets") or []:
            try:
                m = kalshi.Market.from_json(json.loads(json.dumps(item), parse_float=Decimal))
            except kalshi.KalshiParseError:
                unreadable += 1
                continue
            parsed[m.ticker] = m  # a ticker seen twice: the last one counts, as in the sync
        self.assertEqual(Market.objects.count(), summary.seen)
        self.assertEqual(MarketSnapshot.objects.count(), summary.seen)
        self.assertEqual(summary.skipped, len(summary.problems))
        # Every item is stored or skipped: unreadable ones, then those the columns cannot hold.
        self.assertEqual(summary.seen + summary.skipped, unreadable + len(parsed))
        for row in Market.objects.values("ticker", "event__event_ticker", *SYNCED_FIELDS):
            m = parsed[row["ticker"]]
            self.assertEqual(row["event__event_ticker"], m.event_ticker)
            expected = _fields(m, row["event_id"])
            for name in SYNCED_FIELDS:
                self.assertEqual(row[name], expected[name], name)


class FoundByFuzzingTests(TestCase):
    """Replies the spec allows that used to escape as something other than a KalshiError."""

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.add_market(TICKER, yes_bid="0.4000", yes_ask="0.4300")
        self.client_ = self.fake.client()

    def market_with(self, **fields) -> kalshi.KalshiParseError:
        self.fake.markets[TICKER].update(fields)
        with self.assertRaises(kalshi.KalshiParseError) as caught:
            self.client_.get_markets()
        self.assertTrue(caught.exception.record.startswith(f"Market[{TICKER}]"))
        return caught.exception

    def test_a_time_past_datetime_max_in_utc(self):
        error = self.market_with(close_time="9999-12-31T23:00:00-05:00")  # was OverflowError
        self.assertEqual(error.field, "close_time")

    def test_a_count_too_large_to_quantize(self):
        error = self.market_with(volume_fp="1e999999")  # was decimal.InvalidOperation
        self.assertEqual(error.field, "volume_fp")

    def test_a_price_step_of_zero(self):
        # Accepted before, then Market.is_valid_price divided by zero.
        error = self.market_with(
            price_ranges=[{"start": "0.0000", "end": "1.0000", "step": "0.0000"}]
        )
        self.assertEqual(error.field, "step")

    def test_a_cursor_that_cannot_be_sent_back(self):
        # A lone surrogate is valid JSON; sending it back raised UnicodeEncodeError.
        self.fake.fail_next(
            "GET /markets", "mutate", mutate=lambda body: body.update(cursor="\ud800")
        )
        with self.assertRaises(kalshi.KalshiParseError) as caught:
            self.client_.get_markets()
        self.assertEqual(caught.exception.field, "cursor")

    def test_a_fill_time_and_a_settlement_revenue_out_of_range(self):
        self.fake.fills.append(
            {
                "fill_id": "f1",
                "order_id": "o1",
                "ticker": TICKER,
                "outcome_side": "yes",
                "book_side": "bid",
                "count_fp": "1.00",
                "yes_price_dollars": "0.4000",
                "no_price_dollars": "0.6000",
                "is_taker": True,
                "fee_cost": "0.0100",
                "ts": 10**20,  # was OverflowError from datetime.fromtimestamp
            }
        )
        with self.assertRaises(kalshi.KalshiParseError) as caught:
            self.client_.get_fills()
        self.assertEqual((caught.exception.record, caught.exception.field), ("Fill[f1]", "ts"))
        self.fake.add_settlement(TICKER, revenue_cents=10**400)  # was decimal.InvalidOperation
        with self.assertRaises(kalshi.KalshiParseError) as caught:
            self.client_.get_settlements()
        self.assertEqual(caught.exception.field, "revenue")
