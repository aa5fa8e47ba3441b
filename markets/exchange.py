"""The Exchange interface: one vocabulary for live Kalshi, paper and replay.

The trading engine speaks only this interface, so the same decide / execute / reconcile code
runs on all three implementations (docs/ARCHITECTURE.md, The Exchange interface):

- ``KalshiExchange`` (``markets.exchange_kalshi``): the REST client, real orders;
- ``SimulatedExchange`` (``markets.simulator``) over a quote source: ``paper`` (live public
  Kalshi quotes and order books) or ``replay`` (recorded snapshots, simulated clock).

Every price is the YES price in dollars (Kalshi V2 prices every order in YES terms); ``side``
is the contract held or traded (yes/no) and ``action`` buy/sell. Money is Decimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from markets.fees import DEFAULT_FEES, FeeSchedule

if TYPE_CHECKING:
    from markets import kalshi


class ExchangeError(Exception):
    """Any failure talking to an exchange.

    ``permanent``: retrying the same request cannot help (a 4xx).
    ``outcome_unknown``: an order may or may not exist; only reconciliation can tell.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        outcome_unknown: bool = False,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.outcome_unknown = outcome_unknown
        self.code = code


class OrderRejected(ExchangeError):
    """The exchange refused the order: it does not exist."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, permanent=True, code=code)


class ExchangeAuthError(OrderRejected):
    """The exchange refused our credentials (Kalshi 401: bad key, bad signature, clock skew).

    Never retried: the engine halts trading until an operator fixes the key or the clock.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unauthorized")


class OrderOutcomeUnknown(ExchangeError):
    """The order may or may not have been accepted (timeout, 5xx, 2xx without an order)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message, outcome_unknown=True, code=code)


class DuplicateOrder(ExchangeError):
    """The exchange already has an open order with this client_order_id (Kalshi: 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True, code="duplicate_client_order_id")


class ExchangeDataError(ExchangeError):
    """An order, fill, position, settlement or balance the exchange sent that we cannot read or
    store. Money records are never skipped: whoever reads one must stop and halt trading with
    ``message`` (it names the record and the field)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True, code="unreadable_exchange_data")


@dataclass(frozen=True)
class ExchangeStatus:
    exchange_active: bool
    trading_active: bool


@dataclass(frozen=True)
class MarketQuote:
    """A market as the engine needs it: identity, timing and the executable top of book.

    A ``None`` price means no quote on that side. ``*_ask_depth`` is the number of contracts
    offered at the best ask (``None`` when unknown).
    """

    ticker: str
    event_ticker: str
    status: str
    close_time: datetime | None
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    last_price: Decimal | None = None
    volume: Decimal | None = None  # None: unknown (recorded data), which is not zero
    category: str = ""
    yes_ask_depth: Decimal | None = None
    no_ask_depth: Decimal | None = None
    result: str = ""
    observed_at: datetime | None = None
    fees: FeeSchedule = DEFAULT_FEES

    @property
    def no_bid(self) -> Decimal | None:
        return None if self.yes_ask is None else 1 - self.yes_ask

    @property
    def no_ask(self) -> Decimal | None:
        return None if self.yes_bid is None else 1 - self.yes_bid

    @property
    def mid(self) -> Decimal | None:
        if self.yes_bid is not None and self.yes_ask is not None:
            return (self.yes_bid + self.yes_ask) / 2
        return self.last_price


@dataclass(frozen=True)
class OrderRequest:
    """A limit order. ``max_cost`` caps a buy's spend (fees included); exits are reduce-only."""

    client_order_id: str
    ticker: str
    side: str  # "yes" | "no"
    action: str  # "buy" | "sell"
    yes_price: Decimal
    count: Decimal
    time_in_force: str = "good_till_canceled"
    max_cost: Decimal | None = None
    reduce_only: bool = False
    # Good-till-canceled orders may carry an expiry (Kalshi V2 ``expiration_time``, Unix s).
    expiration_time: datetime | None = None
    post_only: bool = False

    @property
    def book_side(self) -> str:
        """``bid`` buys YES or sells NO; ``ask`` sells YES or buys NO (Kalshi V2)."""
        return "bid" if (self.side == "yes") == (self.action == "buy") else "ask"

    @property
    def side_price(self) -> Decimal:
        return self.yes_price if self.side == "yes" else 1 - self.yes_price


@dataclass(frozen=True)
class ExchangeOrder:
    order_id: str
    client_order_id: str
    ticker: str
    side: str
    action: str
    yes_price: Decimal
    count: Decimal
    filled_count: Decimal
    remaining_count: Decimal
    status: str  # "resting" | "canceled" | "executed"
    fees: Decimal = Decimal(0)
    created_time: datetime | None = None


@dataclass(frozen=True)
class ExchangeFill:
    fill_id: str
    order_id: str
    ticker: str
    side: str
    action: str
    count: Decimal
    yes_price: Decimal
    fee: Decimal
    is_taker: bool
    executed_at: datetime


@dataclass(frozen=True)
class ExchangePosition:
    """Net position in one market: positive = YES contracts, negative = NO contracts."""

    ticker: str
    position: Decimal
    realized_pnl: Decimal = Decimal(0)
    fees_paid: Decimal = Decimal(0)


@dataclass(frozen=True)
class ExchangeSettlement:
    ticker: str
    result: str
    yes_count: Decimal
    no_count: Decimal
    revenue: Decimal
    fee: Decimal
    settled_at: datetime


@dataclass
class Portfolio:
    balance: Decimal
    positions: list[ExchangePosition] = field(default_factory=list)


class Exchange(Protocol):
    """What the engine may ask of an exchange. Implementations never retry an order."""

    name: str
    places_real_orders: bool

    def now(self) -> datetime:
        """The exchange's clock: wall time, or the simulated time in replay."""
        ...

    def status(self) -> ExchangeStatus: ...

    def open_markets(self) -> list[MarketQuote]:
        """Markets accepting orders now, with their executable quotes."""
        ...

    def quote(self, ticker: str) -> MarketQuote:
        """One market's current quote and depth (for the last look before sending)."""
        ...

    def market(self, ticker: str) -> kalshi.Market:
        """Kalshi's full record of one market, whatever its status: how reconcile stores a
        market it first meets in a fill or an order. Raises ExchangeError if it cannot."""
        ...

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        """Send once. Raises OrderRejected, DuplicateOrder or OrderOutcomeUnknown."""
        ...

    def cancel_order(self, order_id: str, ticker: str) -> None: ...

    def orders(self, *, since: datetime | None = None) -> list[ExchangeOrder]: ...

    def fills(self, *, since: datetime | None = None) -> list[ExchangeFill]: ...

    def positions(self) -> list[ExchangePosition]: ...

    def balance(self) -> Decimal: ...

    def settlements(self, *, since: datetime | None = None) -> list[ExchangeSettlement]: ...
