"""Fakes of the outside world, faked at the transport.

``FakeKalshi`` is a small, stateful, in-memory Kalshi Trade API v2. It is an ``httpx``
``MockTransport`` handler, so tests run the real client (signing, serialisation, retries, error
mapping, parsing) against it::

    fake = FakeKalshi()
    fake.add_market("KXTEST-26SEP01-T50", yes_bid="0.4500", yes_ask="0.4700")
    client = fake.client()            # KalshiClient(..., transport=httpx.MockTransport(fake))
    client.get_market("KXTEST-26SEP01-T50")

What it does:

- routes on ``request.url.path`` (with the ``/trade-api/v2`` prefix) to handlers for exchange
  status, events, markets (cursor paging, filters), order books, trades, candlesticks, balance,
  positions, orders, V2 create/cancel, fills and settlements; every JSON body it produces is
  shaped like the spec (``tests/contracts/kalshi-openapi.yaml``);
- verifies the RSA-PSS signature (with the public key of ``fake_private_key()``) on every request
  that carries one, and answers 401 to a bad one or to a missing one on a portfolio/order-book path;
- V2 create: validates the body, deduplicates ``client_order_id`` against *open* orders (409, as
  Kalshi does), checks the balance, matches against the book (taker fills with fees, FOK/IOC/GTC),
  rests the remainder, and appends every accepted order to the append-only ``accepted`` ledger;
- records every request (``requests``) and every request/response pair (``exchanges``);
- fault injection per route: ``fail_next(target, kind, times=1)``, see ``FAULT_KINDS``;
- ``after_next(target, action)``: the world moving between two reads (e.g. a fill landing).

Simplifications (documented so that nobody relies on them): our own resting orders are shown in
the book but are never matched by our own taker orders (no self-trade); ``fill_resting`` simulates
a counterparty hitting them; positions track cost and realized P&L approximately; event ``status``
filters are ignored.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from markets.fees import MAKER_RATE, TAKER_RATE, trading_fee
from markets.kalshi import KalshiClient

PREFIX = "/trade-api/v2"
FAKE_BASE_URL = "https://external-api.demo.kalshi.co/trade-api/v2"
FAKE_KEY_ID = "a1b2c3d4-0000-4000-8000-00000000test"
DEFAULT_NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)

ONE = Decimal(1)
ZERO = Decimal(0)

#: Kinds accepted by ``FakeKalshi.fail_next``:
#: an HTTP status (int or str: 400, 401, 404, 409, 429, 500, 502, 503, 504) answers with that
#: status and Kalshi's error body for it (429: ``{"error": "too many requests"}``);
#: "timeout" raises ``httpx.ReadTimeout``; "connect_error" raises ``httpx.ConnectError``;
#: "malformed_json" answers 2xx with a truncated JSON body;
#: "no_order" answers a create with 200 and a body without an order (what a deprecated endpoint did);
#: "accept_then_500" / "accept_then_timeout" process the request (an order is accepted and
#: recorded) and then answer 500 / raise ``httpx.ReadTimeout``;
#: "repeat_cursor" answers a page whose ``cursor`` is the request's own cursor ("loop" on a first
#: page): use ``times=2`` to make a client loop;
#: "mutate" processes the request normally and then calls ``mutate(body)`` on the JSON reply
#: (to drop or corrupt fields).
FAULT_KINDS = frozenset(
    {
        "timeout",
        "connect_error",
        "malformed_json",
        "no_order",
        "accept_then_500",
        "accept_then_timeout",
        "repeat_cursor",
        "mutate",
    }
)

# Paths that the spec marks as needing the KALSHI-ACCESS-* headers.
_AUTH_PREFIXES = ("/portfolio/",)
_AUTH_PATTERNS = (re.compile(r"^/markets/[^/]+/orderbook$"),)

_MARKET_STATUS_FILTER = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed"},
    "settled": {"determined", "disputed", "amended", "finalized"},
}


@lru_cache(maxsize=1)
def fake_private_key() -> rsa.RSAPrivateKey:
    """A throwaway 2048-bit RSA key, generated once per test process (keygen is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def verify_signature(public_key: rsa.RSAPublicKey, signature_b64: str, message: bytes) -> bool:
    """Check a KALSHI-ACCESS-SIGNATURE: RSA-PSS, SHA-256, MGF1(SHA-256), 32-byte salt."""
    try:
        public_key.verify(
            base64.b64decode(signature_b64, validate=True),
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def price_str(value: Decimal | str | None) -> str:
    """A FixedPointDollars string with 4 decimals."""
    return f"{Decimal(value or 0):.4f}"


def count_str(value: Decimal | str | int | None) -> str:
    """A FixedPointCount string with 2 decimals."""
    return f"{Decimal(value or 0):.2f}"


def amount_str(value: Decimal) -> str:
    """A FixedPointDollars amount; Kalshi emits up to 6 decimals, we emit 4 unless more are needed."""
    value = Decimal(value)
    return f"{value:.4f}" if value == value.quantize(Decimal("0.0001")) else f"{value:.6f}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    url: str
    path: str  # full path, with /trade-api/v2
    route: str | None  # e.g. "GET /markets/{ticker}"; None when no route matched
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    content: bytes
    json: Any


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True)
class Exchange:
    """One request and what the fake did with it. ``response`` is None when it raised;
    ``fault`` names the injected fault, if any (its reply is not meant to follow the spec)."""

    request: RecordedRequest
    response: RecordedResponse | None
    fault: str | None


@dataclass(frozen=True)
class AcceptedOrder:
    """One entry of the append-only ledger of orders the fake accepted."""

    order_id: str
    client_order_id: str | None
    ticker: str
    side: str
    count: Decimal
    price: Decimal
    time_in_force: str
    body: dict[str, Any]


@dataclass
class _Fault:
    target: str
    kind: str
    remaining: int
    mutate: Callable[[Any], Any] | None


@dataclass
class _OrderState:
    order_id: str
    client_order_id: str | None
    ticker: str
    side: str  # bid | ask (YES book side)
    price: Decimal  # YES price
    initial: Decimal
    time_in_force: str
    self_trade_prevention_type: str
    created: datetime
    expiration_time: int | None = None
    filled: Decimal = ZERO
    remaining: Decimal = ZERO
    status: str = "resting"
    taker_cost: Decimal = ZERO
    maker_cost: Decimal = ZERO
    taker_fees: Decimal = ZERO
    maker_fees: Decimal = ZERO
    updated: datetime | None = None


@dataclass
class _PositionState:
    position: Decimal = ZERO  # signed: YES positive, NO negative
    cost: Decimal = ZERO  # cost of the open contracts
    total_traded: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    updated: datetime = DEFAULT_NOW


class _Reply(Exception):
    """Raised inside a handler to answer at once with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --- The fake ----------------------------------------------------------------------------------


class FakeKalshi:
    """An in-memory Kalshi for tests; see the module docstring."""

    def __init__(
        self,
        *,
        key_id: str = FAKE_KEY_ID,
        public_key: rsa.RSAPublicKey | None = None,
        now: datetime = DEFAULT_NOW,
        balance: Decimal | str = "1000.00",
        max_skew_ms: int | None = None,
    ) -> None:
        self.key_id = key_id
        self.public_key = public_key if public_key is not None else fake_private_key().public_key()
        self.now = now
        self.max_skew_ms = max_skew_ms
        self.cash = Decimal(balance)
        self.exchange_active = True
        self.trading_active = True
        self.max_page_size: int | None = None  # force small pages regardless of ``limit``

        self.series: dict[str, dict[str, Any]] = {}  # served as set; others as quadratic x1
        self.events: dict[str, dict[str, Any]] = {}
        self.markets: dict[str, dict[str, Any]] = {}
        self.books: dict[
            str, dict[str, dict[Decimal, Decimal]]
        ] = {}  # ticker -> side -> price -> count
        self.maker_fee_markets: set[str] = set()
        self.trades: list[dict[str, Any]] = []
        self.candlesticks: dict[str, list[dict[str, Any]]] = {}
        self.orders: dict[str, _OrderState] = {}
        self.fills: list[dict[str, Any]] = []
        self.settlements: list[dict[str, Any]] = []
        self.positions: dict[str, _PositionState] = {}

        self.accepted: list[AcceptedOrder] = []
        self.requests: list[RecordedRequest] = []
        self.exchanges: list[Exchange] = []
        self.sleeps: list[float] = []  # what clients built by ``client()`` slept

        self._faults: list[_Fault] = []
        self._after: list[tuple[str, Callable[[], Any]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], str, Callable[..., Any]]] = []
        for method, template, handler in (
            ("GET", "/exchange/status", self._get_exchange_status),
            ("GET", "/events", self._get_events),
            ("GET", "/events/{event_ticker}", self._get_event),
            ("GET", "/series/{series_ticker}", self._get_series),
            ("GET", "/markets", self._get_markets),
            ("GET", "/markets/trades", self._get_trades),
            ("GET", "/markets/{ticker}", self._get_market),
            ("GET", "/markets/{ticker}/orderbook", self._get_orderbook),
            (
                "GET",
                "/series/{series_ticker}/markets/{ticker}/candlesticks",
                self._get_candlesticks,
            ),
            ("GET", "/portfolio/balance", self._get_balance),
            ("GET", "/portfolio/positions", self._get_positions),
            ("GET", "/portfolio/orders", self._get_orders),
            ("GET", "/portfolio/orders/{order_id}", self._get_order),
            ("POST", "/portfolio/events/orders", self._create_order),
            ("DELETE", "/portfolio/events/orders/{order_id}", self._cancel_order),
            ("GET", "/portfolio/fills", self._get_fills),
            ("GET", "/portfolio/settlements", self._get_settlements),
        ):
            pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
            self._routes.append((method, pattern, template, handler))

    # -- building the world ---------------------------------------------------------------------

    def add_series(
        self,
        ticker: str,
        *,
        fee_type: str = "quadratic",
        fee_multiplier: Any = 1,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A series with its fee structure (any series not added is served as quadratic x1).
        ``fee_multiplier`` is sent as a JSON number, as Kalshi does."""
        series = self._series_json(ticker)
        series.update(fee_type=fee_type, fee_multiplier=fee_multiplier, **overrides)
        self.series[ticker] = series
        return series

    def _series_json(self, ticker: str) -> dict[str, Any]:
        return {
            "ticker": ticker,
            "frequency": "daily",
            "title": f"Series {ticker}",
            "category": "",
            "tags": [],
            "settlement_sources": [],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": "quadratic",
            "fee_multiplier": 1,
            "additional_prohibitions": [],
            "last_updated_ts": iso(self.now),
        }

    def _get_series(self, request: RecordedRequest, series_ticker: str) -> tuple[int, Any]:
        return 200, {"series": self.series.get(series_ticker) or self._series_json(series_ticker)}

    def add_event(
        self,
        event_ticker: str,
        *,
        series_ticker: str | None = None,
        title: str | None = None,
        sub_title: str = "",
        mutually_exclusive: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        event = {
            "event_ticker": event_ticker,
            "series_ticker": series_ticker or event_ticker.split("-")[0],
            "title": title or f"Event {event_ticker}",
            "sub_title": sub_title,
            "collateral_return_type": "",
            "mutually_exclusive": mutually_exclusive,
            "available_on_brokers": False,
            "settlement_sources": [],
            "strike_date": None,
            "strike_period": None,
            "last_updated_ts": iso(self.now),
        }
        event.update(overrides)
        self.events[event_ticker] = event
        return event

    def add_market(
        self,
        ticker: str,
        *,
        event_ticker: str | None = None,
        yes_bid: Decimal | str | None = None,
        yes_ask: Decimal | str | None = None,
        yes_bid_size: Decimal | str = "100.00",
        yes_ask_size: Decimal | str = "100.00",
        status: str = "active",
        close_time: datetime | None = None,
        open_time: datetime | None = None,
        last_price: Decimal | str = "0.0000",
        volume: Decimal | str = "0.00",
        result: str = "",
        title: str | None = None,
        maker_fees: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Add a binary market with a one-level book (``yes_bid`` / ``yes_ask``, either may be
        None). ``overrides`` replace any spec field of the market JSON. Returns the stored JSON;
        the quote fields are recomputed from the book each time the market is served."""
        event_ticker = event_ticker or ticker.rsplit("-", 1)[0]
        if event_ticker not in self.events:
            self.add_event(event_ticker)
        close = close_time or self.now + timedelta(days=7)
        opened = open_time or self.now - timedelta(days=7)
        market = {
            "ticker": ticker,
            "event_ticker": event_ticker,
            "market_type": "binary",
            "title": title or f"Market {ticker}",
            "subtitle": "",
            "yes_sub_title": "Yes",
            "no_sub_title": "No",
            "created_time": iso(opened - timedelta(hours=1)),
            "updated_time": iso(self.now),
            "open_time": iso(opened),
            "close_time": iso(close),
            "expected_expiration_time": iso(close + timedelta(hours=1)),
            "latest_expiration_time": iso(close + timedelta(days=7)),
            "settlement_timer_seconds": 300,
            "status": status,
            "notional_value_dollars": "1.0000",
            "last_price_dollars": price_str(last_price),
            "previous_yes_bid_dollars": price_str(yes_bid),
            "previous_yes_ask_dollars": price_str(yes_ask if yes_ask is not None else ONE),
            "previous_price_dollars": price_str(last_price),
            "volume_fp": count_str(volume),
            "volume_24h_fp": count_str(volume),
            "open_interest_fp": "0.00",
            "liquidity_dollars": "0.0000",
            "result": result,
            "can_close_early": True,
            "expiration_value": "",
            "rules_primary": f"If the outcome of {ticker} is yes, the market resolves to Yes.",
            "rules_secondary": "",
            "price_level_structure": "linear_cent",
            "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
            "strike_type": "greater",
            "floor_strike": 50,
            "exchange_index": 0,
        }
        market.update(overrides)
        self.markets[ticker] = market
        self.books[ticker] = {"yes": {}, "no": {}}
        if yes_bid is not None:
            self.books[ticker]["yes"][Decimal(yes_bid)] = Decimal(yes_bid_size)
        if yes_ask is not None:
            self.books[ticker]["no"][ONE - Decimal(yes_ask)] = Decimal(yes_ask_size)
        if maker_fees:
            self.maker_fee_markets.add(ticker)
        return market

    def set_orderbook(
        self,
        ticker: str,
        *,
        yes: Iterable[tuple[Decimal | str, Decimal | str]] = (),
        no: Iterable[tuple[Decimal | str, Decimal | str]] = (),
    ) -> None:
        """Replace the external liquidity: YES bids and NO bids as (price, count) pairs."""
        self.books[ticker] = {
            "yes": {Decimal(p): Decimal(c) for p, c in yes},
            "no": {Decimal(p): Decimal(c) for p, c in no},
        }

    def add_trade(
        self,
        ticker: str,
        *,
        count: Decimal | str = "1.00",
        yes_price: Decimal | str = "0.5000",
        taker_outcome_side: str = "yes",
        created_time: datetime | None = None,
    ) -> dict[str, Any]:
        trade = {
            "trade_id": self._new_id(),
            "ticker": ticker,
            "count_fp": count_str(count),
            "yes_price_dollars": price_str(yes_price),
            "no_price_dollars": price_str(ONE - Decimal(yes_price)),
            "taker_side": taker_outcome_side,
            "taker_outcome_side": taker_outcome_side,
            "taker_book_side": "bid" if taker_outcome_side == "yes" else "ask",
            "created_time": iso(created_time or self.now),
            "is_block_trade": False,
        }
        self.trades.insert(0, trade)  # newest first, as Kalshi lists them
        return trade

    def add_candlestick(
        self,
        ticker: str,
        *,
        end_period_ts: int,
        yes_bid: tuple[str, str, str, str] = ("0.4500", "0.4600", "0.4400", "0.4500"),
        yes_ask: tuple[str, str, str, str] = ("0.4700", "0.4800", "0.4600", "0.4700"),
        price: tuple[str, str, str, str] | None = None,
        volume: str = "0.00",
        open_interest: str = "0.00",
    ) -> dict[str, Any]:
        def ohlc(values: tuple[str, str, str, str] | None) -> dict[str, Any]:
            # A period without trades has no trade prices: the keys are left out (the spec's
            # "nullable" sits beside a $ref there, so it does not allow null).
            names = ("open_dollars", "high_dollars", "low_dollars", "close_dollars")
            return dict(zip(names, values, strict=True)) if values else {}

        candle = {
            "end_period_ts": end_period_ts,
            "yes_bid": ohlc(yes_bid),
            "yes_ask": ohlc(yes_ask),
            "price": ohlc(price),
            "volume_fp": volume,
            "open_interest_fp": open_interest,
        }
        self.candlesticks.setdefault(ticker, []).append(candle)
        return candle

    def add_settlement(
        self,
        ticker: str,
        *,
        market_result: str = "yes",
        yes_count: str = "0.00",
        no_count: str = "0.00",
        yes_total_cost: str = "0.0000",
        no_total_cost: str = "0.0000",
        revenue_cents: int = 0,
        value_cents: int | None = None,
        fee_cost: str = "0.0000",
        settled_time: datetime | None = None,
    ) -> dict[str, Any]:
        market = self.markets.get(ticker, {})
        settlement = {
            "ticker": ticker,
            "event_ticker": market.get("event_ticker", ticker.rsplit("-", 1)[0]),
            "exchange_index": 0,
            "market_result": market_result,
            "yes_count_fp": yes_count,
            "no_count_fp": no_count,
            "yes_total_cost_dollars": yes_total_cost,
            "no_total_cost_dollars": no_total_cost,
            "revenue": revenue_cents,
            "value": value_cents,
            "fee_cost": fee_cost,
            "settled_time": iso(settled_time or self.now),
        }
        self.settlements.insert(0, settlement)
        return settlement

    def settle_market(self, ticker: str, result: str) -> dict[str, Any]:
        """Determine ``ticker`` as ``yes``/``no``: pay out our position and record a settlement."""
        market = self.markets[ticker]
        market.update(
            status="finalized",
            result=result,
            settlement_value_dollars="1.0000" if result == "yes" else "0.0000",
        )
        state = self.positions.setdefault(ticker, _PositionState())
        yes_count = max(state.position, ZERO)
        no_count = max(-state.position, ZERO)
        payout = yes_count if result == "yes" else no_count
        self.cash += payout
        state.realized += payout - state.cost
        settlement = self.add_settlement(
            ticker,
            market_result=result,
            yes_count=count_str(yes_count),
            no_count=count_str(no_count),
            yes_total_cost=amount_str(state.cost if yes_count else ZERO),
            no_total_cost=amount_str(state.cost if no_count else ZERO),
            revenue_cents=int(payout * 100),
            # Kalshi's fee_cost: the trade fees already paid on the position's fills.
            fee_cost=amount_str(state.fees),
        )
        state.position = ZERO
        state.cost = ZERO
        for order in self.orders.values():
            if order.ticker == ticker and order.status == "resting":
                order.status, order.remaining = "canceled", ZERO
        return settlement

    def fill_resting(self, order_id: str, count: Decimal | str | None = None) -> dict[str, Any]:
        """A counterparty takes (part of) our resting order: a maker fill at its limit price."""
        order = self.orders[order_id]
        if order.status != "resting":
            raise ValueError(f"order {order_id} is {order.status}, not resting")
        quantity = order.remaining if count is None else min(Decimal(count), order.remaining)
        rate = MAKER_RATE if order.ticker in self.maker_fee_markets else ZERO
        fee = trading_fee(order.filled + quantity, order.price, rate) - trading_fee(
            order.filled, order.price, rate
        )
        fill = self._record_fill(order, quantity, order.price, fee, is_taker=False)
        order.maker_cost += quantity * _outcome_price(order.side, order.price)
        order.maker_fees += fee
        order.filled += quantity
        order.remaining -= quantity
        order.updated = self.now
        if order.remaining == 0:
            order.status = "executed"
        return fill

    def fail_next(
        self,
        target: str,
        kind: str | int,
        *,
        times: int = 1,
        mutate: Callable[[Any], Any] | None = None,
    ) -> None:
        """Make the next ``times`` requests matching ``target`` fail with ``kind``.

        ``target`` is a route ("POST /portfolio/events/orders"), a path template
        ("/markets/{ticker}") or a concrete path ("/markets/ABC", prefix optional).
        """
        kind = str(kind)
        if kind not in FAULT_KINDS and not kind.isdigit():
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "mutate" and mutate is None:
            raise ValueError("the 'mutate' fault needs mutate=")
        with self._lock:
            self._faults.append(_Fault(target, kind, times, mutate))

    def after_next(self, target: str, action: Callable[[], Any]) -> None:
        """Run ``action`` once, right after the next request matching ``target`` (a route or a
        path template, as for ``fail_next``) has been answered: the world moving between two
        reads, e.g. a counterparty filling a resting order."""
        with self._lock:
            self._after.append((target, action))

    def client(self, **kwargs: Any) -> KalshiClient:
        """A ``KalshiClient`` wired to this fake, signing with ``fake_private_key()``; its
        backoff sleeps are recorded in ``self.sleeps`` and its jitter is fixed."""
        kwargs.setdefault("base_url", FAKE_BASE_URL)
        kwargs.setdefault("key_id", self.key_id)
        kwargs.setdefault("private_key", fake_private_key())
        kwargs.setdefault("sleep", self.sleeps.append)
        kwargs.setdefault("rand", lambda: 0.5)
        kwargs.setdefault("clock", lambda: self.now.timestamp())
        return KalshiClient(transport=httpx.MockTransport(self), **kwargs)

    def public_client(self, **kwargs: Any) -> KalshiClient:
        """A client without a key: no auth headers are sent."""
        return self.client(key_id=None, private_key=None, **kwargs)

    # -- inspecting what happened -----------------------------------------------------------------

    def calls(self, route: str) -> list[RecordedRequest]:
        """Requests received for ``route`` ("GET /markets") or path template ("/markets")."""
        return [
            r
            for r in self.requests
            if r.route is not None and route in (r.route, r.route.split(" ", 1)[1])
        ]

    def count(self, route: str) -> int:
        return len(self.calls(route))

    def open_orders(self, ticker: str | None = None) -> list[_OrderState]:
        return [
            o
            for o in self.orders.values()
            if o.status == "resting" and (ticker is None or o.ticker == ticker)
        ]

    def position(self, ticker: str) -> Decimal:
        state = self.positions.get(ticker)
        return state.position if state else ZERO

    # -- the transport --------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            response = self._handle(request)
            route = self.requests[-1].route
            for hook in list(self._after):
                if route is not None and hook[0] in (route, route.split(" ", 1)[1]):
                    self._after.remove(hook)
                    hook[1]()
                    break
            return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        full_path = request.url.path
        path = full_path[len(PREFIX) :] if full_path.startswith(PREFIX) else full_path
        method = request.method
        route, handler, path_args = None, None, {}
        for route_method, pattern, template, candidate in self._routes:
            match = pattern.match(path)
            if match and route_method == method:
                route, handler, path_args = f"{method} {template}", candidate, match.groupdict()
                break
        content = request.read()
        try:
            body_json = json.loads(content) if content else None
        except ValueError:
            body_json = None
        recorded = RecordedRequest(
            method=method,
            url=str(request.url),
            path=full_path,
            route=route,
            query=dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            content=content,
            json=body_json,
        )
        self.requests.append(recorded)
        fault = self._take_fault(route, path)
        kind = fault.kind if fault else None

        def finish(status: int, payload: Any, *, raw: bytes | None = None) -> httpx.Response:
            data = raw if raw is not None else json.dumps(payload).encode()
            headers = {
                "content-type": "application/json",
                "date": format_datetime(self.now, usegmt=True),
            }
            self.exchanges.append(Exchange(recorded, RecordedResponse(status, headers, data), kind))
            return httpx.Response(status, headers=headers, content=data)

        def raise_(exc_type: type[httpx.TransportError]) -> httpx.Response:
            self.exchanges.append(Exchange(recorded, None, kind))
            raise exc_type(f"fake {kind}", request=request)

        if kind == "timeout":
            return raise_(httpx.ReadTimeout)
        if kind == "connect_error":
            return raise_(httpx.ConnectError)
        if kind is not None and kind.isdigit():
            status = int(kind)
            return finish(status, self._error_body(route, status, "injected"))
        if handler is None or route is None:
            return finish(404, {"code": "not_found", "message": f"no route for {method} {path}"})
        auth_error = self._check_auth(request, path, recorded)
        if auth_error is not None:
            return finish(401, auth_error)
        if kind == "malformed_json":
            return finish(201 if method == "POST" else 200, None, raw=b'{"truncated": [1, 2')
        if kind == "no_order" and method == "POST":
            return finish(200, {"message": "Please switch to the V2 endpoints"})
        served = recorded
        if kind == "repeat_cursor":  # serve the first page again, whatever the cursor
            served = replace(
                recorded, query={k: v for k, v in recorded.query.items() if k != "cursor"}
            )
        try:
            status, payload = handler(served, **path_args)
        except _Reply as reply:
            return finish(reply.status, {"code": reply.code, "message": reply.message})
        if kind == "accept_then_500":
            return finish(500, self._error_body(route, 500, "after accepting"))
        if kind == "accept_then_timeout":
            return raise_(httpx.ReadTimeout)
        if kind == "repeat_cursor" and isinstance(payload, dict) and "cursor" in payload:
            payload["cursor"] = recorded.query.get("cursor") or "loop"
        if kind == "mutate" and fault is not None and fault.mutate is not None:
            fault.mutate(payload)
        return finish(status, payload)

    def _take_fault(self, route: str | None, path: str) -> _Fault | None:
        names = {path, PREFIX + path}
        if route is not None:
            names |= {route, route.split(" ", 1)[1]}
        for fault in self._faults:
            if fault.target in names and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _error_body(self, route: str | None, status: int, why: str) -> dict[str, Any]:
        if status == 429:
            return {"error": "too many requests"}
        if route == "GET /exchange/status" and status >= 500:
            return {
                "exchange_active": False,
                "trading_active": False,
                "exchange_estimated_resume_time": None,
            }
        codes = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            409: "conflict",
        }
        return {
            "code": codes.get(status, "internal_server_error"),
            "message": f"{why} HTTP {status}",
        }

    def _check_auth(
        self, request: httpx.Request, path: str, recorded: RecordedRequest
    ) -> dict[str, Any] | None:
        headers = recorded.headers
        present = [
            h
            for h in ("kalshi-access-key", "kalshi-access-timestamp", "kalshi-access-signature")
            if h in headers
        ]
        needs_auth = path.startswith(_AUTH_PREFIXES) or any(p.match(path) for p in _AUTH_PATTERNS)
        if not present:
            return (
                {"code": "unauthorized", "message": "missing authentication headers"}
                if needs_auth
                else None
            )
        if len(present) != 3:
            return {"code": "unauthorized", "message": "incomplete authentication headers"}
        if headers["kalshi-access-key"] != self.key_id:
            return {"code": "unauthorized", "message": "unknown API key"}
        timestamp = headers["kalshi-access-timestamp"]
        if not timestamp.isdigit():
            return {"code": "unauthorized", "message": "bad timestamp"}
        if (
            self.max_skew_ms is not None
            and abs(int(timestamp) - int(self.now.timestamp() * 1000)) > self.max_skew_ms
        ):
            return {"code": "unauthorized", "message": "timestamp outside the allowed window"}
        wire_path = request.url.raw_path.decode("ascii").split("?", 1)[0]
        message = f"{timestamp}{request.method}{wire_path}".encode()
        if not verify_signature(self.public_key, headers["kalshi-access-signature"], message):
            return {"code": "unauthorized", "message": "invalid signature"}
        return None

    # -- helpers ------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._ids):012d}"

    def _page(
        self,
        request: RecordedRequest,
        items: list[Any],
        key: str,
        *,
        max_limit: int = 1000,
        min_limit: int = 1,
        default: int = 100,
    ) -> dict[str, Any]:
        raw_limit = request.query.get("limit")
        try:
            limit = int(raw_limit) if raw_limit is not None else default
        except ValueError:
            raise _Reply(400, "bad_request", "limit is not an integer") from None
        if not min_limit <= limit <= max_limit:
            raise _Reply(400, "bad_request", f"limit must be between {min_limit} and {max_limit}")
        limit = limit or default
        if self.max_page_size is not None:
            limit = min(limit, self.max_page_size)
        start = 0
        cursor = request.query.get("cursor")
        if cursor:
            try:
                start = int(
                    base64.urlsafe_b64decode(cursor.encode()).decode().removeprefix("offset:")
                )
            except ValueError:
                raise _Reply(400, "bad_request", "invalid cursor") from None
        page = items[start : start + limit]
        end = start + limit
        next_cursor = (
            base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
        )
        return {key: page, "cursor": next_cursor}

    def _market_json(self, ticker: str) -> dict[str, Any]:
        market = dict(self.markets[ticker])
        yes_levels, no_levels = self._levels(ticker, "yes"), self._levels(ticker, "no")
        best_yes = yes_levels[-1] if yes_levels else None
        best_no = no_levels[-1] if no_levels else None
        market.update(
            yes_bid_dollars=price_str(best_yes[0] if best_yes else ZERO),
            yes_bid_size_fp=count_str(best_yes[1] if best_yes else ZERO),
            yes_ask_dollars=price_str(ONE - best_no[0] if best_no else ONE),
            yes_ask_size_fp=count_str(best_no[1] if best_no else ZERO),
            no_bid_dollars=price_str(best_no[0] if best_no else ZERO),
            no_ask_dollars=price_str(ONE - best_yes[0] if best_yes else ONE),
        )
        return market

    def _levels(self, ticker: str, side: str) -> list[tuple[Decimal, Decimal]]:
        """External liquidity plus our resting orders, ascending by price."""
        levels = dict(self.books.get(ticker, {}).get(side, {}))
        for order in self.open_orders(ticker):
            if (order.side == "bid") == (side == "yes"):
                price = order.price if side == "yes" else ONE - order.price
                levels[price] = levels.get(price, ZERO) + order.remaining
        return sorted((p, c) for p, c in levels.items() if c > 0)

    def _order_json(self, order: _OrderState) -> dict[str, Any]:
        return {
            "order_id": order.order_id,
            "user_id": "fake-user",
            "client_order_id": order.client_order_id or "",
            "ticker": order.ticker,
            "side": "yes" if order.side == "bid" else "no",
            "action": "buy",
            "outcome_side": "yes" if order.side == "bid" else "no",
            "book_side": order.side,
            "type": "limit",
            "status": order.status,
            "yes_price_dollars": price_str(order.price),
            "no_price_dollars": price_str(ONE - order.price),
            "fill_count_fp": count_str(order.filled),
            "remaining_count_fp": count_str(order.remaining),
            "initial_count_fp": count_str(order.initial),
            "taker_fill_cost_dollars": amount_str(order.taker_cost),
            "maker_fill_cost_dollars": amount_str(order.maker_cost),
            "taker_fees_dollars": amount_str(order.taker_fees),
            "maker_fees_dollars": amount_str(order.maker_fees),
            "expiration_time": iso(datetime.fromtimestamp(order.expiration_time, tz=UTC))
            if order.expiration_time
            else None,
            "created_time": iso(order.created),
            "last_update_time": iso(order.updated or order.created),
            "self_trade_prevention_type": order.self_trade_prevention_type,
            "order_group_id": None,
            "cancel_order_on_pause": False,
            "subaccount_number": 0,
            "exchange_index": 0,
        }

    def _record_fill(
        self,
        order: _OrderState,
        quantity: Decimal,
        yes_price: Decimal,
        fee: Decimal,
        *,
        is_taker: bool,
    ) -> dict[str, Any]:
        fill_id = self._new_id()
        fill = {
            "fill_id": fill_id,
            "trade_id": fill_id,
            "exchange_index": 0,
            "order_id": order.order_id,
            "ticker": order.ticker,
            "market_ticker": order.ticker,
            "side": "yes" if order.side == "bid" else "no",
            "action": "buy",
            "outcome_side": "yes" if order.side == "bid" else "no",
            "book_side": order.side,
            "count_fp": count_str(quantity),
            "yes_price_dollars": price_str(yes_price),
            "no_price_dollars": price_str(ONE - yes_price),
            "is_taker": is_taker,
            "fee_cost": amount_str(fee),
            "created_time": iso(self.now),
            "ts": int(self.now.timestamp()),
            "subaccount_number": 0,
        }
        self.fills.insert(0, fill)
        self._apply_fill(order.ticker, order.side, quantity, yes_price, fee)
        return fill

    def _apply_fill(
        self, ticker: str, side: str, quantity: Decimal, yes_price: Decimal, fee: Decimal
    ) -> None:
        """Cash and position effect of a fill (Kalshi nets YES against NO: each pair pays $1)."""
        state = self.positions.setdefault(ticker, _PositionState())
        price = _outcome_price(side, yes_price)
        held = -state.position if side == "bid" else state.position  # contracts of the other side
        closing = min(quantity, max(held, ZERO))
        if closing:
            removed = (state.cost * closing / held).quantize(Decimal("0.000001"))
            state.realized += closing * (ONE - price) - removed
            state.cost -= removed
        state.cost += (quantity - closing) * price
        state.position += quantity if side == "bid" else -quantity
        state.total_traded += quantity * price
        state.fees += fee
        state.realized -= fee
        state.updated = self.now
        self.cash += -quantity * price + closing - fee

    # -- handlers (each returns (status, payload) or raises _Reply) --------------------------------

    def _get_exchange_status(self, request: RecordedRequest) -> tuple[int, Any]:
        return 200, {
            "exchange_active": self.exchange_active,
            "trading_active": self.trading_active,
            "exchange_estimated_resume_time": None,
        }

    def _event_json(self, event_ticker: str, nested: bool) -> dict[str, Any]:
        event = dict(self.events[event_ticker])
        if nested:
            event["markets"] = [
                self._market_json(t)
                for t, m in self.markets.items()
                if m["event_ticker"] == event_ticker
            ]
        return event

    def _get_events(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        nested = q.get("with_nested_markets") == "true"
        events = [
            self._event_json(t, nested)
            for t, e in self.events.items()
            if not q.get("series_ticker") or e["series_ticker"] == q["series_ticker"]
        ]
        return 200, self._page(request, events, "events", max_limit=200, default=200)

    def _get_event(self, request: RecordedRequest, event_ticker: str) -> tuple[int, Any]:
        if event_ticker not in self.events:
            raise _Reply(404, "not_found", "event not found")
        nested = request.query.get("with_nested_markets") == "true"
        markets = [
            self._market_json(t)
            for t, m in self.markets.items()
            if m["event_ticker"] == event_ticker
        ]
        return 200, {
            "event": self._event_json(event_ticker, nested),
            "markets": [] if nested else markets,
        }

    def _get_markets(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        status = q.get("status")
        if status is not None and status not in _MARKET_STATUS_FILTER:
            raise _Reply(400, "bad_request", "invalid status filter")
        tickers = set(q["tickers"].split(",")) if q.get("tickers") else None
        selected = []
        for ticker, market in self.markets.items():
            if status and market["status"] not in _MARKET_STATUS_FILTER[status]:
                continue
            if q.get("event_ticker") and market["event_ticker"] != q["event_ticker"]:
                continue
            if (
                q.get("series_ticker")
                and self.events[market["event_ticker"]]["series_ticker"] != q["series_ticker"]
            ):
                continue
            if tickers is not None and ticker not in tickers:
                continue
            close = datetime.fromisoformat(market["close_time"]).timestamp()
            if q.get("min_close_ts") and close < int(q["min_close_ts"]):
                continue
            if q.get("max_close_ts") and close > int(q["max_close_ts"]):
                continue
            selected.append(self._market_json(ticker))
        return 200, self._page(request, selected, "markets", min_limit=0)

    def _get_market(self, request: RecordedRequest, ticker: str) -> tuple[int, Any]:
        if ticker not in self.markets:
            raise _Reply(404, "not_found", "market not found")
        return 200, {"market": self._market_json(ticker)}

    def _get_orderbook(self, request: RecordedRequest, ticker: str) -> tuple[int, Any]:
        if ticker not in self.markets:
            raise _Reply(404, "not_found", "market not found")
        depth = int(request.query.get("depth") or 0)

        def side(name: str) -> list[list[str]]:
            levels = self._levels(ticker, name)
            if depth:
                levels = levels[-depth:]
            return [[price_str(p), count_str(c)] for p, c in levels]

        return 200, {"orderbook_fp": {"yes_dollars": side("yes"), "no_dollars": side("no")}}

    def _get_trades(self, request: RecordedRequest) -> tuple[int, Any]:
        ticker = request.query.get("ticker")
        trades = [t for t in self.trades if not ticker or t["ticker"] == ticker]
        return 200, self._page(request, trades, "trades", min_limit=0)

    def _get_candlesticks(
        self, request: RecordedRequest, series_ticker: str, ticker: str
    ) -> tuple[int, Any]:
        start, end = int(request.query["start_ts"]), int(request.query["end_ts"])
        candles = [
            c for c in self.candlesticks.get(ticker, []) if start <= c["end_period_ts"] <= end
        ]
        return 200, {"ticker": ticker, "candlesticks": candles}

    def _get_balance(self, request: RecordedRequest) -> tuple[int, Any]:
        exposure = sum((s.cost for s in self.positions.values()), ZERO)
        return 200, {
            "balance": int((self.cash * 100).to_integral_value(rounding=ROUND_FLOOR)),
            "balance_dollars": amount_str(self.cash),
            "portfolio_value": int((exposure * 100).to_integral_value(rounding=ROUND_FLOOR)),
            "updated_ts": int(self.now.timestamp()),
        }

    def _get_positions(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        filters = set((q.get("count_filter") or "").split(",")) - {""}
        rows = []
        for ticker, state in self.positions.items():
            if q.get("ticker") and ticker != q["ticker"]:
                continue
            if q.get("event_ticker") and self.markets[ticker]["event_ticker"] != q["event_ticker"]:
                continue
            if "position" in filters and state.position == 0:
                continue
            if "total_traded" in filters and state.total_traded == 0:
                continue
            rows.append(
                {
                    "ticker": ticker,
                    "exchange_index": 0,
                    "total_traded_dollars": amount_str(state.total_traded),
                    "position_fp": count_str(state.position),
                    "market_exposure_dollars": amount_str(state.cost),
                    "realized_pnl_dollars": amount_str(state.realized),
                    "fees_paid_dollars": amount_str(state.fees),
                    "last_updated_ts": iso(state.updated),
                }
            )
        page = self._page(request, rows, "market_positions")
        page["event_positions"] = []
        return 200, page

    def _get_orders(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        events = set(q["event_ticker"].split(",")) if q.get("event_ticker") else None
        if q.get("status") and q["status"] not in ("resting", "canceled", "executed"):
            raise _Reply(400, "bad_request", "invalid status")
        rows = [
            self._order_json(o)
            for o in reversed(list(self.orders.values()))
            if (not q.get("ticker") or o.ticker == q["ticker"])
            and (events is None or self.markets[o.ticker]["event_ticker"] in events)
            and (not q.get("status") or o.status == q["status"])
        ]
        return 200, self._page(request, rows, "orders")

    def _get_order(self, request: RecordedRequest, order_id: str) -> tuple[int, Any]:
        if order_id not in self.orders:
            raise _Reply(404, "not_found", "order not found")
        return 200, {"order": self._order_json(self.orders[order_id])}

    def _get_fills(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        rows = [
            f
            for f in self.fills
            if (not q.get("ticker") or f["ticker"] == q["ticker"])
            and (not q.get("order_id") or f["order_id"] == q["order_id"])
        ]
        return 200, self._page(request, rows, "fills")

    def _get_settlements(self, request: RecordedRequest) -> tuple[int, Any]:
        q = request.query
        rows = [
            s
            for s in self.settlements
            if (not q.get("ticker") or s["ticker"] == q["ticker"])
            and (not q.get("event_ticker") or s["event_ticker"] == q["event_ticker"])
        ]
        return 200, self._page(request, rows, "settlements")

    def _create_order(self, request: RecordedRequest) -> tuple[int, Any]:
        body = request.json
        if not isinstance(body, dict):
            raise _Reply(400, "invalid_order", "body is not a JSON object")
        for name in (
            "ticker",
            "side",
            "count",
            "price",
            "time_in_force",
            "self_trade_prevention_type",
        ):
            if name not in body:
                raise _Reply(400, "invalid_order", f"{name} is required")
        for legacy in (
            "action",
            "yes_price",
            "no_price",
            "type",
            "buy_max_cost",
            "sell_position_floor",
        ):
            if legacy in body:
                raise _Reply(400, "invalid_order", f"{legacy} is not a V2 field")
        side, tif = body["side"], body["time_in_force"]
        if side not in ("bid", "ask") or tif not in (
            "fill_or_kill",
            "good_till_canceled",
            "immediate_or_cancel",
        ):
            raise _Reply(400, "invalid_order", "bad side or time_in_force")
        try:
            count, price = Decimal(body["count"]), Decimal(body["price"])
        except (ArithmeticError, TypeError, ValueError):
            raise _Reply(
                400, "invalid_order", "count and price must be fixed-point strings"
            ) from None
        if count <= 0 or count != count.quantize(Decimal("0.01")):
            raise _Reply(
                400, "invalid_order_size", "count must be positive with at most 2 decimals"
            )
        if not ZERO < price < ONE:
            raise _Reply(400, "invalid_order", "price must be strictly between 0 and 1")
        ticker = body["ticker"]
        market = self.markets.get(ticker)
        if market is None:
            raise _Reply(400, "market_not_found", "no such market")
        if market["status"] != "active" or not self.trading_active:
            raise _Reply(400, "market_closed", "the market is not open for trading")
        client_order_id = body.get("client_order_id") or None
        if client_order_id and any(
            o.client_order_id == client_order_id for o in self.open_orders()
        ):
            raise _Reply(409, "order_already_exists", "an open order has this client_order_id")
        reduce_only = bool(body.get("reduce_only"))
        position = self.position(ticker)
        held = position if side == "ask" else -position  # contracts this order would close
        if reduce_only and count > max(held, ZERO):
            raise _Reply(400, "invalid_order", "reduce_only order would increase the position")
        if (
            not reduce_only
            and count * _outcome_price(side, price) + trading_fee(count, price, TAKER_RATE)
            > self.cash
        ):
            raise _Reply(400, "available_balance_too_low", "insufficient balance")

        crossing = self._crossing_levels(ticker, side, price)
        if body.get("post_only") and crossing:
            raise _Reply(400, "invalid_order", "post_only order would cross")
        order = _OrderState(
            order_id=self._new_id(),
            client_order_id=client_order_id,
            ticker=ticker,
            side=side,
            price=price,
            initial=count,
            remaining=count,
            time_in_force=tif,
            self_trade_prevention_type=body["self_trade_prevention_type"],
            created=self.now,
            expiration_time=body.get("expiration_time"),
        )
        available = sum((c for _, c in crossing), ZERO)
        fee_total = ZERO
        cost_total = ZERO
        if not (tif == "fill_or_kill" and available < count):
            book = self.books[ticker]["no" if side == "bid" else "yes"]
            for level_price, level_count in crossing:
                if order.remaining == 0:
                    break
                quantity = min(order.remaining, level_count)
                yes_price = ONE - level_price if side == "bid" else level_price
                fee = trading_fee(order.filled + quantity, yes_price, TAKER_RATE) - trading_fee(
                    order.filled, yes_price, TAKER_RATE
                )
                self._record_fill(order, quantity, yes_price, fee, is_taker=True)
                book[level_price] -= quantity
                if book[level_price] == 0:
                    del book[level_price]
                order.filled += quantity
                order.remaining -= quantity
                order.taker_cost += quantity * _outcome_price(side, yes_price)
                order.taker_fees += fee
                fee_total += fee
                cost_total += quantity * yes_price
        if order.remaining == 0:
            order.status = "executed"
        elif tif != "good_till_canceled":
            order.status, order.remaining = "canceled", ZERO
        self.orders[order.order_id] = order
        self.accepted.append(
            AcceptedOrder(
                order.order_id, client_order_id, ticker, side, count, price, tif, dict(body)
            )
        )
        reply: dict[str, Any] = {
            "order_id": order.order_id,
            "fill_count": count_str(order.filled),
            "remaining_count": count_str(order.remaining),
            "ts_ms": int(self.now.timestamp() * 1000),
        }
        if client_order_id:
            reply["client_order_id"] = client_order_id
        if order.filled:
            reply["average_fill_price"] = amount_str(
                (cost_total / order.filled).quantize(Decimal("0.000001"))
            )
            reply["average_fee_paid"] = amount_str(
                (fee_total / order.filled).quantize(Decimal("0.000001"))
            )
        return 201, reply

    def _crossing_levels(
        self, ticker: str, side: str, price: Decimal
    ) -> list[tuple[Decimal, Decimal]]:
        """External levels an order at YES ``price`` would take, best first (no self-trade)."""
        if side == "bid":  # buying YES takes NO bids priced at 1 - p_no <= price
            levels = self.books[ticker]["no"]
            return sorted(
                ((p, c) for p, c in levels.items() if c > 0 and ONE - p <= price), reverse=True
            )
        levels = self.books[ticker]["yes"]  # selling YES takes YES bids at >= price
        return sorted(((p, c) for p, c in levels.items() if c > 0 and p >= price), reverse=True)

    def _cancel_order(self, request: RecordedRequest, order_id: str) -> tuple[int, Any]:
        order = self.orders.get(order_id)
        if order is None or order.status != "resting":
            raise _Reply(404, "not_found", "no open order with this id")
        reduced_by = order.remaining
        order.status, order.remaining, order.updated = "canceled", ZERO, self.now
        reply = {
            "order_id": order_id,
            "reduced_by": count_str(reduced_by),
            "ts_ms": int(self.now.timestamp() * 1000),
        }
        if order.client_order_id:
            reply["client_order_id"] = order.client_order_id
        return 200, reply


def _outcome_price(side: str, yes_price: Decimal) -> Decimal:
    """Price per contract of the outcome bought: YES for a bid, NO (1 − YES) for an ask."""
    return yes_price if side == "bid" else ONE - yes_price
