"""The Kalshi Trade API v2 client: one class around one ``httpx.Client``.

Everything that talks to Kalshi goes through ``KalshiClient``; it owns the policy:

- signing (docs/KALSHI.md, Signing): RSA-PSS/SHA-256, MGF1(SHA-256), salt = digest length, over
  ``timestamp_ms + METHOD + path`` where ``path`` is the full URL path including ``/trade-api/v2``
  and without the query string;
- retries: only GETs are retried (429, 5xx, timeouts, transport errors) with bounded, jittered
  exponential backoff. Creating an order is never retried: anything but a clear answer raises
  ``KalshiOrderOutcomeUnknown`` so that the caller reconciles before trying again. Cancels are not
  retried either;
- rate limiting: a shared per-process ``RateLimiter`` with Kalshi's Read and Write buckets;
- parsing at the edge: replies become frozen dataclasses with ``Decimal`` money and aware UTC
  datetimes. Unknown fields are ignored; a missing required field or a malformed value raises
  ``KalshiParseError`` naming the object and the field (``record``, ``field``). Reads of market
  data (markets, events) take ``on_error`` to skip such a record instead (``log_skipped``);
  money records (orders, fills, positions, settlements, balance) are never skipped here.
  Whatever a reply holds, the client raises nothing but ``KalshiError``.

Secrets: the key id, the private key, PEM text and signatures never appear in logs, reprs or
error messages, and request headers are never logged.

``kalshi_client()`` builds a client from settings; it is the only place settings are read.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from markets.fees import FEE_TYPES
from markets.money import (
    ONE,
    ZERO,
    MoneyError,
    cents_to_dollars,
    parse_amount,
    parse_count,
    parse_price,
)
from markets.ratelimit import DEFAULT_COST, Bucket, RateLimiter, shared_rate_limiter

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
CANCEL_COST = 2  # docs/KALSHI.md, Rate limits: a V2 cancel costs 2 tokens; all else we call, 10.
MAX_PAGES = 10_000  # a loop guard on top of the repeated-cursor check

MARKET_STATUS_FILTERS = ("unopened", "open", "paused", "closed", "settled")
EVENT_STATUS_FILTERS = ("unopened", "open", "closed", "settled")
ORDER_STATUS_FILTERS = ("resting", "canceled", "executed")
OUTCOME_SIDES = ("yes", "no")
BOOK_SIDES = ("bid", "ask")
TIME_IN_FORCE = ("fill_or_kill", "good_till_canceled", "immediate_or_cancel")
SELF_TRADE_PREVENTION = ("taker_at_cross", "maker")
SETTLEMENT_RESULTS = (
    "yes",
    "no",
    "scalar",
    "void",
)  # "void" is documented for settlements, not in the spec enum
CANDLE_INTERVALS = (1, 60, 1440)
FEE_MULTIPLIER_QUANTUM = Decimal("0.000001")  # what Series.fee_multiplier stores
FEE_MULTIPLIER_LIMIT = Decimal(1_000_000)  # 12 digits, 6 of them decimals


# --- Errors ------------------------------------------------------------------------------------


class KalshiError(Exception):
    """Any failure talking to Kalshi.

    ``permanent`` says whether sending the same request again could succeed (4xx, bad replies:
    no; 429, 5xx, timeouts: yes). ``outcome_unknown`` is set on writes (create, cancel) whose
    effect on the exchange is not known: the caller must reconcile before acting again.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        permanent: bool,
        outcome_unknown: bool = False,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.permanent = permanent
        self.outcome_unknown = outcome_unknown
        self.details = details

    @property
    def is_duplicate_order(self) -> bool:
        """Kalshi answers 409 Conflict to a ``client_order_id`` that matches an open order."""
        return self.status == 409

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r}, "
            f"permanent={self.permanent}, outcome_unknown={self.outcome_unknown})"
        )


class KalshiConfigError(KalshiError):
    """The client cannot be built from the configuration (bad or missing key, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class KalshiAuthError(KalshiError):
    """401: bad key, bad signature or clock skew. Never retried; trading should halt."""


class KalshiRateLimited(KalshiError):
    """429 after the retry budget was spent."""


class KalshiParseError(KalshiError):
    """A reply that is not what the spec promises (bad JSON, missing or malformed field).

    ``record`` names the object (``Market[KX-1]``) and ``field`` the field, when the problem is
    in one record of a reply; callers that read lists use them to skip or refuse that record.
    """

    MAX_MESSAGE = 600  # a hostile reply can put megabytes into a value quoted in the message

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        record: str | None = None,
        field: str | None = None,
    ) -> None:
        if len(message) > self.MAX_MESSAGE:
            message = message[: self.MAX_MESSAGE - 1] + "…"
        super().__init__(message, status=status, permanent=True)
        self.record = record
        self.field = field


class KalshiOrderRejected(KalshiError):
    """Kalshi refused an order with a documented 4xx: it was not placed."""


class KalshiDuplicateOrder(KalshiOrderRejected):
    """409: the ``client_order_id`` matches an open order, i.e. it was already accepted."""


class KalshiOrderOutcomeUnknown(KalshiError):
    """The order may or may not have been placed (timeout, 5xx, 429, 2xx without an order...).

    ``order_id`` is set when a 2xx reply named the order but could not be read completely.
    """

    def __init__(
        self, message: str, *, status: int | None = None, order_id: str | None = None
    ) -> None:
        super().__init__(message, status=status, permanent=False, outcome_unknown=True)
        self.order_id = order_id


class OrderRequestError(KalshiError, ValueError):
    """An order refused on our side before anything was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def log_skipped(error: KalshiParseError) -> None:
    """An ``on_error`` for reads of market data: log the unreadable record and go on."""
    logger.warning("Skipped an unreadable record from Kalshi: %s", error.message)


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, details) from any of Kalshi's error bodies.

    Shapes seen: ``{code, message, details}`` (ErrorResponse), ``{"error": "..."}`` (429) and
    ``{"error": {code, message, details}}``. Anything else yields a short text excerpt.
    """
    try:
        body = json.loads(response.content)
    except ValueError:
        text = response.text.strip()
        return None, (text[:200] or None), None
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, str):
            return None, inner, None
        if isinstance(inner, dict):
            body = inner

        def text_field(name: str) -> str | None:
            value = body.get(name)
            return str(value)[:500] if value not in (None, "") else None

        return text_field("code"), text_field("message"), text_field("details")
    return None, None, None


def _error_from_response(method: str, path: str, response: httpx.Response) -> KalshiError:
    """Map a non-2xx reply to a ``KalshiError`` (for reads; writes refine this)."""
    status = response.status_code
    code, message, details = _error_fields(response)
    text = f"Kalshi {method} {path}: HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f": {message}"
    if status == 401:
        return KalshiAuthError(
            text + " (bad key, bad signature or clock skew)",
            status=status,
            code=code,
            permanent=True,
            details=details,
        )
    if status == 429:
        return KalshiRateLimited(text, status=status, code=code, permanent=False, details=details)
    permanent = 400 <= status < 500
    return KalshiError(text, status=status, code=code, permanent=permanent, details=details)


# --- Keys and signing --------------------------------------------------------------------------


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Load an unencrypted PEM RSA private key. Errors never contain the key text."""
    if isinstance(pem, str):
        if "\\n" in pem and "\n" not in pem:
            # A PEM pasted into a one-line environment variable.
            pem = pem.replace("\\n", "\n")
        data = pem.strip().encode()
    else:
        data = pem.strip()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KalshiConfigError(
            "the Kalshi private key is not an unencrypted PEM RSA private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KalshiConfigError("the Kalshi private key is not an RSA key")
    return key


def load_private_key_file(path: str | Path) -> rsa.RSAPrivateKey:
    """Load the PEM file named by ``KALSHI_PRIVATE_KEY_PATH`` (the path is not echoed)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KalshiConfigError(
            "the file named by KALSHI_PRIVATE_KEY_PATH does not exist"
        ) from None
    except OSError as exc:
        raise KalshiConfigError(
            f"the file named by KALSHI_PRIVATE_KEY_PATH cannot be read ({type(exc).__name__})"
        ) from None
    return load_private_key(data)


class KalshiSigner:
    """The API key id and RSA private key, and the one function that signs with them."""

    __slots__ = ("_key_id", "_private_key")

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        if not key_id:
            raise KalshiConfigError("the Kalshi API key id is empty")
        self._key_id = key_id
        self._private_key = private_key

    def sign(self, timestamp_ms: int, method: str, path: str) -> str:
        """Base64 RSA-PSS signature of ``timestamp_ms + METHOD + path`` (path without query)."""
        message = f"{timestamp_ms}{method.upper()}{path.split('?', 1)[0]}".encode()
        signature = self._private_key.sign(
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return base64.b64encode(signature).decode("ascii")

    def headers(self, method: str, path: str, timestamp_ms: int) -> dict[str, str]:
        return {
            "KALSHI-ACCESS-KEY": self._key_id,
            "KALSHI-ACCESS-TIMESTAMP": str(timestamp_ms),
            "KALSHI-ACCESS-SIGNATURE": self.sign(timestamp_ms, method, path),
        }

    def __repr__(self) -> str:
        return "<KalshiSigner key_id=[redacted]>"

    def __reduce__(self) -> Any:
        raise TypeError("KalshiSigner holds a private key and cannot be pickled")


# --- Parsing helpers ---------------------------------------------------------------------------

_MISSING = object()


# What names a record in an error, most specific first.
_RECORD_KEYS = ("fill_id", "order_id", "ticker", "event_ticker")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _sendable(text: str) -> bool:
    """Whether ``text`` can go into a URL (a lone surrogate from JSON cannot be encoded)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_key(key: str, limit: int = 80) -> str:
    """A record key as it appears in messages and logs: printable and of bounded length."""
    text = key if key.isprintable() else repr(key)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Fields:
    """Typed access to one JSON object; every failure names ``<Object>.<field>``."""

    __slots__ = ("label", "data")

    def __init__(self, label: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise KalshiParseError(f"{label}: expected a JSON object, got {_kind(data)}")
        key = next(
            (data[k] for k in _RECORD_KEYS if isinstance(data.get(k), str) and data[k]), None
        )
        self.label = f"{label}[{shown_key(key)}]" if key is not None else label
        self.data = data

    def fail(self, name: str, problem: str) -> KalshiParseError:
        return KalshiParseError(f"{self.label}.{name}: {problem}", record=self.label, field=name)

    def raw(self, name: str, optional: bool) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise self.fail(name, "missing" if value is _MISSING else "is null")
        return value

    def text(self, name: str, *, optional: bool = False) -> Any:
        value = self.raw(name, optional)
        if value is not None and not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {_kind(value)}")
        return value

    def nonempty(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise self.fail(name, "is empty")
        return value

    def choice(self, name: str, choices: Sequence[str], *, optional: bool = False) -> Any:
        value = self.text(name, optional=optional)
        if value is not None and value not in choices:
            raise self.fail(name, f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    def flag(self, name: str, *, optional: bool = False) -> Any:
        value = self.raw(name, optional)
        if value is not None and not isinstance(value, bool):
            raise self.fail(name, f"expected a boolean, got {_kind(value)}")
        return value

    def integer(self, name: str, *, optional: bool = False) -> Any:
        value = self.raw(name, optional)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(name, f"expected an integer, got {_kind(value)}")
        return value

    def number(self, name: str, *, optional: bool = False) -> Decimal | None:
        """A JSON number (parsed with ``parse_float=Decimal``, so exact)."""
        value = self.raw(name, optional)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self.fail(name, f"expected a number, got {_kind(value)}")
        return Decimal(value)

    def fee_type(self, name: str, *, optional: bool = False) -> str | None:
        """A series ``FeeType`` (or an event's override); an unknown one names itself."""
        value = self.text(name, optional=optional)
        if value is not None and value not in FEE_TYPES:
            raise self.fail(name, f"unknown fee type {value!r} (known: {', '.join(FEE_TYPES)})")
        return value

    def fee_multiplier(self, name: str, *, optional: bool = False) -> Decimal | None:
        """A fee multiplier: a JSON number (a double in the spec) taken exactly from its text
        (``str()`` of a float is its shortest repr), finite, >= 0, below 10⁶, at most 6
        decimals (what ``Series.fee_multiplier`` stores)."""
        value = self.raw(name, optional)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self.fail(name, f"expected a number, got {_kind(value)}")
        exact = Decimal(str(value))
        if not exact.is_finite() or exact < ZERO:
            raise self.fail(name, f"{value!r} is not a finite number >= 0")
        if exact >= FEE_MULTIPLIER_LIMIT:
            raise self.fail(name, f"{value!r} is too large (the limit is {FEE_MULTIPLIER_LIMIT})")
        if exact != exact.quantize(FEE_MULTIPLIER_QUANTUM, rounding=ROUND_FLOOR):
            raise self.fail(name, f"{value!r} has more than 6 decimal places")
        return exact

    def _money(self, name: str, optional: bool, parse: Callable[[Any, str], Decimal]) -> Any:
        value = self.text(name, optional=optional)
        if value is None:
            return None
        try:
            return parse(value, f"{self.label}.{name}")
        except MoneyError as exc:
            raise KalshiParseError(str(exc), record=self.label, field=name) from None
        except ArithmeticError:  # e.g. "1e999999" cannot be quantized to the unit
            raise self.fail(name, f"{value[:40]!r} is out of range") from None

    def price(self, name: str, *, optional: bool = False) -> Any:
        """A FixedPointDollars price in [0, 1], at most 4 decimals."""
        return self._money(name, optional, parse_price)

    def count(self, name: str, *, optional: bool = False) -> Any:
        """A FixedPointCount, at most 2 decimals."""
        return self._money(name, optional, parse_count)

    def amount(self, name: str, *, optional: bool = False) -> Any:
        """A FixedPointDollars amount (cost, fee, P&L, balance), at most 6 decimals."""
        return self._money(name, optional, parse_amount)

    def cents(self, name: str, *, optional: bool = False) -> Any:
        """One of the remaining integer-cent fields, as dollars."""
        value = self.integer(name, optional=optional)
        if value is None:
            return None
        try:
            return cents_to_dollars(value, f"{self.label}.{name}")
        except ArithmeticError:
            raise self.fail(name, "is out of range") from None

    def time(self, name: str, *, optional: bool = False) -> Any:
        """An ISO-8601 date-time with an offset, as an aware UTC datetime."""
        value = self.text(name, optional=optional)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(name, f"{value[:40]!r} is not an ISO-8601 date-time") from None
        if parsed.tzinfo is None:
            raise self.fail(name, f"{value!r} has no time zone")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past datetime.max in UTC
            raise self.fail(name, f"{value!r} is out of range") from None

    def unix_time(self, name: str, *, optional: bool = False) -> Any:
        """Integer Unix seconds, as an aware UTC datetime."""
        value = self.integer(name, optional=optional)
        if value is None:
            return None
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise self.fail(name, f"{value} is not a representable time") from None

    def items(self, name: str, *, optional: bool = False) -> list[Any]:
        value = self.raw(name, optional)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, got {_kind(value)}")
        return value


def _quote_or_none(value: Decimal | None, none_when: Decimal) -> Decimal | None:
    """Kalshi reports "no bid" as 0.0000 and "no ask" as 1.0000; we store None for both."""
    return None if value is None or value == none_when else value


def _fmt_count(count: Decimal) -> str:
    return f"{count:.2f}"


def _fmt_price(price: Decimal) -> str:
    return f"{price:.4f}"


# --- Results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeStatus:
    exchange_active: bool
    trading_active: bool
    estimated_resume_time: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> ExchangeStatus:
        f = _Fields("ExchangeStatus", data)
        return cls(
            exchange_active=f.flag("exchange_active"),
            trading_active=f.flag("trading_active"),
            estimated_resume_time=f.time("exchange_estimated_resume_time", optional=True),
        )

    @property
    def can_trade(self) -> bool:
        return self.exchange_active and self.trading_active


class PriceRange(NamedTuple):
    """One band of valid prices: ``start`` to ``end`` inclusive in steps of ``step``."""

    start: Decimal
    end: Decimal
    step: Decimal

    def contains(self, price: Decimal) -> bool:
        return self.start <= price <= self.end and (price - self.start) % self.step == 0


@dataclass(frozen=True)
class Market:
    ticker: str
    event_ticker: str
    market_type: str
    status: str  # response vocabulary: initialized|inactive|active|closed|determined|...
    yes_sub_title: str
    no_sub_title: str
    created_time: datetime
    updated_time: datetime
    open_time: datetime
    close_time: datetime
    latest_expiration_time: datetime
    settlement_timer_seconds: int
    notional_value: Decimal
    yes_bid: Decimal | None  # None: no bid (Kalshi sends 0.0000)
    yes_ask: Decimal | None  # None: no ask (Kalshi sends 1.0000)
    no_bid: Decimal | None
    no_ask: Decimal | None
    yes_bid_size: Decimal
    yes_ask_size: Decimal
    last_price: Decimal
    previous_yes_bid: Decimal
    previous_yes_ask: Decimal
    previous_price: Decimal
    volume: Decimal
    volume_24h: Decimal
    open_interest: Decimal
    result: str  # "yes" | "no" | "scalar" | "void" | "" (not determined)
    can_close_early: bool
    expiration_value: str
    rules_primary: str
    rules_secondary: str
    price_level_structure: str
    price_ranges: tuple[PriceRange, ...]
    title: str | None = None  # deprecated by Kalshi but still the best display name
    subtitle: str | None = None
    expected_expiration_time: datetime | None = None
    settlement_value: Decimal | None = None
    settlement_ts: datetime | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    functional_strike: str | None = None
    exchange_index: int | None = None
    fee_waiver_expiration_time: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> Market:
        f = _Fields("Market", data)
        ranges = []
        for index, item in enumerate(f.items("price_ranges")):
            r = _Fields(f"{f.label}.price_ranges[{index}]", item)
            price_range = PriceRange(r.price("start"), r.price("end"), r.price("step"))
            if price_range.step <= ZERO:  # contains() divides by it
                raise r.fail("step", f"{price_range.step} is not positive")
            ranges.append(price_range)
        return cls(
            ticker=f.nonempty("ticker"),
            event_ticker=f.text("event_ticker"),
            market_type=f.choice("market_type", ("binary", "scalar")),
            status=f.nonempty("status"),
            yes_sub_title=f.text("yes_sub_title"),
            no_sub_title=f.text("no_sub_title"),
            created_time=f.time("created_time"),
            updated_time=f.time("updated_time"),
            open_time=f.time("open_time"),
            close_time=f.time("close_time"),
            latest_expiration_time=f.time("latest_expiration_time"),
            settlement_timer_seconds=f.integer("settlement_timer_seconds"),
            notional_value=f.amount("notional_value_dollars"),
            yes_bid=_quote_or_none(f.price("yes_bid_dollars"), ZERO),
            yes_ask=_quote_or_none(f.price("yes_ask_dollars"), ONE),
            no_bid=_quote_or_none(f.price("no_bid_dollars"), ZERO),
            no_ask=_quote_or_none(f.price("no_ask_dollars"), ONE),
            yes_bid_size=f.count("yes_bid_size_fp"),
            yes_ask_size=f.count("yes_ask_size_fp"),
            last_price=f.price("last_price_dollars"),
            previous_yes_bid=f.price("previous_yes_bid_dollars"),
            previous_yes_ask=f.price("previous_yes_ask_dollars"),
            previous_price=f.price("previous_price_dollars"),
            volume=f.count("volume_fp"),
            volume_24h=f.count("volume_24h_fp"),
            open_interest=f.count("open_interest_fp"),
            result=f.choice("result", ("yes", "no", "scalar", "void", "")),
            can_close_early=f.flag("can_close_early"),
            expiration_value=f.text("expiration_value"),
            rules_primary=f.text("rules_primary"),
            rules_secondary=f.text("rules_secondary"),
            price_level_structure=f.text("price_level_structure"),
            price_ranges=tuple(ranges),
            title=f.text("title", optional=True),
            subtitle=f.text("subtitle", optional=True),
            expected_expiration_time=f.time("expected_expiration_time", optional=True),
            settlement_value=f.amount("settlement_value_dollars", optional=True),
            settlement_ts=f.time("settlement_ts", optional=True),
            strike_type=f.text("strike_type", optional=True),
            floor_strike=f.number("floor_strike", optional=True),
            cap_strike=f.number("cap_strike", optional=True),
            functional_strike=f.text("functional_strike", optional=True),
            exchange_index=f.integer("exchange_index", optional=True),
            fee_waiver_expiration_time=f.time("fee_waiver_expiration_time", optional=True),
        )

    def is_valid_price(self, price: Decimal) -> bool:
        """Whether ``price`` is on this market's tick grid (``price_ranges``)."""
        return any(r.contains(price) for r in self.price_ranges)

    @property
    def spread(self) -> Decimal | None:
        if self.yes_bid is None or self.yes_ask is None:
            return None
        return self.yes_ask - self.yes_bid


@dataclass(frozen=True)
class Event:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    collateral_return_type: str
    category: str | None = None
    strike_date: datetime | None = None
    strike_period: str | None = None
    last_updated_ts: datetime | None = None
    markets: tuple[Market, ...] = ()
    fee_type_override: str | None = None  # None: no override (the series' fee applies)
    fee_multiplier_override: Decimal | None = None

    @classmethod
    def from_json(cls, data: Any, markets: Sequence[Any] | None = None) -> Event:
        f = _Fields("Event", data)
        nested = f.items("markets", optional=True) if markets is None else list(markets)
        return cls(
            event_ticker=f.nonempty("event_ticker"),
            series_ticker=f.text("series_ticker"),
            title=f.text("title"),
            sub_title=f.text("sub_title"),
            mutually_exclusive=f.flag("mutually_exclusive"),
            collateral_return_type=f.text("collateral_return_type"),
            category=f.text("category", optional=True),
            strike_date=f.time("strike_date", optional=True),
            strike_period=f.text("strike_period", optional=True),
            last_updated_ts=f.time("last_updated_ts", optional=True),
            markets=tuple(Market.from_json(m) for m in nested),
            fee_type_override=f.fee_type("fee_type_override", optional=True),
            fee_multiplier_override=f.fee_multiplier("fee_multiplier_override", optional=True),
        )


@dataclass(frozen=True)
class Series:
    """A series and its fee structure (``fee_type``, ``fee_multiplier``; see markets.fees)."""

    ticker: str
    title: str
    category: str
    frequency: str
    fee_type: str
    fee_multiplier: Decimal
    last_updated_ts: datetime | None = None

    @classmethod
    def from_json(cls, data: Any) -> Series:
        f = _Fields("Series", data)
        fee_type = f.fee_type("fee_type")
        multiplier = f.fee_multiplier("fee_multiplier")
        assert fee_type is not None and multiplier is not None
        return cls(
            ticker=f.nonempty("ticker"),
            title=f.text("title"),
            category=f.text("category"),
            frequency=f.text("frequency"),
            fee_type=fee_type,
            fee_multiplier=multiplier,
            last_updated_ts=f.time("last_updated_ts", optional=True),
        )


Level = tuple[Decimal, Decimal]  # (price, count)


@dataclass(frozen=True)
class OrderBook:
    """Resting bids on both sides, each sorted ascending by price (the best bid is last).

    Kalshi only reports bids: a NO bid at p is a YES ask at 1 − p.
    """

    ticker: str
    yes_bids: tuple[Level, ...]
    no_bids: tuple[Level, ...]

    @classmethod
    def from_json(cls, ticker: str, data: Any) -> OrderBook:
        top = _Fields("OrderBookResponse", data)
        f = _Fields(f"OrderBook[{ticker}]", top.raw("orderbook_fp", False))

        def levels(name: str) -> tuple[Level, ...]:
            parsed: list[Level] = []
            for index, level in enumerate(f.items(name, optional=True)):
                where = f"{name}[{index}]"
                if not isinstance(level, list) or len(level) != 2:
                    raise f.fail(where, "expected [price, count]")
                if not all(isinstance(x, str) for x in level):
                    raise f.fail(where, "expected strings")
                try:
                    price = parse_price(level[0], f"{f.label}.{where}.price")
                    count = parse_count(level[1], f"{f.label}.{where}.count")
                except MoneyError as exc:
                    raise KalshiParseError(str(exc), record=f.label, field=where) from None
                except ArithmeticError:
                    raise f.fail(where, "is out of range") from None
                parsed.append((price, count))
            return tuple(sorted(parsed))

        return cls(ticker=ticker, yes_bids=levels("yes_dollars"), no_bids=levels("no_dollars"))

    def bids(self, outcome_side: str) -> tuple[Level, ...]:
        return self.yes_bids if outcome_side == "yes" else self.no_bids

    def asks(self, outcome_side: str) -> tuple[Level, ...]:
        """Asks for ``outcome_side``, ascending by price (best first), from the other side's bids."""
        other = self.no_bids if outcome_side == "yes" else self.yes_bids
        return tuple((ONE - price, count) for price, count in reversed(other))

    @property
    def best_yes_bid(self) -> Decimal | None:
        return self.yes_bids[-1][0] if self.yes_bids else None

    @property
    def best_no_bid(self) -> Decimal | None:
        return self.no_bids[-1][0] if self.no_bids else None

    @property
    def best_yes_ask(self) -> Decimal | None:
        return None if self.best_no_bid is None else ONE - self.best_no_bid

    @property
    def best_no_ask(self) -> Decimal | None:
        return None if self.best_yes_bid is None else ONE - self.best_yes_bid

    def buy_depth(self, outcome_side: str, limit: Decimal) -> Decimal:
        """Contracts of ``outcome_side`` that can be bought at ``limit`` or better (≤ limit)."""
        return sum((count for price, count in self.asks(outcome_side) if price <= limit), ZERO)

    def sell_depth(self, outcome_side: str, limit: Decimal) -> Decimal:
        """Contracts of ``outcome_side`` that can be sold at ``limit`` or better (≥ limit)."""
        return sum((count for price, count in self.bids(outcome_side) if price >= limit), ZERO)


@dataclass(frozen=True)
class Trade:
    trade_id: str
    ticker: str
    count: Decimal
    yes_price: Decimal
    no_price: Decimal
    taker_outcome_side: str
    taker_book_side: str
    created_time: datetime
    is_block_trade: bool

    @classmethod
    def from_json(cls, data: Any) -> Trade:
        f = _Fields("Trade", data)
        return cls(
            trade_id=f.nonempty("trade_id"),
            ticker=f.nonempty("ticker"),
            count=f.count("count_fp"),
            yes_price=f.price("yes_price_dollars"),
            no_price=f.price("no_price_dollars"),
            taker_outcome_side=f.choice("taker_outcome_side", OUTCOME_SIDES),
            taker_book_side=f.choice("taker_book_side", BOOK_SIDES),
            created_time=f.time("created_time"),
            is_block_trade=f.flag("is_block_trade"),
        )


@dataclass(frozen=True)
class Balance:
    balance: Decimal  # dollars, from balance_dollars (exact; the integer-cent field truncates)
    portfolio_value: Decimal  # dollars, from the integer-cent portfolio_value
    updated_ts: int

    @classmethod
    def from_json(cls, data: Any) -> Balance:
        f = _Fields("Balance", data)
        return cls(
            balance=f.amount("balance_dollars"),
            portfolio_value=f.cents("portfolio_value"),
            updated_ts=f.integer("updated_ts"),
        )


@dataclass(frozen=True)
class MarketPosition:
    ticker: str
    position: Decimal  # signed contracts: positive YES, negative NO
    total_traded: Decimal
    market_exposure: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    last_updated_ts: datetime
    exchange_index: int

    @classmethod
    def from_json(cls, data: Any) -> MarketPosition:
        f = _Fields("MarketPosition", data)
        return cls(
            ticker=f.nonempty("ticker"),
            position=f.count("position_fp"),
            total_traded=f.amount("total_traded_dollars"),
            market_exposure=f.amount("market_exposure_dollars"),
            realized_pnl=f.amount("realized_pnl_dollars"),
            fees_paid=f.amount("fees_paid_dollars"),
            last_updated_ts=f.time("last_updated_ts"),
            exchange_index=f.integer("exchange_index"),
        )


@dataclass(frozen=True)
class Order:
    order_id: str
    client_order_id: str | None  # None when the order was placed without one
    ticker: str
    outcome_side: str
    book_side: str
    type: str
    status: str  # resting | canceled | executed
    yes_price: Decimal
    no_price: Decimal
    fill_count: Decimal
    remaining_count: Decimal
    initial_count: Decimal
    taker_fill_cost: Decimal
    maker_fill_cost: Decimal
    taker_fees: Decimal
    maker_fees: Decimal
    expiration_time: datetime | None = None
    created_time: datetime | None = None
    last_update_time: datetime | None = None
    self_trade_prevention_type: str | None = None
    order_group_id: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Order:
        f = _Fields("Order", data)
        return cls(
            order_id=f.nonempty("order_id"),
            client_order_id=f.text("client_order_id") or None,
            ticker=f.nonempty("ticker"),
            outcome_side=f.choice("outcome_side", OUTCOME_SIDES),
            book_side=f.choice("book_side", BOOK_SIDES),
            type=f.text("type"),
            status=f.choice("status", ORDER_STATUS_FILTERS),
            yes_price=f.price("yes_price_dollars"),
            no_price=f.price("no_price_dollars"),
            fill_count=f.count("fill_count_fp"),
            remaining_count=f.count("remaining_count_fp"),
            initial_count=f.count("initial_count_fp"),
            taker_fill_cost=f.amount("taker_fill_cost_dollars"),
            maker_fill_cost=f.amount("maker_fill_cost_dollars"),
            taker_fees=f.amount("taker_fees_dollars"),
            maker_fees=f.amount("maker_fees_dollars"),
            expiration_time=f.time("expiration_time", optional=True),
            created_time=f.time("created_time", optional=True),
            last_update_time=f.time("last_update_time", optional=True),
            self_trade_prevention_type=f.text("self_trade_prevention_type", optional=True),
            order_group_id=f.text("order_group_id", optional=True),
        )

    @property
    def is_open(self) -> bool:
        return self.status == "resting"

    @property
    def fees(self) -> Decimal:
        return self.taker_fees + self.maker_fees

    @property
    def fill_cost(self) -> Decimal:
        return self.taker_fill_cost + self.maker_fill_cost


@dataclass(frozen=True)
class OrderAck:
    """Kalshi's 201 reply to a V2 create: the order exists with this id."""

    order_id: str
    client_order_id: str | None
    fill_count: Decimal
    remaining_count: Decimal
    average_fill_price: Decimal | None
    average_fee_paid: Decimal | None
    ts_ms: int

    @classmethod
    def from_json(cls, data: Any) -> OrderAck:
        f = _Fields("OrderAck", data)
        return cls(
            order_id=f.nonempty("order_id"),
            client_order_id=f.text("client_order_id", optional=True) or None,
            fill_count=f.count("fill_count"),
            remaining_count=f.count("remaining_count"),
            # averages can carry more than 4 decimals, so they are amounts, not tick prices
            average_fill_price=f.amount("average_fill_price", optional=True),
            average_fee_paid=f.amount("average_fee_paid", optional=True),
            ts_ms=f.integer("ts_ms"),
        )


@dataclass(frozen=True)
class CancelAck:
    order_id: str
    client_order_id: str | None
    reduced_by: Decimal
    ts_ms: int

    @classmethod
    def from_json(cls, data: Any) -> CancelAck:
        f = _Fields("CancelAck", data)
        return cls(
            order_id=f.nonempty("order_id"),
            client_order_id=f.text("client_order_id", optional=True) or None,
            reduced_by=f.count("reduced_by"),
            ts_ms=f.integer("ts_ms"),
        )


@dataclass(frozen=True)
class Fill:
    fill_id: str
    order_id: str
    ticker: str
    outcome_side: str
    book_side: str
    count: Decimal
    yes_price: Decimal
    no_price: Decimal
    is_taker: bool
    fee_cost: Decimal
    created_time: datetime

    @classmethod
    def from_json(cls, data: Any) -> Fill:
        f = _Fields("Fill", data)
        created = f.time("created_time", optional=True)
        if created is None:
            # created_time is optional in the spec; the legacy ``ts`` (Unix seconds) is the fallback.
            created = f.unix_time("ts", optional=True)
            if created is None:
                raise f.fail("created_time", "missing (and no ts either)")
        return cls(
            fill_id=f.nonempty("fill_id"),
            order_id=f.nonempty("order_id"),
            ticker=f.nonempty("ticker"),
            outcome_side=f.choice("outcome_side", OUTCOME_SIDES),
            book_side=f.choice("book_side", BOOK_SIDES),
            count=f.count("count_fp"),
            yes_price=f.price("yes_price_dollars"),
            no_price=f.price("no_price_dollars"),
            is_taker=f.flag("is_taker"),
            fee_cost=f.amount("fee_cost"),
            created_time=created,
        )


@dataclass(frozen=True)
class Settlement:
    ticker: str
    event_ticker: str
    market_result: str
    yes_count: Decimal
    no_count: Decimal
    yes_total_cost: Decimal
    no_total_cost: Decimal
    revenue: Decimal  # dollars (Kalshi sends integer cents)
    value: Decimal | None  # dollars per contract for scalar results (integer cents), may be null
    fee_cost: Decimal
    settled_time: datetime

    @classmethod
    def from_json(cls, data: Any) -> Settlement:
        f = _Fields("Settlement", data)
        return cls(
            ticker=f.nonempty("ticker"),
            event_ticker=f.text("event_ticker"),
            market_result=f.choice("market_result", SETTLEMENT_RESULTS),
            yes_count=f.count("yes_count_fp"),
            no_count=f.count("no_count_fp"),
            yes_total_cost=f.amount("yes_total_cost_dollars"),
            no_total_cost=f.amount("no_total_cost_dollars"),
            revenue=f.cents("revenue"),
            value=f.cents("value", optional=True),
            fee_cost=f.amount("fee_cost"),
            settled_time=f.time("settled_time"),
        )


class Ohlc(NamedTuple):
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None


@dataclass(frozen=True)
class Candlestick:
    end_period_time: datetime
    yes_bid: Ohlc
    yes_ask: Ohlc
    price: Ohlc  # trade prices; all None for a period without trades
    volume: Decimal
    open_interest: Decimal

    @classmethod
    def from_json(cls, data: Any) -> Candlestick:
        f = _Fields("Candlestick", data)

        def ohlc(name: str, optional: bool) -> Ohlc:
            g = _Fields(f"{f.label}.{name}", f.raw(name, optional) or {})
            return Ohlc(
                *(
                    g.price(f"{part}_dollars", optional=optional)
                    for part in ("open", "high", "low", "close")
                )
            )

        return cls(
            end_period_time=f.unix_time("end_period_ts"),
            yes_bid=ohlc("yes_bid", False),
            yes_ask=ohlc("yes_ask", False),
            price=ohlc("price", True),
            volume=f.count("volume_fp"),
            open_interest=f.count("open_interest_fp"),
        )


# --- Order requests ----------------------------------------------------------------------------


def _unix_seconds(value: int | datetime) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise OrderRequestError("expiration_time must be an aware datetime")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int):
        raise OrderRequestError("expiration_time must be Unix seconds or a datetime")
    return value


_CLIENT_ORDER_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-:+=/"
)


@dataclass(frozen=True)
class OrderRequest:
    """A V2 order: ``side`` is the YES book side (``bid`` buys YES, ``ask`` sells YES = buys NO)
    and ``price`` is always the YES price.

    Guards. Kalshi's V2 create has no ``buy_max_cost`` or ``sell_position_floor`` (they existed
    only on the deprecated legacy endpoint), so they are enforced here, before anything is sent:

    - ``buy_max_cost``: the order is refused if ``count × price paid`` exceeds it, where the price
      paid is ``price`` for a bid and ``1 − price`` for an ask (buying NO). Fees are not included.
      It does not apply to ``reduce_only`` orders, which only close contracts.
    - ``sell_position_floor``: for an order that reduces a position; needs ``position`` (the
      current signed position, YES positive). It is refused if the contracts held on the side
      being closed would fall below the floor, and it is always sent with ``reduce_only=True`` so
      that the exchange itself refuses to flip the position.
    """

    ticker: str
    side: str
    count: Decimal
    price: Decimal
    time_in_force: str = "good_till_canceled"
    self_trade_prevention_type: str = "taker_at_cross"
    client_order_id: str | None = None
    expiration_time: int | datetime | None = None  # Unix seconds; GTC only
    post_only: bool = False
    reduce_only: bool = False
    cancel_order_on_pause: bool = False
    buy_max_cost: Decimal | None = None
    sell_position_floor: Decimal | None = None
    position: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.ticker:
            raise OrderRequestError("order: ticker is empty")
        if self.side not in BOOK_SIDES:
            raise OrderRequestError(f"order: side must be 'bid' or 'ask', got {self.side!r}")
        try:
            count = parse_count(self.count, "order count")
            price = parse_price(self.price, "order price")
        except MoneyError as exc:
            raise OrderRequestError(str(exc)) from None
        if count <= ZERO:
            raise OrderRequestError(f"order: count must be positive, got {count}")
        if not ZERO < price < ONE:
            raise OrderRequestError(f"order: price must be strictly between 0 and 1, got {price}")
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "price", price)
        if self.time_in_force not in TIME_IN_FORCE:
            raise OrderRequestError(
                f"order: time_in_force {self.time_in_force!r} is not one of {TIME_IN_FORCE}"
            )
        if self.self_trade_prevention_type not in SELF_TRADE_PREVENTION:
            raise OrderRequestError(
                f"order: self_trade_prevention_type {self.self_trade_prevention_type!r} is not one of {SELF_TRADE_PREVENTION}"
            )
        if self.client_order_id is not None:
            cid = self.client_order_id
            if not cid or len(cid) > 64 or not set(cid) <= _CLIENT_ORDER_ID_CHARS:
                raise OrderRequestError(
                    "order: client_order_id must be 1-64 characters of [A-Za-z0-9_:+=/-]"
                )
        if self.expiration_time is not None:
            if self.time_in_force != "good_till_canceled":
                raise OrderRequestError(
                    "order: expiration_time is only allowed with good_till_canceled"
                )
            object.__setattr__(self, "expiration_time", _unix_seconds(self.expiration_time))
        if self.post_only and self.time_in_force != "good_till_canceled":
            raise OrderRequestError(
                "order: post_only needs good_till_canceled (it must be able to rest)"
            )
        self._check_buy_max_cost()
        self._check_sell_position_floor()

    @property
    def outcome_side(self) -> str:
        """The outcome this order buys (or, if reduce_only, the one it closes the opposite of)."""
        return "yes" if self.side == "bid" else "no"

    @property
    def outcome_price(self) -> Decimal:
        """Price per contract of the outcome bought: ``price`` for a bid, ``1 − price`` for an ask."""
        return self.price if self.side == "bid" else ONE - self.price

    @property
    def max_cost(self) -> Decimal:
        """The most the contracts can cost (fees excluded)."""
        return self.count * self.outcome_price

    def _check_buy_max_cost(self) -> None:
        if self.buy_max_cost is None or self.reduce_only:
            return
        if self.max_cost > self.buy_max_cost:
            raise OrderRequestError(
                f"order: {self.count} × {self.outcome_price} = {self.max_cost} exceeds buy_max_cost {self.buy_max_cost}"
            )

    def _check_sell_position_floor(self) -> None:
        floor = self.sell_position_floor
        if floor is None:
            return
        if floor < ZERO:
            raise OrderRequestError("order: sell_position_floor must not be negative")
        if self.position is None:
            raise OrderRequestError("order: sell_position_floor needs the current position")
        # An ask closes YES contracts (position > 0); a bid closes NO contracts (position < 0).
        held = self.position if self.side == "ask" else -self.position
        if held <= ZERO:
            raise OrderRequestError(
                f"order: no {'YES' if self.side == 'ask' else 'NO'} contracts to sell (position {self.position})"
            )
        if held - self.count < floor:
            raise OrderRequestError(
                f"order: selling {self.count} of {held} would go below sell_position_floor {floor}"
            )
        object.__setattr__(self, "reduce_only", True)

    def to_body(self) -> dict[str, Any]:
        """The CreateOrderV2Request JSON body."""
        body: dict[str, Any] = {
            "ticker": self.ticker,
            "side": self.side,
            "count": _fmt_count(self.count),
            "price": _fmt_price(self.price),
            "time_in_force": self.time_in_force,
            "self_trade_prevention_type": self.self_trade_prevention_type,
            "post_only": self.post_only,
            "reduce_only": self.reduce_only,
            "cancel_order_on_pause": self.cancel_order_on_pause,
        }
        if self.client_order_id is not None:
            body["client_order_id"] = self.client_order_id
        if self.expiration_time is not None:
            body["expiration_time"] = self.expiration_time
        return body

    @classmethod
    def buy(
        cls, *, ticker: str, outcome_side: str, count: Decimal, price: Decimal, **kwargs: Any
    ) -> OrderRequest:
        """Buy ``outcome_side`` at ``price`` (that outcome's price)."""
        if outcome_side not in OUTCOME_SIDES:
            raise OrderRequestError(
                f"order: outcome_side must be 'yes' or 'no', got {outcome_side!r}"
            )
        if outcome_side == "yes":
            return cls(ticker=ticker, side="bid", count=count, price=price, **kwargs)
        return cls(ticker=ticker, side="ask", count=count, price=ONE - _as_price(price), **kwargs)

    @classmethod
    def sell(
        cls, *, ticker: str, outcome_side: str, count: Decimal, price: Decimal, **kwargs: Any
    ) -> OrderRequest:
        """Sell held ``outcome_side`` contracts at ``price`` (that outcome's price); reduce-only."""
        if outcome_side not in OUTCOME_SIDES:
            raise OrderRequestError(
                f"order: outcome_side must be 'yes' or 'no', got {outcome_side!r}"
            )
        kwargs.setdefault("reduce_only", True)
        if outcome_side == "yes":
            return cls(ticker=ticker, side="ask", count=count, price=price, **kwargs)
        return cls(ticker=ticker, side="bid", count=count, price=ONE - _as_price(price), **kwargs)


def _as_price(value: Any) -> Decimal:
    try:
        return parse_price(value, "order price")
    except MoneyError as exc:
        raise OrderRequestError(str(exc)) from None


# --- The client --------------------------------------------------------------------------------


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; sequences become Kalshi's comma lists."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            value = ",".join(sorted(value) if isinstance(value, set | frozenset) else value)
            if not value:
                continue
        out[name] = value
    return out


def _check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_limit(limit: int, maximum: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ValueError(f"limit must be an integer from 1 to {maximum}; got {limit!r}")


class KalshiClient:
    """Kalshi Trade API v2 over one ``httpx.Client``. See the module docstring for the policy.

    ``private_key`` may be a loaded RSA key or PEM text. Without a key only public endpoints work
    (no auth headers are sent). ``rate_limiter=None`` disables client-side limiting (tests); the
    factory passes the shared per-process limiter.

    ``subaccount`` (0 = the primary account, 1-63 numbered subaccounts) scopes every call that
    takes one: balance, positions, orders, fills and settlements (query) and the V2 create
    (body) and cancel (query). Unset, nothing is sent and Kalshi applies its own default: the
    primary account for balance, positions and order writes, but *all* subaccounts for the
    orders, fills and settlements lists.
    """

    def __init__(
        self,
        *,
        base_url: str,
        key_id: str | None = None,
        private_key: rsa.RSAPrivateKey | str | bytes | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        subaccount: int | None = None,
    ) -> None:
        if subaccount is not None and (
            isinstance(subaccount, bool) or not isinstance(subaccount, int) or subaccount < 0
        ):
            raise ValueError(f"subaccount must be an integer >= 0; got {subaccount!r}")
        self.subaccount = subaccount
        if (key_id is None) != (private_key is None):
            raise KalshiConfigError(
                "Kalshi auth needs both the API key id and the private key, or neither"
            )
        if private_key is not None and not isinstance(private_key, rsa.RSAPrivateKey):
            private_key = load_private_key(private_key)
        self._signer = (
            KalshiSigner(key_id, private_key)
            if key_id is not None and private_key is not None
            else None
        )
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "kalshi-trading-desk/0.1"},
            follow_redirects=False,
        )
        self._rate_limiter = rate_limiter
        self._sleep = sleep
        self.max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rand = rand
        self._clock = clock

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return self._signer is not None

    def __repr__(self) -> str:
        return f"<KalshiClient {self.base_url} authenticated={self.authenticated}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KalshiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        bucket: Bucket = "read",
        cost: int = DEFAULT_COST,
    ) -> httpx.Response:
        request = self._http.build_request(method, path, params=params or None, json=json_body)
        if self._rate_limiter is not None:
            self._rate_limiter.acquire(bucket, cost)
        if self._signer is not None:
            # Sign what goes on the wire: the full path (with /trade-api/v2), never the query.
            wire_path = request.url.raw_path.decode("ascii").split("?", 1)[0]
            timestamp_ms = int(self._clock() * 1000)
            request.headers.update(self._signer.headers(method, wire_path, timestamp_ms))
        return self._http.send(request)

    def _decode(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise KalshiParseError(
                f"Kalshi {method} {path}: HTTP {response.status_code} reply is not JSON",
                status=response.status_code,
            ) from None
        if not isinstance(body, dict):
            raise KalshiParseError(
                f"Kalshi {method} {path}: reply is a JSON {_kind(body)}, expected an object",
                status=response.status_code,
            )
        return body

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the step is fixed, half is random."""
        step = min(self._backoff_cap, self._backoff_base * (2**attempt))
        return step / 2 + step / 2 * self._rand()

    def _get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        accept: Callable[[httpx.Response], bool] | None = None,
    ) -> dict[str, Any]:
        """GET with retries on 429, 5xx, timeouts and transport errors. ``accept`` lets a caller
        treat a non-2xx reply as an answer (e.g. a 503 carrying ExchangeStatus)."""
        attempt = 0
        while True:
            try:
                response = self._send("GET", path, params=params)
            except httpx.TransportError as exc:
                error: KalshiError = KalshiError(
                    f"Kalshi GET {path}: {type(exc).__name__} ({'timeout' if isinstance(exc, httpx.TimeoutException) else 'transport error'})",
                    permanent=False,
                )
            else:
                if response.is_success or (accept is not None and accept(response)):
                    return self._decode("GET", path, response)
                error = _error_from_response("GET", path, response)
                if error.permanent:
                    raise error
            if attempt >= self.max_retries:
                raise error
            delay = self._backoff(attempt)
            attempt += 1
            logger.warning(
                "%s; retry %d of %d in %.2fs", error.message, attempt, self.max_retries, delay
            )
            self._sleep(delay)

    def _paginate(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any],
        parse: Callable[[Any], Any],
        *,
        limit: int,
        on_error: Callable[[KalshiParseError], None] | None = None,
    ) -> Iterator[Any]:
        """Follow ``cursor`` until it comes back empty or null; a repeated cursor is an error.

        Each page is parsed completely before any of its items is yielded. An item that cannot
        be parsed raises ``KalshiParseError``; with ``on_error``, it is passed the error instead
        and the item is left out (for records that may be skipped, never for money records).
        """
        cursor: str | None = None
        seen: set[str] = set()
        for _page in range(MAX_PAGES):
            query = dict(params, limit=limit)
            if cursor:
                query["cursor"] = cursor
            body = self._get(path, query)
            page = _Fields(f"{path} page", body)
            items = []
            for item in page.items(key):
                try:
                    items.append(parse(item))
                except KalshiParseError as exc:
                    if on_error is None:
                        raise
                    on_error(exc)
            next_cursor = page.text("cursor", optional=True)
            if next_cursor and not _sendable(next_cursor):
                raise page.fail("cursor", "cannot be sent back (not valid Unicode text)")
            yield from items
            if not next_cursor:
                return
            if next_cursor in seen or next_cursor == cursor:
                raise KalshiError(
                    f"Kalshi GET {path}: the server repeated a pagination cursor", permanent=True
                )
            seen.add(next_cursor)
            cursor = next_cursor
        raise KalshiError(f"Kalshi GET {path}: more than {MAX_PAGES} pages", permanent=True)

    # -- exchange and market data ----------------------------------------------------------------

    def server_time(self) -> datetime | None:
        """Kalshi's clock, from the ``Date`` header of a public read (None if absent or bad).

        Used to measure clock skew: signed requests carry our timestamp, and a skewed clock
        gives 401s.
        """
        response = self._send("GET", "/exchange/status")
        header = response.headers.get("date")
        if not header:
            return None
        try:
            return parsedate_to_datetime(header).astimezone(UTC)
        except (TypeError, ValueError):
            return None

    def get_exchange_status(self) -> ExchangeStatus:
        """Exchange status. During maintenance Kalshi answers 500/503/504 *with* an ExchangeStatus
        body; that is an answer (exchange inactive), not an error."""

        def carries_status(response: httpx.Response) -> bool:
            if response.status_code not in (500, 503, 504):
                return False
            try:
                body = json.loads(response.content)
            except ValueError:
                return False
            return isinstance(body, dict) and "exchange_active" in body and "trading_active" in body

        return ExchangeStatus.from_json(self._get("/exchange/status", accept=carries_status))

    def iter_events(
        self,
        *,
        status: str | None = None,
        series_ticker: str | None = None,
        with_nested_markets: bool = False,
        min_close_ts: int | None = None,
        limit: int = 200,
        on_error: Callable[[KalshiParseError], None] | None = None,
    ) -> Iterator[Event]:
        """All events matching the filters. ``on_error``: skip unreadable events (``_paginate``)."""
        _check_choice("status", status, EVENT_STATUS_FILTERS)
        _check_limit(limit, 200)
        params = _params(
            status=status,
            series_ticker=series_ticker,
            with_nested_markets=with_nested_markets or None,
            min_close_ts=min_close_ts,
        )
        return self._paginate(
            "/events", "events", params, Event.from_json, limit=limit, on_error=on_error
        )

    def get_events(self, **filters: Any) -> list[Event]:
        return list(self.iter_events(**filters))

    def get_series(self, series_ticker: str) -> Series:
        """One series with its fee structure (``GET /series/{series_ticker}``)."""
        body = self._get(f"/series/{quote(series_ticker, safe='')}")
        return Series.from_json(_Fields("GetSeriesResponse", body).raw("series", False))

    def get_event(self, event_ticker: str, *, with_nested_markets: bool = True) -> Event:
        body = self._get(
            f"/events/{quote(event_ticker, safe='')}",
            _params(with_nested_markets=with_nested_markets),
        )
        top = _Fields("GetEventResponse", body)
        event = top.raw("event", False)
        nested = event.get("markets") if isinstance(event, dict) else None
        # The top-level ``markets`` is deprecated; use it only if the event has none nested.
        markets = nested if nested else top.items("markets", optional=True)
        return Event.from_json(event, markets=markets)

    def iter_markets(
        self,
        *,
        status: str | None = None,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        tickers: Sequence[str] | None = None,
        min_close_ts: int | None = None,
        max_close_ts: int | None = None,
        min_updated_ts: int | None = None,
        mve_filter: str | None = None,
        limit: int = 1000,
        on_error: Callable[[KalshiParseError], None] | None = None,
    ) -> Iterator[Market]:
        """All markets matching the filters, following the cursor to the end.

        ``status`` is the *filter* vocabulary (unopened|open|paused|closed|settled), one value.
        ``on_error``: unreadable markets are passed to it and skipped (see ``_paginate``).
        """
        _check_choice("status", status, MARKET_STATUS_FILTERS)
        _check_choice("mve_filter", mve_filter, ("only", "exclude"))
        _check_limit(limit, 1000)
        params = _params(
            status=status,
            series_ticker=series_ticker,
            event_ticker=event_ticker,
            tickers=list(tickers) if tickers is not None else None,
            min_close_ts=min_close_ts,
            max_close_ts=max_close_ts,
            min_updated_ts=min_updated_ts,
            mve_filter=mve_filter,
        )
        return self._paginate(
            "/markets", "markets", params, Market.from_json, limit=limit, on_error=on_error
        )

    def get_markets(self, **filters: Any) -> list[Market]:
        return list(self.iter_markets(**filters))

    def get_market(self, ticker: str) -> Market:
        body = self._get(f"/markets/{quote(ticker, safe='')}")
        return Market.from_json(_Fields("GetMarketResponse", body).raw("market", False))

    def get_orderbook(self, ticker: str, depth: int = 0) -> OrderBook:
        """The order book; ``depth`` 0 means all levels, else 1-100 levels per side."""
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 100:
            raise ValueError(f"depth must be an integer from 0 to 100; got {depth!r}")
        body = self._get(
            f"/markets/{quote(ticker, safe='')}/orderbook", _params(depth=depth or None)
        )
        return OrderBook.from_json(ticker, body)

    def iter_trades(
        self,
        *,
        ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        limit: int = 1000,
    ) -> Iterator[Trade]:
        _check_limit(limit, 1000)
        params = _params(ticker=ticker, min_ts=min_ts, max_ts=max_ts)
        return self._paginate("/markets/trades", "trades", params, Trade.from_json, limit=limit)

    def get_trades(self, **filters: Any) -> list[Trade]:
        return list(self.iter_trades(**filters))

    def get_market_candlesticks(
        self,
        series_ticker: str,
        ticker: str,
        *,
        start_ts: int,
        end_ts: int,
        period_interval: int = 60,
    ) -> list[Candlestick]:
        if period_interval not in CANDLE_INTERVALS:
            raise ValueError(
                f"period_interval must be one of {CANDLE_INTERVALS}; got {period_interval!r}"
            )
        body = self._get(
            f"/series/{quote(series_ticker, safe='')}/markets/{quote(ticker, safe='')}/candlesticks",
            _params(start_ts=start_ts, end_ts=end_ts, period_interval=period_interval),
        )
        return [
            Candlestick.from_json(c)
            for c in _Fields("GetMarketCandlesticksResponse", body).items("candlesticks")
        ]

    # -- portfolio --------------------------------------------------------------------------------

    def get_balance(self) -> Balance:
        return Balance.from_json(
            self._get("/portfolio/balance", _params(subaccount=self.subaccount))
        )

    def iter_positions(
        self,
        *,
        ticker: str | None = None,
        event_ticker: str | None = None,
        count_filter: str | None = "position",
        limit: int = 1000,
    ) -> Iterator[MarketPosition]:
        """Market positions; by default only markets with a non-zero position."""
        _check_limit(limit, 1000)
        params = _params(
            ticker=ticker,
            event_ticker=event_ticker,
            count_filter=count_filter,
            subaccount=self.subaccount,
        )
        return self._paginate(
            "/portfolio/positions",
            "market_positions",
            params,
            MarketPosition.from_json,
            limit=limit,
        )

    def get_positions(self, **filters: Any) -> list[MarketPosition]:
        return list(self.iter_positions(**filters))

    def iter_orders(
        self,
        *,
        ticker: str | None = None,
        event_ticker: str | Sequence[str] | None = None,
        status: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        limit: int = 1000,
    ) -> Iterator[Order]:
        _check_choice("status", status, ORDER_STATUS_FILTERS)
        _check_limit(limit, 1000)
        events = [event_ticker] if isinstance(event_ticker, str) else event_ticker
        if events is not None and len(events) > 10:
            raise ValueError("event_ticker takes at most 10 event tickers")
        params = _params(
            ticker=ticker,
            event_ticker=events,
            status=status,
            min_ts=min_ts,
            max_ts=max_ts,
            subaccount=self.subaccount,
        )
        return self._paginate("/portfolio/orders", "orders", params, Order.from_json, limit=limit)

    def get_orders(self, **filters: Any) -> list[Order]:
        return list(self.iter_orders(**filters))

    def get_order(self, order_id: str) -> Order:
        body = self._get(f"/portfolio/orders/{quote(order_id, safe='')}")
        return Order.from_json(_Fields("GetOrderResponse", body).raw("order", False))

    def iter_fills(
        self,
        *,
        ticker: str | None = None,
        order_id: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        limit: int = 1000,
    ) -> Iterator[Fill]:
        _check_limit(limit, 1000)
        params = _params(
            ticker=ticker,
            order_id=order_id,
            min_ts=min_ts,
            max_ts=max_ts,
            subaccount=self.subaccount,
        )
        return self._paginate("/portfolio/fills", "fills", params, Fill.from_json, limit=limit)

    def get_fills(self, **filters: Any) -> list[Fill]:
        return list(self.iter_fills(**filters))

    def iter_settlements(
        self,
        *,
        ticker: str | None = None,
        event_ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        limit: int = 1000,
    ) -> Iterator[Settlement]:
        _check_limit(limit, 1000)
        params = _params(
            ticker=ticker,
            event_ticker=event_ticker,
            min_ts=min_ts,
            max_ts=max_ts,
            subaccount=self.subaccount,
        )
        return self._paginate(
            "/portfolio/settlements", "settlements", params, Settlement.from_json, limit=limit
        )

    def get_settlements(self, **filters: Any) -> list[Settlement]:
        return list(self.iter_settlements(**filters))

    # -- orders (writes: never retried) -------------------------------------------------------------

    def create_order(self, order: OrderRequest) -> OrderAck:
        """Place one order through ``POST /portfolio/events/orders``, exactly once.

        Returns the ack only for a 2xx reply that names the order. Raises:
        ``KalshiDuplicateOrder`` (409: the client_order_id is already an open order),
        ``KalshiAuthError`` (401), ``KalshiOrderRejected`` (other documented 4xx: not placed),
        ``KalshiOrderOutcomeUnknown`` (timeout, transport error, 429, 5xx, unreadable or
        order-less 2xx: it may have been placed; reconcile by client_order_id before resending).
        """
        path = "/portfolio/events/orders"
        body = order.to_body()
        if self.subaccount is not None:
            body["subaccount"] = self.subaccount
        try:
            response = self._send("POST", path, json_body=body, bucket="write")
        except httpx.TransportError as exc:
            # Even a connect error is treated as unknown: being wrong in that direction costs a
            # reconciliation, being wrong in the other costs a duplicate order.
            raise KalshiOrderOutcomeUnknown(
                f"Kalshi POST {path}: {type(exc).__name__}; the order may have been placed"
            ) from None
        status = response.status_code
        if response.is_success:
            try:
                data = self._decode("POST", path, response)
            except KalshiParseError as exc:
                raise KalshiOrderOutcomeUnknown(
                    f"{exc.message}; the order may have been placed", status=status
                ) from None
            order_id = data.get("order_id")
            if not isinstance(order_id, str) or not order_id:
                raise KalshiOrderOutcomeUnknown(
                    f"Kalshi POST {path}: HTTP {status} without an order_id; the order may have been placed",
                    status=status,
                )
            try:
                ack = OrderAck.from_json(data)
            except KalshiParseError as exc:
                raise KalshiOrderOutcomeUnknown(
                    f"{exc.message}; order {order_id} was accepted",
                    status=status,
                    order_id=order_id,
                ) from None
            if order.client_order_id is not None and ack.client_order_id not in (
                None,
                order.client_order_id,
            ):
                raise KalshiOrderOutcomeUnknown(
                    f"Kalshi POST {path}: acknowledged a different client_order_id",
                    status=status,
                    order_id=order_id,
                )
            return ack
        code, message, details = _error_fields(response)
        text = (
            f"Kalshi POST {path}: HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {message}" if message else "")
        )
        if status == 401:
            raise KalshiAuthError(text, status=status, code=code, permanent=True, details=details)
        if status == 409:
            raise KalshiDuplicateOrder(
                text + " (duplicate client_order_id)",
                status=status,
                code=code,
                permanent=True,
                details=details,
            )
        if 400 <= status < 500 and status != 429:
            raise KalshiOrderRejected(
                text, status=status, code=code, permanent=True, details=details
            )
        raise KalshiOrderOutcomeUnknown(text + "; the order may have been placed", status=status)

    def cancel_order(self, order_id: str, ticker: str | None = None) -> CancelAck:
        """Cancel (reduce to zero) an order through ``DELETE /portfolio/events/orders/{id}``, once.

        ``ticker`` lets Kalshi route to the right shard. A 404 is permanent (no such open order);
        timeouts, 429 and 5xx raise with ``outcome_unknown=True``.
        """
        path = f"/portfolio/events/orders/{quote(order_id, safe='')}"
        try:
            response = self._send(
                "DELETE",
                path,
                params=_params(market_ticker=ticker, subaccount=self.subaccount),
                bucket="write",
                cost=CANCEL_COST,
            )
        except httpx.TransportError as exc:
            raise KalshiError(
                f"Kalshi DELETE {path}: {type(exc).__name__}; the cancel may have happened",
                permanent=False,
                outcome_unknown=True,
            ) from None
        if response.is_success:
            try:
                return CancelAck.from_json(self._decode("DELETE", path, response))
            except KalshiParseError as exc:
                raise KalshiError(
                    f"{exc.message}; the cancel may have happened",
                    status=response.status_code,
                    permanent=False,
                    outcome_unknown=True,
                ) from None
        error = _error_from_response("DELETE", path, response)
        if not error.permanent:
            error.outcome_unknown = True
        raise error


# --- Factory -----------------------------------------------------------------------------------


def kalshi_client(
    *,
    transport: httpx.BaseTransport | None = None,
    rate_limiter: RateLimiter | None = None,
) -> KalshiClient:
    """A client configured from settings: the one place Kalshi settings are read."""
    from django.conf import settings

    key_id = settings.KALSHI_API_KEY_ID or None
    key_path = settings.KALSHI_PRIVATE_KEY_PATH or None
    key_text = settings.KALSHI_PRIVATE_KEY or None
    if key_path and key_text:
        raise KalshiConfigError("set KALSHI_PRIVATE_KEY_PATH or KALSHI_PRIVATE_KEY, not both")
    private_key = None
    if key_path:
        private_key = load_private_key_file(key_path)
    elif key_text:
        private_key = load_private_key(key_text)
    if key_id and private_key is None:
        raise KalshiConfigError(
            "KALSHI_API_KEY_ID is set but no private key (KALSHI_PRIVATE_KEY_PATH or KALSHI_PRIVATE_KEY)"
        )
    if private_key is not None and not key_id:
        raise KalshiConfigError("a Kalshi private key is configured but KALSHI_API_KEY_ID is not")
    return KalshiClient(
        base_url=settings.KALSHI_API_BASE_URL,
        key_id=key_id,
        private_key=private_key,
        timeout=float(settings.KALSHI_TIMEOUT_SECONDS),
        transport=transport,
        rate_limiter=rate_limiter
        if rate_limiter is not None
        else shared_rate_limiter(settings.KALSHI_RATE_TIER),
        subaccount=settings.KALSHI_SUBACCOUNT,
    )


__all__ = [
    "Balance",
    "CancelAck",
    "Candlestick",
    "Event",
    "ExchangeStatus",
    "Fill",
    "KalshiAuthError",
    "KalshiClient",
    "KalshiConfigError",
    "KalshiDuplicateOrder",
    "KalshiError",
    "KalshiOrderOutcomeUnknown",
    "KalshiOrderRejected",
    "KalshiParseError",
    "KalshiRateLimited",
    "KalshiSigner",
    "Market",
    "MarketPosition",
    "Order",
    "OrderAck",
    "OrderBook",
    "OrderRequest",
    "OrderRequestError",
    "PriceRange",
    "Settlement",
    "Trade",
    "kalshi_client",
    "load_private_key",
    "load_private_key_file",
]
