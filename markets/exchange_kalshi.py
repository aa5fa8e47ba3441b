"""``KalshiExchange``: the Exchange interface over ``KalshiClient`` — real orders, live mode.

Direction mapping (docs/KALSHI.md). Kalshi's V2 orders and fills carry only ``outcome_side``
(yes|no) and ``book_side`` (bid|ask), and the two say the same thing: ``bid`` ≡ ``yes`` and
``ask`` ≡ ``no``. Buying YES and selling NO are both a YES bid; buying NO and selling YES are
both a YES ask. The exchange cannot tell us which of the pair we meant, so every order and fill
read back from Kalshi is reported in its *buy* form:

- ``book_side`` bid  → ``side="yes", action="buy"``  (a sell of NO reads back as a buy of YES);
- ``book_side`` ask  → ``side="no",  action="buy"``  (a sell of YES reads back as a buy of NO).

``yes_price`` is always the YES price, so the economics are the same either way: Kalshi nets
YES against NO, so buying YES at p while holding NO closes NO at 1 − p. Code that needs the
intent of an order (sell vs buy) must take it from its own order record, matched by
``order_id`` / ``client_order_id``, never from these reads.

Orders go out as V2 requests: ``side`` bid|ask from (side, action) (``OrderRequest.book_side``),
``price`` = YES price, ``self_trade_prevention_type="taker_at_cross"``. ``max_cost`` (fees
included) becomes the client's ``buy_max_cost`` guard (fees excluded) after taking off the
market's taker fee (its stored schedule, as the strategy priced it), so the check is exact. Orders are never retried here.

Money records (orders, fills, positions, settlements, the balance) are never skipped: one that
Kalshi sent but we cannot parse, or whose values our books cannot hold (a count beyond
``CountField``, an amount beyond ``MoneyField``, an id longer than 64 characters, a NUL byte),
makes the read raise ``ExchangeDataError`` naming the record and the field, before anything is
booked. The caller (reconcile) must halt trading with that message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import models
from django.utils import timezone

from markets import kalshi
from markets.exchange import (
    DuplicateOrder,
    ExchangeAuthError,
    ExchangeDataError,
    ExchangeError,
    ExchangeFill,
    ExchangeOrder,
    ExchangePosition,
    ExchangeSettlement,
    ExchangeStatus,
    MarketQuote,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
)
from markets.fees import DEFAULT_FEES, FeeSchedule, order_fee, schedule_for, stored_fee_schedules
from markets.money import ZERO, CountField, MoneyField
from markets.services import Refused, check_value

_CATEGORY_CHUNK = 500  # tickers per IN (...) query: well under SQLite's variable limit

T = TypeVar("T")

# The columns our books keep these values in (the trading app's Order, Fill, Position,
# Settlement and AccountSnapshot use these field types; ids are CharField(max_length=64)).
_COUNT = CountField()
_MONEY = MoneyField()
_ID = models.CharField(max_length=64)
_TICKER = models.CharField(max_length=128)  # markets.Market.ticker
_TEXT = models.TextField()  # no length limit, but still no NUL byte


def _unreadable(what: str, message: str) -> ExchangeDataError:
    return ExchangeDataError(
        f"unreadable {what} from Kalshi: {message}; money records are never skipped, so "
        "trading must halt until it is explained"
    )


def _read(what: str, read: Callable[[], T]) -> T:
    """``read()``, with a record that cannot be parsed turned into ``ExchangeDataError``."""
    try:
        return read()
    except kalshi.KalshiParseError as exc:
        raise _unreadable(what, exc.message) from None


def _check(
    what: str,
    record: str,
    values: dict[str, tuple[models.Field, Any]],
    *,
    positive: Iterable[str] = (),
    not_negative: Iterable[str] = (),
    open_price: tuple[str, Decimal] | None = None,
) -> None:
    """Refuse (``ExchangeDataError``) a record with a value its column cannot hold, or one that
    breaks our books' check constraints: a sign (``positive``, ``not_negative``) or a price
    strictly between 0 and 1 (``open_price``: name, value)."""
    for name, (field, value) in values.items():
        try:
            check_value(field, name, value)
        except Refused as exc:
            raise _unreadable(what, f"{record}.{exc.field}: {exc.reason}") from None
    for name in positive:
        if not values[name][1] > ZERO:
            raise _unreadable(what, f"{record}.{name}: {values[name][1]} is not positive")
    for name in not_negative:
        if values[name][1] < ZERO:
            raise _unreadable(what, f"{record}.{name}: {values[name][1]} is negative")
    if open_price is not None and not ZERO < open_price[1] < 1:
        name, price = open_price
        raise _unreadable(what, f"{record}.{name}: {price} is not strictly between 0 and 1")


def categories_for(tickers: Iterable[str]) -> dict[str, str]:
    """Category of each known market: its own, else its event's, else its series'."""
    from markets.models import Market

    wanted = list(dict.fromkeys(tickers))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CATEGORY_CHUNK):
        rows = Market.objects.filter(
            ticker__in=wanted[start : start + _CATEGORY_CHUNK]
        ).values_list("ticker", "category", "event__category", "event__series__category")
        for ticker, own, event_category, series_category in rows:
            found[ticker] = own or event_category or series_category or ""
    return found


def fee_schedules_for(markets: Iterable[kalshi.Market]) -> dict[str, FeeSchedule]:
    """Each live market's fee schedule: the stored fees of its event and series (market sync
    reads them from Kalshi) with the market's own, fresh ``fee_waiver_expiration_time``. A
    market whose event and series were never synced prices as the default quadratic."""
    from markets.models import Event, Series

    markets = list(markets)
    events = sorted({m.event_ticker for m in markets})
    stored: dict[str, tuple] = {}
    for start in range(0, len(events), _CATEGORY_CHUNK):
        chunk = events[start : start + _CATEGORY_CHUNK]
        for ticker, *values in Event.objects.filter(event_ticker__in=chunk).values_list(
            "event_ticker",
            "series__fee_type",
            "series__fee_multiplier",
            "fee_type_override",
            "fee_multiplier_override",
        ):
            stored[ticker] = tuple(values)
    series_of = {t: t.split("-", 1)[0] for t in events if t not in stored}
    if series_of:
        for ticker, fee_type, multiplier in Series.objects.filter(
            ticker__in=sorted(set(series_of.values()))
        ).values_list("ticker", "fee_type", "fee_multiplier"):
            for event, series in series_of.items():
                if series == ticker:
                    stored[event] = (fee_type, multiplier, None, None)
    found = {}
    for m in markets:
        fee_type, multiplier, type_override, multiplier_override = stored.get(
            m.event_ticker, (None, None, None, None)
        )
        found[m.ticker] = schedule_for(
            fee_type=fee_type,
            multiplier=multiplier,
            fee_type_override=type_override,
            multiplier_override=multiplier_override,
            waived_until=m.fee_waiver_expiration_time,
        )
    return found


def quote_from_market(
    market: kalshi.Market,
    *,
    category: str = "",
    book: kalshi.OrderBook | None = None,
    observed_at: datetime | None = None,
    fees: FeeSchedule | None = None,
) -> MarketQuote:
    """A ``MarketQuote`` from the client's market (and, when given, its order book).

    With a book, the top of book and the depth at the best ask come from it: a YES ask is a NO
    bid at 1 − p, so the YES ask depth is the size of the best NO bid level and the NO ask depth
    the size of the best YES bid level. Without one, the market's ``yes_ask_size`` /
    ``yes_bid_size`` give the same two depths. ``fees`` is the market's schedule
    (``fee_schedules_for``); without it, the default schedule with the market's own waiver.
    """
    if book is not None:
        yes_bid, yes_ask = book.best_yes_bid, book.best_yes_ask
        yes_ask_depth = book.no_bids[-1][1] if book.no_bids else ZERO
        no_ask_depth = book.yes_bids[-1][1] if book.yes_bids else ZERO
    else:
        yes_bid, yes_ask = market.yes_bid, market.yes_ask
        yes_ask_depth = market.yes_ask_size if yes_ask is not None else ZERO
        no_ask_depth = market.yes_bid_size if yes_bid is not None else ZERO
    return MarketQuote(
        ticker=market.ticker,
        event_ticker=market.event_ticker,
        status=market.status,
        close_time=market.close_time,
        yes_bid=yes_bid,
        yes_ask=yes_ask,
        last_price=market.last_price or None,  # 0 = never traded
        volume=market.volume,
        category=category,
        yes_ask_depth=yes_ask_depth,
        no_ask_depth=no_ask_depth,
        result=market.result,
        observed_at=observed_at,
        fees=fees
        or schedule_for(
            fee_type=None, multiplier=None, waived_until=market.fee_waiver_expiration_time
        ),
    )


def _read_direction(book_side: str) -> tuple[str, str]:
    """(side, action) of an order or fill read back from Kalshi: its buy form (module doc)."""
    return ("yes", "buy") if book_side == "bid" else ("no", "buy")


def _since_ts(since: datetime | None) -> int | None:
    return None if since is None else int(since.timestamp())


def _order_status(ack: kalshi.OrderAck, request: OrderRequest) -> str:
    if ack.remaining_count > 0 and request.time_in_force == "good_till_canceled":
        return "resting"
    if ack.fill_count >= request.count:
        return "executed"
    return "canceled"  # IOC/FOK remainder, or nothing filled and nothing rests


def _exchange_error(error: kalshi.KalshiError) -> ExchangeError:
    """Map a client error on an order write to the exchange vocabulary."""
    if isinstance(error, kalshi.KalshiDuplicateOrder):
        return DuplicateOrder(error.message)
    if isinstance(error, kalshi.KalshiAuthError):
        return ExchangeAuthError(error.message)
    if isinstance(error, kalshi.KalshiOrderOutcomeUnknown) or error.outcome_unknown:
        return OrderOutcomeUnknown(error.message, code=error.code or "")
    if error.permanent:
        return OrderRejected(error.message, code=error.code or str(error.status or ""))
    return OrderOutcomeUnknown(error.message, code=error.code or "")


def market_record(client: kalshi.KalshiClient, ticker: str) -> kalshi.Market:
    """Kalshi's record of one market, any status (``Exchange.market``; paper reads it too)."""
    try:
        return client.get_market(ticker)
    except kalshi.KalshiError as exc:
        raise ExchangeError(exc.message, permanent=exc.permanent, code=exc.code or "") from None


class KalshiExchange:
    """The live exchange. Reads go through the client's retrying GETs; writes are sent once."""

    name = "live"
    places_real_orders = True

    def __init__(self, client: kalshi.KalshiClient) -> None:
        self.client = client

    def now(self) -> datetime:
        return timezone.now()

    def status(self) -> ExchangeStatus:
        status = self.client.get_exchange_status()
        return ExchangeStatus(
            exchange_active=status.exchange_active, trading_active=status.trading_active
        )

    # -- market data ------------------------------------------------------------------------------

    def open_markets(self) -> list[MarketQuote]:
        markets = [
            m
            for m in self.client.iter_markets(status="open", on_error=kalshi.log_skipped)
            if m.status == "active"
        ]
        categories = categories_for(m.ticker for m in markets)
        fees = fee_schedules_for(markets)
        observed = self.now()
        return [
            quote_from_market(
                m, category=categories.get(m.ticker, ""), observed_at=observed, fees=fees[m.ticker]
            )
            for m in markets
        ]

    def quote(self, ticker: str) -> MarketQuote:
        market = self.client.get_market(ticker)
        book = self.client.get_orderbook(ticker)
        category = categories_for([ticker]).get(ticker, "")
        fees = fee_schedules_for([market])[ticker]
        return quote_from_market(
            market, category=category, book=book, observed_at=self.now(), fees=fees
        )

    def market(self, ticker: str) -> kalshi.Market:
        return market_record(self.client, ticker)

    # -- orders ----------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        buy_max_cost = None
        if request.max_cost is not None and not request.reduce_only:
            # max_cost holds the market's taker fee (strategy); take off the same fee.
            fees = stored_fee_schedules([request.ticker]).get(request.ticker, DEFAULT_FEES)
            fee = order_fee(request.count, request.side_price, fees=fees, at=self.now())
            buy_max_cost = request.max_cost - fee
        try:
            wire = kalshi.OrderRequest(
                ticker=request.ticker,
                side=request.book_side,
                count=request.count,
                price=request.yes_price,
                time_in_force=request.time_in_force,
                self_trade_prevention_type="taker_at_cross",
                client_order_id=request.client_order_id,
                reduce_only=request.reduce_only,
                buy_max_cost=buy_max_cost,
                # Unix seconds on the wire; Kalshi takes an expiry with good-till-canceled only.
                expiration_time=request.expiration_time
                if request.time_in_force == "good_till_canceled"
                else None,
                post_only=request.post_only,
            )
        except kalshi.OrderRequestError as exc:
            raise OrderRejected(exc.message, code="invalid_order") from None
        try:
            ack = self.client.create_order(wire)
        except kalshi.KalshiError as exc:
            raise _exchange_error(exc) from None
        return ExchangeOrder(
            order_id=ack.order_id,
            client_order_id=ack.client_order_id or request.client_order_id,
            ticker=request.ticker,
            side=request.side,
            action=request.action,
            yes_price=request.yes_price,
            count=request.count,
            filled_count=ack.fill_count,
            remaining_count=ack.remaining_count,
            status=_order_status(ack, request),
            # The ack only has a rounded average fee; the exact fees come from fills()/orders().
            fees=ZERO,
            created_time=datetime.fromtimestamp(ack.ts_ms / 1000, tz=UTC) if ack.ts_ms else None,
        )

    def cancel_order(self, order_id: str, ticker: str) -> None:
        try:
            self.client.cancel_order(order_id, ticker)
        except kalshi.KalshiError as exc:
            if isinstance(exc, kalshi.KalshiAuthError):
                raise ExchangeAuthError(exc.message) from None
            if exc.outcome_unknown or not exc.permanent:
                raise OrderOutcomeUnknown(exc.message, code=exc.code or "") from None
            raise OrderRejected(exc.message, code=exc.code or str(exc.status or "")) from None

    # -- portfolio --------------------------------------------------------------------------------

    def orders(self, *, since: datetime | None = None) -> list[ExchangeOrder]:
        result = []
        for order in _read("order", lambda: list(self.client.iter_orders(min_ts=_since_ts(since)))):
            _check(
                "order",
                f"Order[{kalshi.shown_key(order.order_id)}]",
                {
                    "order_id": (_ID, order.order_id),
                    # Any length: only ours (short, with our prefix) are ever stored.
                    "client_order_id": (_TEXT, order.client_order_id),
                    "ticker": (_TICKER, order.ticker),
                    "initial_count_fp": (_COUNT, order.initial_count),
                    "fill_count_fp": (_COUNT, order.fill_count),
                    "remaining_count_fp": (_COUNT, order.remaining_count),
                    "taker_fees_dollars": (_MONEY, order.taker_fees),
                    "maker_fees_dollars": (_MONEY, order.maker_fees),
                    "taker_fees_dollars + maker_fees_dollars": (_MONEY, order.fees),
                },
                positive=("initial_count_fp",),
                not_negative=(
                    "fill_count_fp",
                    "remaining_count_fp",
                    "taker_fees_dollars + maker_fees_dollars",
                ),
                open_price=("yes_price_dollars", order.yes_price),
            )
            side, action = _read_direction(order.book_side)
            result.append(
                ExchangeOrder(
                    order_id=order.order_id,
                    client_order_id=order.client_order_id or "",
                    ticker=order.ticker,
                    side=side,
                    action=action,
                    yes_price=order.yes_price,
                    count=order.initial_count,
                    filled_count=order.fill_count,
                    remaining_count=order.remaining_count,
                    status=order.status,
                    fees=order.fees,
                    created_time=order.created_time,
                )
            )
        return result

    def fills(self, *, since: datetime | None = None) -> list[ExchangeFill]:
        result = []
        for fill in _read("fill", lambda: list(self.client.iter_fills(min_ts=_since_ts(since)))):
            _check(
                "fill",
                f"Fill[{kalshi.shown_key(fill.fill_id)}]",
                {
                    "fill_id": (_ID, fill.fill_id),
                    "order_id": (_ID, fill.order_id),
                    "ticker": (_TICKER, fill.ticker),
                    "count_fp": (_COUNT, fill.count),
                    "fee_cost": (_MONEY, fill.fee_cost),
                },
                positive=("count_fp",),
                not_negative=("fee_cost",),
                open_price=("yes_price_dollars", fill.yes_price),
            )
            side, action = _read_direction(fill.book_side)
            result.append(
                ExchangeFill(
                    fill_id=fill.fill_id,
                    order_id=fill.order_id,
                    ticker=fill.ticker,
                    side=side,
                    action=action,
                    count=fill.count,
                    yes_price=fill.yes_price,
                    fee=fill.fee_cost,
                    is_taker=fill.is_taker,
                    executed_at=fill.created_time,
                )
            )
        return result

    def positions(self) -> list[ExchangePosition]:
        positions = _read("position", lambda: list(self.client.iter_positions()))
        for p in positions:
            _check(
                "position",
                f"MarketPosition[{kalshi.shown_key(p.ticker)}]",
                {
                    "ticker": (_TICKER, p.ticker),
                    "position_fp": (_COUNT, p.position),
                    "realized_pnl_dollars": (_MONEY, p.realized_pnl),
                    "fees_paid_dollars": (_MONEY, p.fees_paid),
                },
            )
        return [
            ExchangePosition(
                ticker=p.ticker,
                position=p.position,
                realized_pnl=p.realized_pnl,
                fees_paid=p.fees_paid,
            )
            for p in positions
            if p.position != 0
        ]

    def balance(self) -> Decimal:
        balance = _read("balance", self.client.get_balance).balance
        _check("balance", "Balance", {"balance_dollars": (_MONEY, balance)})
        return balance

    def settlements(self, *, since: datetime | None = None) -> list[ExchangeSettlement]:
        settlements = _read(
            "settlement", lambda: list(self.client.iter_settlements(min_ts=_since_ts(since)))
        )
        for s in settlements:
            _check(
                "settlement",
                f"Settlement[{kalshi.shown_key(s.ticker)}]",
                {
                    "ticker": (_TICKER, s.ticker),
                    "yes_count_fp": (_COUNT, s.yes_count),
                    "no_count_fp": (_COUNT, s.no_count),
                    "revenue": (_MONEY, s.revenue),
                    "fee_cost": (_MONEY, s.fee_cost),
                },
                not_negative=("yes_count_fp", "no_count_fp", "revenue", "fee_cost"),
            )
        return [
            ExchangeSettlement(
                ticker=s.ticker,
                result=s.market_result,
                yes_count=s.yes_count,
                no_count=s.no_count,
                revenue=s.revenue,  # dollars: the client converts Kalshi's integer cents
                fee=s.fee_cost,
                settled_at=s.settled_time,
            )
            for s in settlements
        ]
