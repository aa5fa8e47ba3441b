"""A simulated exchange for paper and replay trading, with its own books in the database.

It behaves like Kalshi where the engine can tell: limit orders fill against the quoted top of
book up to the offered depth (partial fills rest, good-till-canceled, and fill later when the
price comes through), taker fees per Kalshi's schedule, a cash wallet that refuses orders it
cannot pay for, netting of YES against NO, settlement at $1/$0 (void refunds the cost), and a
409-style refusal of a ``client_order_id`` that matches an open order. The trading app
reconciles against it exactly as it would against Kalshi.

Quote sources:

- ``ReplayQuotes``: recorded snapshots in the database, as of a simulated clock; it never
  reveals a snapshot or a result from after that clock.
- ``PaperQuotes``: live public Kalshi data through ``KalshiClient`` (markets and order books).

Assumptions where the recorded data is thin (documented for replay):

- A snapshot with a last trade price but no bid/ask (5-minute candles) is quoted at
  ``last ± REPLAY_HALF_SPREAD`` ($0.01), clamped to the price grid inside (0, 1).
- Recorded data has no sizes: the best ask offers ``REPLAY_DEPTH`` (100) contracts.
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

from markets import kalshi
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
from markets.fees import MARKET_FEE_COLUMNS, schedule_from_values, taker_fee
from markets.models import (
    Market,
    MarketSnapshot,
    SimAccount,
    SimFill,
    SimOrder,
    SimPosition,
    SimSettlement,
)
from markets.money import MONEY_QUANTUM, PRICE_QUANTUM, ZERO

REPLAY_HALF_SPREAD = Decimal("0.01")
REPLAY_DEPTH = Decimal("100")
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
        if not self.trading_active:
            raise OrderRejected("trading is paused on the exchange", code="trading_paused")
        quote = self.quote(request.ticker)
        now = self.now()
        with transaction.atomic():
            account = SimAccount.objects.select_for_update().get(pk=self.account.pk)
            if SimOrder.objects.filter(
                account=account, client_order_id=request.client_order_id, status="resting"
            ).exists():
                raise DuplicateOrder(f"an open order has client_order_id {request.client_order_id}")
            if request.action == "buy":
                worst = request.count * request.side_price + taker_fee(
                    request.count, request.side_price
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
            )
            order.order_id = f"SIM-{order.pk}"
            order.save(update_fields=["order_id"])
            self._match(account, order, quote, now)
            if request.time_in_force != "good_till_canceled" and order.status == "resting":
                order.status = SimOrder.Status.CANCELED
                order.save(update_fields=["status"])
        return _order_view(order)

    def cancel_order(self, order_id: str, ticker: str) -> None:
        updated = SimOrder.objects.filter(
            account=self.account, order_id=order_id, status="resting"
        ).update(status=SimOrder.Status.CANCELED)
        if not updated:
            raise OrderRejected(f"no resting order {order_id}", code="not_found")

    # -- simulation ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Fill resting orders the market now reaches, and settle what has settled."""
        now = self.now()
        resting = list(SimOrder.objects.filter(account=self.account, status="resting"))
        if resting:
            by_ticker = {q.ticker: q for q in self.quotes.open_markets()}
            for order in resting:
                quote = by_ticker.get(order.ticker)
                with transaction.atomic():
                    account = SimAccount.objects.select_for_update().get(pk=self.account.pk)
                    order.refresh_from_db()
                    if order.status != "resting":
                        continue
                    if quote is None:
                        # The market closed: resting orders die with it.
                        order.status = SimOrder.Status.CANCELED
                        order.save(update_fields=["status"])
                    else:
                        self._match(account, order, quote, now)
        held = list(SimPosition.objects.filter(account=self.account).exclude(position=0))
        if held:
            outcomes = self.quotes.outcomes([p.ticker for p in held])
            for position in held:
                if position.ticker in outcomes:
                    self._settle(position, outcomes[position.ticker])

    def _match(self, account: SimAccount, order: SimOrder, quote: MarketQuote, now: datetime):
        remaining = order.count - order.filled_count
        buys_yes = (order.side == "yes") == (order.action == "buy")
        if buys_yes:
            price, depth = quote.yes_ask, quote.yes_ask_depth
            crosses = price is not None and price <= order.yes_price
        else:
            price, depth = quote.yes_bid, quote.no_ask_depth
            crosses = price is not None and price >= order.yes_price
        if not crosses:
            return
        quantity = remaining if depth is None else min(remaining, depth)
        if order.reduce_only or order.action == "sell":
            quantity = min(quantity, _held(account, order.ticker, order.side))
        if quantity <= 0:
            return
        side_price = price if order.side == "yes" else 1 - price
        fee = taker_fee(quantity, side_price)
        if order.action == "buy" and quantity * side_price + fee > account.cash:
            return
        fill_no = SimFill.objects.filter(order=order).count() + 1
        SimFill.objects.create(
            account=account,
            order=order,
            fill_id=f"{order.order_id}-F{fill_no}",
            ticker=order.ticker,
            side=order.side,
            action=order.action,
            count=quantity,
            yes_price=price,
            fee=fee,
            executed_at=now,
        )
        _book_fill(account, order.ticker, order.side, order.action, quantity, side_price, fee)
        order.filled_count += quantity
        order.fees += fee
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
