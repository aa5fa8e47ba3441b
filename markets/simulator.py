"""A simulated exchange for paper and replay trading, with its own books in the database.

It behaves like Kalshi where the engine can tell: limit orders match through
``markets.matching`` (the same code the backtest uses; its docstring states the fill model:
taken liquidity stays taken until the book changes, levels walked at their own prices, resting
orders queued behind the displayed size and filled as makers only as trades print through
them, fill-or-kill, immediate-or-cancel, expiry, post-only), fees from the market's fee
schedule accumulated per order, a cash wallet that refuses orders it cannot pay for, netting
of YES against NO, settlement at $1/$0 (void refunds the cost), a 409-style refusal of a
``client_order_id`` that matches an open order, and cancel as "decrease to zero" (the order is
kept, canceled). The trading app reconciles against it exactly as it would against Kalshi.

Quote sources:

- ``ReplayQuotes``: recorded snapshots in the database, as of a simulated clock; it never
  reveals a snapshot, a trade or a result from after that clock.
- ``PaperQuotes`` (``markets.paper``): live public Kalshi data through ``KalshiClient``
  (markets, full order books and public trades).

A source may offer ``book(quote)`` (the displayed levels, versioned) and
``prints(ticker, after, until)`` (trades in that window); without them the exchange uses the
quote's top of book and no trades.

Assumptions where the recorded data is thin (documented for replay):

- A snapshot with a last trade price but no bid/ask (5-minute candles) is quoted at
  ``last ± REPLAY_HALF_SPREAD`` ($0.01), clamped to the price grid inside (0, 1).
- Recorded data has no sizes: each side's top level shows ``REPLAY_DEPTH`` (100) contracts,
  and that liquidity, once taken, stays taken until the next snapshot of the market.
- Trades: a snapshot with a trade price is a trade at that price. With cumulative volumes
  (snapshots of synced Kalshi markets) the print is the volume since the previous snapshot;
  recorded data has none (a candle's ``count`` is a number of trades, not contracts), so each
  such snapshot is assumed to print ``REPLAY_PRINT_SIZE`` (10) contracts.
- A market's result is revealed ``SETTLE_DELAY`` (1 hour) after its close unless the data
  gives a settlement time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from django.db import transaction
from django.db.models import F, OuterRef, Subquery

from markets import kalshi, matching
from markets.exchange import (
    DuplicateOrder,
    ExchangeError,
    ExchangeFill,
    ExchangeOrder,
    ExchangePosition,
    ExchangeSettlement,
    ExchangeStatus,
    MarketQuote,
    OrderRejected,
    OrderRequest,
)
from markets.fees import MARKET_FEE_COLUMNS, order_fee, schedule_from_values
from markets.models import (
    Market,
    MarketSnapshot,
    SimAccount,
    SimBook,
    SimFill,
    SimOrder,
    SimPosition,
    SimSettlement,
)
from markets.money import MONEY_QUANTUM, PRICE_QUANTUM, ZERO

REPLAY_HALF_SPREAD = Decimal("0.01")
REPLAY_DEPTH = Decimal("100")
REPLAY_PRINT_SIZE = Decimal("10")
SETTLE_DELAY = timedelta(hours=1)
_MIN_PRICE = PRICE_QUANTUM * 100  # $0.01
_MAX_PRICE = 1 - _MIN_PRICE


@dataclass(frozen=True)
class MarketOutcome:
    result: str  # yes | no | void | scalar
    settled_at: datetime
    value: Decimal | None = None  # scalar: YES payout per contract


class QuoteSource(Protocol):
    def now(self) -> datetime: ...

    def open_markets(self) -> list[MarketQuote]: ...

    def quote(self, ticker: str) -> MarketQuote | None: ...

    def outcomes(self, tickers: list[str]) -> dict[str, MarketOutcome]:
        """Results known at ``now()`` for these tickers (absent = not settled yet)."""
        ...


# --- Replay: recorded data as of a simulated clock ------------------------------------------


def spread_around(last: Decimal) -> tuple[Decimal, Decimal]:
    """The replay spread assumption for a snapshot with a trade price but no bid/ask."""
    bid = min(max(last - REPLAY_HALF_SPREAD, _MIN_PRICE), _MAX_PRICE - _MIN_PRICE)
    ask = max(min(last + REPLAY_HALF_SPREAD, _MAX_PRICE), bid + _MIN_PRICE)
    return bid, ask


def replay_book(quote: MarketQuote, *, depth: Decimal = REPLAY_DEPTH) -> matching.Book:
    """The replay book of a snapshot's quote: its top of book, ``depth`` a level, versioned
    by the snapshot's time (the backtest uses the same function)."""
    if quote.observed_at is not None:
        version = quote.observed_at.isoformat()
    else:  # no snapshot time: the book is what it shows
        version = "|".join(
            str(v) for v in (quote.yes_bid, quote.no_ask_depth, quote.yes_ask, quote.yes_ask_depth)
        )
    return matching.book_from_quote(quote, version=version, assumed_depth=depth)


def replay_prints(
    rows: list[tuple[datetime, Decimal, Decimal | None]], *, base_volume: Decimal | None = None
) -> list[matching.Print]:
    """Trade prints from snapshots ``(ts, last_price, cumulative volume or None)`` in time
    order: the volume traded since the previous snapshot when the data has volumes, else one
    print of ``REPLAY_PRINT_SIZE`` contracts per snapshot with a trade price."""
    prints = []
    previous = base_volume
    for ts, last, volume in rows:
        if volume is None:
            prints.append(matching.Print(ts, last, REPLAY_PRINT_SIZE))
            continue
        if previous is not None and volume > previous:
            prints.append(matching.Print(ts, last, volume - previous))
        previous = volume
    return prints


class ReplayQuotes:
    """Quotes from recorded snapshots at the simulated time ``clock()``."""

    def __init__(self, clock: Callable[[], datetime], *, depth: Decimal = REPLAY_DEPTH) -> None:
        self._clock = clock
        self.depth = depth

    def now(self) -> datetime:
        return self._clock()

    def _markets(self, **filters) -> list[MarketQuote]:
        now = self.now()
        latest = MarketSnapshot.objects.filter(market=OuterRef("pk"), ts__lte=now).order_by("-ts")
        rows = (
            Market.objects.filter(open_time__lte=now, close_time__gt=now, **filters)
            .annotate(
                s_ts=Subquery(latest.values("ts")[:1]),
                s_bid=Subquery(latest.values("yes_bid")[:1]),
                s_ask=Subquery(latest.values("yes_ask")[:1]),
                s_last=Subquery(latest.values("last_price")[:1]),
            )
            .filter(s_ts__isnull=False)
            .values_list(
                "ticker",
                "event__event_ticker",
                "close_time",
                "category",
                "s_ts",
                "s_bid",
                "s_ask",
                "s_last",
                *MARKET_FEE_COLUMNS,
            )
            .order_by("ticker")
        )
        quotes = []
        for ticker, event_ticker, close_time, category, ts, bid, ask, last, *fees in rows:
            if bid is None and ask is None and last is not None:
                bid, ask = spread_around(last)
            quotes.append(
                MarketQuote(
                    ticker=ticker,
                    event_ticker=event_ticker,
                    status="active",
                    close_time=close_time,
                    yes_bid=bid,
                    yes_ask=ask,
                    last_price=last,
                    volume=None,  # recorded snapshots carry no volume: unknown, not zero
                    category=category,
                    yes_ask_depth=self.depth if ask is not None else ZERO,
                    no_ask_depth=self.depth if bid is not None else ZERO,
                    observed_at=ts,
                    fees=schedule_from_values(*fees),
                )
            )
        return quotes

    def open_markets(self) -> list[MarketQuote]:
        return self._markets()

    def quote(self, ticker: str) -> MarketQuote | None:
        found = self._markets(ticker=ticker)
        return found[0] if found else None

    def book(self, quote: MarketQuote) -> matching.Book:
        """The top of book of the snapshot: a new snapshot is a new book version."""
        return replay_book(quote, depth=self.depth)

    def prints(self, ticker: str, after: datetime, until: datetime) -> list[matching.Print]:
        """Trades recorded in ``(after, until]`` (see ``REPLAY_PRINT_SIZE``)."""
        rows = list(
            MarketSnapshot.objects.filter(
                market__ticker=ticker, ts__gt=after, ts__lte=until, last_price__isnull=False
            )
            .order_by("ts")
            .values_list("ts", "last_price", "volume")
        )
        base = None
        if any(volume is not None for _, _, volume in rows):
            base = (
                MarketSnapshot.objects.filter(
                    market__ticker=ticker, ts__lte=after, volume__isnull=False
                )
                .order_by("-ts")
                .values_list("volume", flat=True)
                .first()
            )
        return replay_prints(rows, base_volume=base)

    def outcomes(self, tickers: list[str]) -> dict[str, MarketOutcome]:
        now = self.now()
        found = {}
        rows = Market.objects.filter(ticker__in=tickers).exclude(result="")
        for m in rows.only("ticker", "result", "close_time", "settled_time", "settlement_value"):
            settled_at = m.settled_time or (m.close_time + SETTLE_DELAY if m.close_time else None)
            if settled_at is not None and settled_at <= now:
                found[m.ticker] = MarketOutcome(m.result, settled_at, m.settlement_value)
        return found


# --- The simulated exchange -----------------------------------------------------------------


class SimulatedExchange:
    """An Exchange whose orders fill against a ``QuoteSource`` into a ``SimAccount``."""

    places_real_orders = False

    def __init__(
        self,
        *,
        name: str,
        quotes: QuoteSource,
        account: str,
        starting_cash: Decimal,
        trading_active: bool = True,
    ) -> None:
        self.name = name
        self.quotes = quotes
        self.trading_active = trading_active
        self.account, _ = SimAccount.objects.get_or_create(
            name=account, defaults={"cash": starting_cash, "starting_cash": starting_cash}
        )

    # -- reads --------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.quotes.now()

    def status(self) -> ExchangeStatus:
        return ExchangeStatus(exchange_active=True, trading_active=self.trading_active)

    def open_markets(self) -> list[MarketQuote]:
        self.tick()
        return self.quotes.open_markets()

    def quote(self, ticker: str) -> MarketQuote:
        found = self.quotes.quote(ticker)
        if found is None:
            raise OrderRejected(f"market {ticker} is not open", code="market_closed")
        return found

    def balance(self) -> Decimal:
        self.tick()
        return SimAccount.objects.values_list("cash", flat=True).get(pk=self.account.pk)

    def positions(self) -> list[ExchangePosition]:
        self.tick()
        rows = SimPosition.objects.filter(account=self.account).exclude(position=0)
        return [ExchangePosition(p.ticker, p.position, p.realized_pnl, p.fees_paid) for p in rows]

    def orders(self, *, since: datetime | None = None) -> list[ExchangeOrder]:
        self.tick()
        rows = SimOrder.objects.filter(account=self.account)
        if since is not None:
            rows = rows.filter(created_time__gte=since)
        return [_order_view(o) for o in rows]

    def fills(self, *, since: datetime | None = None) -> list[ExchangeFill]:
        self.tick()
        rows = SimFill.objects.filter(account=self.account).select_related("order")
        if since is not None:
            rows = rows.filter(executed_at__gte=since)
        return [
            ExchangeFill(
                f.fill_id,
                f.order.order_id,
                f.ticker,
                f.side,
                f.action,
                f.count,
                f.yes_price,
                f.fee,
                f.is_taker,
                f.executed_at,
            )
            for f in rows
        ]

    def settlements(self, *, since: datetime | None = None) -> list[ExchangeSettlement]:
        self.tick()
        rows = SimSettlement.objects.filter(account=self.account)
        if since is not None:
            rows = rows.filter(settled_at__gte=since)
        return [
            ExchangeSettlement(
                s.ticker, s.result, s.yes_count, s.no_count, s.revenue, s.fee, s.settled_at
            )
            for s in rows
        ]

    def market(self, ticker: str) -> kalshi.Market:
        """Kalshi's record of one market, from a quote source that has one (paper's live
        data); replay's recorded data holds every market it can quote, so it has none."""
        fetch = getattr(self.quotes, "market", None)
        if fetch is None:
            raise ExchangeError(
                f"market {ticker} is not in the {self.name} data", permanent=True, code="not_found"
            )
        return fetch(ticker)

    # -- writes -------------------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        if not (ZERO < request.yes_price < 1) or request.count <= 0:
            raise OrderRejected(
                "price must be inside (0, 1) and count positive", code="invalid_order"
            )
        if request.time_in_force not in matching.TIME_IN_FORCE:
            raise OrderRejected(
                f"unknown time in force {request.time_in_force!r}", code="invalid_order"
            )
        if not self.trading_active:
            raise OrderRejected("trading is paused on the exchange", code="trading_paused")
        quote = self.quote(request.ticker)
        now = self.now()
        book = self._book(quote)
        with transaction.atomic():
            account = SimAccount.objects.select_for_update().get(pk=self.account.pk)
            if SimOrder.objects.filter(
                account=account, client_order_id=request.client_order_id, status="resting"
            ).exists():
                raise DuplicateOrder(f"an open order has client_order_id {request.client_order_id}")
            if request.action == "buy":
                worst = request.count * request.side_price + order_fee(
                    request.count, request.side_price, fees=quote.fees, at=now
                )
                if worst > account.cash:
                    raise OrderRejected("insufficient balance", code="available_balance_too_low")
                if request.max_cost is not None and worst > request.max_cost:
                    raise OrderRejected("order cost exceeds max_cost", code="invalid_order")
            elif request.reduce_only:
                held = _held(account, request.ticker, request.side)
                if request.count > held:
                    raise OrderRejected(
                        "reduce-only sell exceeds the position", code="invalid_order"
                    )
            sim_book, taken = _taken(account, request.ticker)
            pending = matching.Order(
                request.side,
                request.action,
                request.yes_price,
                request.count,
                expires_at=request.expiration_time,
            )
            own_ahead = _own_queue(account, request.ticker, pending)
            try:
                fills, status = matching.place(
                    pending,
                    book,
                    taken,
                    time_in_force=request.time_in_force,
                    post_only=request.post_only,
                    fees=quote.fees,
                    at=now,
                    cap=_cap(account, request.ticker, request.side, request.action),
                    budget=account.cash if request.action == "buy" else None,
                    own_ahead=own_ahead,
                )
            except matching.MatchRejected as exc:
                raise OrderRejected(str(exc), code=exc.code) from None
            order = SimOrder.objects.create(
                account=account,
                order_id="pending",
                client_order_id=request.client_order_id,
                ticker=request.ticker,
                side=request.side,
                action=request.action,
                yes_price=request.yes_price,
                count=request.count,
                reduce_only=request.reduce_only,
                max_cost=request.max_cost,
                created_time=now,
                time_in_force=request.time_in_force,
                post_only=request.post_only,
                expiration_time=request.expiration_time,
                queue_ahead=pending.queue_ahead,
                seen_until=now,
                seen_version=book.version,
                status=status,
            )
            order.order_id = f"SIM-{order.pk}"
            order.save(update_fields=["order_id"])
            for fill in fills:
                self._book_fill(account, order, fill, now)
            sim_book.taken = taken.to_json()
            sim_book.save(update_fields=["taken"])
        return _order_view(order)

    def cancel_order(self, order_id: str, ticker: str) -> None:
        """Kalshi's cancel: decrease the order to zero; it is kept, with status canceled."""
        updated = SimOrder.objects.filter(
            account=self.account, order_id=order_id, status="resting"
        ).update(status=SimOrder.Status.CANCELED)
        if not updated:
            raise OrderRejected(f"no resting order {order_id}", code="not_found")

    # -- simulation ---------------------------------------------------------------------------

    def _book(self, quote: MarketQuote) -> matching.Book:
        book_of = getattr(self.quotes, "book", None)
        if book_of is not None:
            return book_of(quote)
        return replay_book(quote)

    def _prints(self, ticker: str, after: datetime, until: datetime) -> list[matching.Print]:
        prints_of = getattr(self.quotes, "prints", None)
        return prints_of(ticker, after, until) if prints_of is not None else []

    def tick(self) -> None:
        """Fill resting orders as trades print through them, expire them, settle positions."""
        now = self.now()
        tickers = sorted(
            set(
                SimOrder.objects.filter(account=self.account, status="resting").values_list(
                    "ticker", flat=True
                )
            )
        )
        if tickers:
            by_ticker = {q.ticker: q for q in self.quotes.open_markets()}
            for ticker in tickers:
                self._tick_market(ticker, by_ticker.get(ticker), now)
        held = list(SimPosition.objects.filter(account=self.account).exclude(position=0))
        if held:
            outcomes = self.quotes.outcomes([p.ticker for p in held])
            for position in held:
                if position.ticker in outcomes:
                    self._settle(position, outcomes[position.ticker])

    def _tick_market(self, ticker: str, quote: MarketQuote | None, now: datetime) -> None:
        with transaction.atomic():
            account = SimAccount.objects.select_for_update().get(pk=self.account.pk)
            resting = list(
                SimOrder.objects.select_for_update()
                .filter(account=account, ticker=ticker, status="resting")
                .order_by("created_time", "id")
            )
            if not resting:
                return
            if quote is None:
                # The market closed: resting orders die with it.
                SimOrder.objects.filter(pk__in=[o.pk for o in resting]).update(
                    status=SimOrder.Status.CANCELED
                )
                return
            book = self._book(quote)
            sim_book, taken = _taken(account, ticker)
            states = [_state_of(o) for o in resting]
            since = min((o.seen_until or o.created_time for o in resting), default=now)
            reached = matching.reach(states, self._prints(ticker, since, now), book, taken, at=now)
            for order, state, volume in zip(resting, states, reached, strict=True):
                if volume > 0:
                    fill = matching.fill_resting(
                        state,
                        volume,
                        fees=quote.fees,
                        at=now,
                        cap=_cap(account, ticker, order.side, order.action),
                        budget=_cash(account) if order.action == "buy" else None,
                    )
                    if fill is not None:
                        self._book_fill(account, order, fill, now)
                if order.status == "resting" and matching.expired(state, now):
                    order.status = SimOrder.Status.CANCELED
                order.queue_ahead = state.queue_ahead
                order.seen_until = state.seen_until
                order.seen_version = state.seen_version
                order.save(update_fields=["queue_ahead", "seen_until", "seen_version", "status"])
            sim_book.taken = taken.to_json()
            sim_book.save(update_fields=["taken"])

    def _book_fill(
        self, account: SimAccount, order: SimOrder, fill: matching.Fill, now: datetime
    ) -> None:
        fill_no = SimFill.objects.filter(order=order).count() + 1
        SimFill.objects.create(
            account=account,
            order=order,
            fill_id=f"{order.order_id}-F{fill_no}",
            ticker=order.ticker,
            side=order.side,
            action=order.action,
            count=fill.count,
            yes_price=fill.yes_price,
            fee=fill.fee,
            is_taker=not fill.maker,
            executed_at=now,
        )
        side_price = fill.yes_price if order.side == "yes" else 1 - fill.yes_price
        _book_fill(
            account, order.ticker, order.side, order.action, fill.count, side_price, fill.fee
        )
        order.filled_count += fill.count
        order.fees += fill.fee
        if order.filled_count >= order.count:
            order.status = SimOrder.Status.EXECUTED
        order.save(update_fields=["filled_count", "fees", "status"])

    def _settle(self, position: SimPosition, outcome: MarketOutcome) -> None:
        with transaction.atomic():
            account = SimAccount.objects.select_for_update().get(pk=self.account.pk)
            position = SimPosition.objects.select_for_update().get(pk=position.pk)
            if position.position == 0:
                return
            yes_count = max(position.position, ZERO)
            no_count = max(-position.position, ZERO)
            if outcome.result == "yes":
                revenue = yes_count
            elif outcome.result == "no":
                revenue = no_count
            elif outcome.result == "scalar" and outcome.value is not None:
                revenue = yes_count * outcome.value + no_count * (1 - outcome.value)
            else:  # void: positions are returned at their cost
                revenue = position.cost
            revenue = revenue.quantize(MONEY_QUANTUM)
            SimSettlement.objects.create(
                account=account,
                ticker=position.ticker,
                result=outcome.result,
                yes_count=yes_count,
                no_count=no_count,
                revenue=revenue,
                # Kalshi's fee_cost: the trade fees already paid on the position's fills
                # (informational; settling charges no fee).
                fee=position.fees_paid,
                settled_at=outcome.settled_at,
            )
            SimAccount.objects.filter(pk=account.pk).update(cash=F("cash") + revenue)
            position.realized_pnl += revenue - position.cost
            position.position = ZERO
            position.cost = ZERO
            position.save(update_fields=["realized_pnl", "position", "cost"])
            SimOrder.objects.filter(
                account=account, ticker=position.ticker, status="resting"
            ).update(status=SimOrder.Status.CANCELED)


def _taken(account: SimAccount, ticker: str) -> tuple[SimBook, matching.Taken]:
    row, _ = SimBook.objects.select_for_update().get_or_create(account=account, ticker=ticker)
    return row, matching.Taken.from_json(row.taken)


def _state_of(order: SimOrder) -> matching.Order:
    """The matcher's view of a stored order, with its fills per (price, liquidity role)."""
    state = matching.Order(
        order.side,
        order.action,
        order.yes_price,
        order.count,
        filled=order.filled_count,
        queue_ahead=order.queue_ahead,
        seen_version=order.seen_version,
        seen_until=order.seen_until,
        expires_at=order.expiration_time,
    )
    for price, is_taker, count in order.fills.values_list("yes_price", "is_taker", "count"):
        key = (price, not is_taker)
        state.filled_at[key] = state.filled_at.get(key, ZERO) + count
    return state


def _own_queue(account: SimAccount, ticker: str, order: matching.Order) -> Decimal:
    """Our own resting contracts at the same price and direction: ahead of a new order."""
    same = SimOrder.objects.filter(
        account=account, ticker=ticker, status="resting", yes_price=order.yes_price
    )
    return sum(
        (o.count - o.filled_count for o in same if _state_of_direction(o) == order.is_bid), ZERO
    )


def _state_of_direction(order: SimOrder) -> bool:
    return (order.side == "yes") == (order.action == "buy")


def _cap(account: SimAccount, ticker: str, side: str, action: str) -> Decimal | None:
    """A sell never exceeds the contracts held; a buy is capped by cash instead."""
    return _held(account, ticker, side) if action == "sell" else None


def _cash(account: SimAccount) -> Decimal:
    return SimAccount.objects.values_list("cash", flat=True).get(pk=account.pk)


def _held(account: SimAccount, ticker: str, side: str) -> Decimal:
    position = (
        SimPosition.objects.filter(account=account, ticker=ticker)
        .values_list("position", flat=True)
        .first()
    ) or ZERO
    return max(position, ZERO) if side == "yes" else max(-position, ZERO)


def _book_fill(
    account: SimAccount,
    ticker: str,
    side: str,
    action: str,
    quantity: Decimal,
    side_price: Decimal,
    fee: Decimal,
) -> None:
    """Move cash and the net position for one fill; YES and NO net against each other."""
    position, _ = SimPosition.objects.select_for_update().get_or_create(
        account=account, ticker=ticker
    )
    # Everything in terms of the side held: buying the other side closes first.
    held_side = "yes" if position.position > 0 else "no" if position.position < 0 else side
    held = abs(position.position)
    increases = (side == held_side) == (action == "buy")
    cash_delta = -fee
    if increases:
        # Buying the held side (or selling the other side, which is buying the held one).
        price = side_price if side == held_side else 1 - side_price
        cash_delta -= quantity * price
        position.cost += (quantity * price).quantize(MONEY_QUANTUM)
        held += quantity
        new_side = held_side
    else:
        price = side_price if side == held_side else 1 - side_price
        closing = min(quantity, held)
        removed = (
            position.cost
            if closing == held
            else (position.cost * closing / held).quantize(MONEY_QUANTUM)
        )
        proceeds = closing * price
        cash_delta += proceeds
        position.realized_pnl += proceeds - removed
        position.cost -= removed
        held -= closing
        opening = quantity - closing
        new_side = held_side
        if opening > 0:
            # The rest flips to the other side, bought at its own price.
            new_side = "no" if held_side == "yes" else "yes"
            open_price = 1 - price
            cash_delta -= opening * open_price
            position.cost = (opening * open_price).quantize(MONEY_QUANTUM)
            held = opening
    position.position = held if new_side == "yes" else -held
    position.fees_paid += fee
    position.save(update_fields=["position", "cost", "realized_pnl", "fees_paid"])
    SimAccount.objects.filter(pk=account.pk).update(cash=F("cash") + cash_delta)


def _order_view(order: SimOrder) -> ExchangeOrder:
    return ExchangeOrder(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        ticker=order.ticker,
        side=order.side,
        action=order.action,
        yes_price=order.yes_price,
        count=order.count,
        filled_count=order.filled_count,
        remaining_count=order.count - order.filled_count if order.status == "resting" else ZERO,
        status=order.status,
        fees=order.fees,
        created_time=order.created_time,
    )
