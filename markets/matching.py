"""Order matching for the simulated exchanges: paper, replay and the backtest fill with this code.

Pure Python (no Django, no I/O): the database-backed ``markets.simulator.SimulatedExchange`` and
the in-memory ``trading.backtest`` keep their own books and call the same functions, so a
contract fills the same way in all three.

Vocabulary. Every price is a YES price. An order that buys YES or sells NO is a *bid* (it
takes from the YES asks); one that buys NO or sells YES is an *ask* (it takes from the YES
bids). A ``Book`` lists the displayed levels of one market, best first on each side, with a
``version`` that changes when the book changes.

The model, and every assumption it makes:

- **Taking.** An order that crosses walks the opposite levels it knows, best first, and fills
  each at that level's own price as a taker, never at a price worse than its limit.
- **Taken liquidity stays taken until the book changes.** What our orders took from a level is
  remembered (``Taken``) while the book keeps its ``version`` and the level keeps its displayed
  size: 500 contracts cannot fill against a 100-contract level, in one order or across several
  orders at the same instant. A new version (replay: a new recorded snapshot), or a level whose
  displayed size changed (paper: the live book moved), shows fresh liquidity.
- **Known levels.** Paper reads Kalshi's full order book (every level). Replay has only the top
  of book, without sizes: each top level is assumed to show ``assumed_depth`` contracts (the
  replay exchange's documented depth), and nothing is assumed behind it.
- **Resting.** The unfilled part of a good-till-canceled order rests at its limit. It joins the
  queue *behind* the size displayed at its price on its own side (0 when it improves on the best
  price; the assumed depth when the price is behind a top-of-book-only quote, where the size
  there is unknown). Our own earlier orders at that price are ahead of it too.
- **Resting orders fill only as volume trades through their price**, at their limit price, as
  makers (the maker fee of the market's fee schedule). Volume means trade prints (replay: the
  recorded trades between snapshots; paper: Kalshi's public trades) at or through the limit
  (a bid at L counts prints at or below L, whatever their aggressor side), and opposite
  liquidity of a new book version that crosses the limit (an offer at or below our bid would
  have traded with the bids at our price first). Volume consumes the queue ahead before it
  reaches the order; across our own resting orders it is shared in price, then time, priority,
  so no print fills more of ours than its size (bids first, then asks, from one print).
  Prints after an order's expiry do not count.
- **Time in force.** ``fill_or_kill``: all or nothing, nothing rests. ``immediate_or_cancel``:
  what fills now, the rest is canceled. ``good_till_canceled``: the rest rests, until canceled
  or until its ``expiration_time``. ``post_only`` refuses an order that would take liquidity.
- **Fees** accumulate per order (``markets.fees.fill_fee``): an order's fills at one price and
  liquidity role (taker or maker) add up to that order's fee for their total count at that
  price, so sub-cent rounding is paid once per order and price, not once per fill.
- **Caps.** The caller passes what its books allow: ``cap`` (contracts; e.g. a sell cannot
  exceed the position) and ``budget`` (cash for a buy, fees included). Volume that reaches an
  order it cannot take is not given to another order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from markets.fees import DEFAULT_FEES, FeeSchedule, fill_fee
from markets.money import COUNT_QUANTUM, ZERO

GTC = "good_till_canceled"
IOC = "immediate_or_cancel"
FOK = "fill_or_kill"
TIME_IN_FORCE = (GTC, IOC, FOK)

RESTING = "resting"
CANCELED = "canceled"
EXECUTED = "executed"

Level = tuple[Decimal, Decimal]  # (YES price, contracts displayed)


class MatchRejected(Exception):
    """The order cannot be accepted as sent (e.g. a post-only order that would cross)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Book:
    """One market's displayed liquidity. ``bids``: YES bids, highest first; ``asks``: YES
    asks, lowest first. ``complete``: every level is listed (a full order book), else only the
    top, and ``assumed_depth`` is the size assumed behind a price that is not listed."""

    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()
    version: str = ""
    complete: bool = False
    assumed_depth: Decimal = ZERO


@dataclass(frozen=True)
class Print:
    """A trade on the market: ``count`` contracts at ``yes_price``, at ``at``."""

    at: datetime
    yes_price: Decimal
    count: Decimal


@dataclass(frozen=True)
class Fill:
    yes_price: Decimal
    count: Decimal
    fee: Decimal
    maker: bool


@dataclass
class Taken:
    """Liquidity our orders took from one market's book: per (book side, price), the displayed
    size the level had and how much of it we took, valid while the book keeps ``version``."""

    version: str = ""
    levels: dict[tuple[str, Decimal], tuple[Decimal, Decimal]] = field(default_factory=dict)

    def sync(self, book: Book) -> None:
        if book.version != self.version:
            self.version = book.version
            self.levels = {}

    def left(self, book_side: str, price: Decimal, displayed: Decimal) -> Decimal:
        seen = self.levels.get((book_side, price))
        if seen is None or seen[0] != displayed:
            return displayed  # a level that changed is a new level
        return max(displayed - seen[1], ZERO)

    def take(self, book_side: str, price: Decimal, displayed: Decimal, count: Decimal) -> None:
        seen = self.levels.get((book_side, price))
        before = seen[1] if seen is not None and seen[0] == displayed else ZERO
        self.levels[(book_side, price)] = (displayed, before + count)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "levels": [[s, str(p), str(d), str(c)] for (s, p), (d, c) in self.levels.items()],
        }

    @classmethod
    def from_json(cls, data: dict | None) -> Taken:
        if not data:
            return cls()
        levels = {
            (s, Decimal(p)): (Decimal(d), Decimal(c)) for s, p, d, c in data.get("levels", [])
        }
        return cls(version=data.get("version", ""), levels=levels)


@dataclass
class Order:
    """The matcher's view of one order. ``filled_at`` counts the contracts filled per
    (YES price, maker) for the per-order fee accumulation."""

    side: str  # yes | no
    action: str  # buy | sell
    yes_price: Decimal
    count: Decimal
    filled: Decimal = ZERO
    queue_ahead: Decimal = ZERO
    seen_version: str = ""
    seen_until: datetime | None = None
    expires_at: datetime | None = None
    filled_at: dict[tuple[Decimal, bool], Decimal] = field(default_factory=dict)

    @property
    def is_bid(self) -> bool:
        return (self.side == "yes") == (self.action == "buy")

    @property
    def remaining(self) -> Decimal:
        return self.count - self.filled

    def side_price(self, yes_price: Decimal) -> Decimal:
        return yes_price if self.side == "yes" else 1 - yes_price

    def crosses(self, yes_price: Decimal) -> bool:
        """Whether a price on the opposite side is at or through this order's limit."""
        return yes_price <= self.yes_price if self.is_bid else yes_price >= self.yes_price


def _opposite(order: Order, book: Book) -> tuple[str, tuple[Level, ...]]:
    return ("ask", book.asks) if order.is_bid else ("bid", book.bids)


def crossing(order: Order, book: Book, taken: Taken) -> list[tuple[Decimal, Decimal, Decimal]]:
    """The opposite levels the order could take now: (price, displayed, left), best first."""
    taken.sync(book)
    book_side, levels = _opposite(order, book)
    found = []
    for price, displayed in levels:
        if not order.crosses(price):
            break
        left = taken.left(book_side, price, displayed)
        if left > 0:
            found.append((price, displayed, left))
    return found


def _fee(order: Order, yes_price: Decimal, count: Decimal, fees: FeeSchedule, maker: bool, at):
    before = order.filled_at.get((yes_price, maker), ZERO)
    return fill_fee(
        before, before + count, order.side_price(yes_price), fees=fees, maker=maker, at=at
    )


def _affordable(
    order: Order,
    yes_price: Decimal,
    count: Decimal,
    budget: Decimal | None,
    fees: FeeSchedule,
    maker: bool,
    at,
) -> Decimal:
    """The most of ``count`` a buy can pay for at ``yes_price`` within ``budget``."""
    if budget is None or order.action != "buy":
        return count
    price = order.side_price(yes_price)

    def cost(n: Decimal) -> Decimal:
        return n * price + _fee(order, yes_price, n, fees, maker, at)

    if cost(count) <= budget:
        return count
    n = min(count, (max(budget, ZERO) / price).quantize(COUNT_QUANTUM, rounding=ROUND_FLOOR))
    while n > 0 and cost(n) > budget:
        over = ((cost(n) - budget) / price).quantize(COUNT_QUANTUM, rounding=ROUND_CEILING)
        n -= max(over, COUNT_QUANTUM)
    return max(n, ZERO)


def _record(order: Order, fill: Fill) -> None:
    key = (fill.yes_price, fill.maker)
    order.filled_at[key] = order.filled_at.get(key, ZERO) + fill.count
    order.filled += fill.count


def _fill_cost(order: Order, fill: Fill) -> Decimal:
    return fill.count * order.side_price(fill.yes_price) + fill.fee


def take(
    order: Order,
    book: Book,
    taken: Taken,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    at: datetime | None = None,
    all_or_none: bool = False,
    cap: Decimal | None = None,
    budget: Decimal | None = None,
) -> list[Fill]:
    """Fill what crosses now, level by level, as a taker (see the module docstring)."""
    want = order.remaining if cap is None else min(order.remaining, max(cap, ZERO))
    plan: list[tuple[Decimal, Decimal, Decimal]] = []
    spent = ZERO
    probe = Order(order.side, order.action, order.yes_price, order.count, order.filled)
    probe.filled_at = dict(order.filled_at)
    for price, displayed, left in crossing(order, book, taken):
        if want <= 0:
            break
        n = min(left, want)
        if budget is not None:
            n = _affordable(probe, price, n, budget - spent, fees, False, at)
        if n <= 0:
            break
        fill = Fill(price, n, _fee(probe, price, n, fees, False, at), maker=False)
        _record(probe, fill)
        spent += _fill_cost(probe, fill)
        plan.append((price, displayed, n))
        want -= n
    if all_or_none and sum((n for _, _, n in plan), ZERO) < order.remaining:
        return []
    book_side, _ = _opposite(order, book)
    fills = []
    for price, displayed, n in plan:
        fill = Fill(price, n, _fee(order, price, n, fees, False, at), maker=False)
        _record(order, fill)
        taken.take(book_side, price, displayed, n)
        fills.append(fill)
    return fills


def queue_at(order: Order, book: Book) -> Decimal:
    """The displayed size ahead of a new resting order at its price, on its own side."""
    levels = book.bids if order.is_bid else book.asks
    for price, displayed in levels:
        if price == order.yes_price:
            return displayed
    best = levels[0][0] if levels else None
    improves = best is None or (order.yes_price > best if order.is_bid else order.yes_price < best)
    if improves or book.complete:
        return ZERO
    return book.assumed_depth


def place(
    order: Order,
    book: Book,
    taken: Taken,
    *,
    time_in_force: str = GTC,
    post_only: bool = False,
    fees: FeeSchedule = DEFAULT_FEES,
    at: datetime | None = None,
    cap: Decimal | None = None,
    budget: Decimal | None = None,
    own_ahead: Decimal = ZERO,
) -> tuple[list[Fill], str]:
    """A new order against the book: its taker fills and its status (resting, canceled,
    executed). ``own_ahead``: our own resting contracts already queued at the same price."""
    if time_in_force not in TIME_IN_FORCE:
        raise MatchRejected(f"unknown time in force {time_in_force!r}", code="invalid_order")
    if post_only and crossing(order, book, taken):
        raise MatchRejected("a post-only order would take liquidity", code="post_only_cross")
    fills = take(
        order,
        book,
        taken,
        fees=fees,
        at=at,
        all_or_none=time_in_force == FOK,
        cap=cap,
        budget=budget,
    )
    if order.remaining <= 0:
        return fills, EXECUTED
    if time_in_force != GTC or (order.expires_at is not None and at and order.expires_at <= at):
        return fills, CANCELED
    order.queue_ahead = queue_at(order, book) + own_ahead
    order.seen_version = book.version
    order.seen_until = at
    return fills, RESTING


def _priority(order: Order) -> Decimal:
    return -order.yes_price if order.is_bid else order.yes_price


def reach(
    orders: list[Order], prints: list[Print], book: Book | None, taken: Taken, *, at: datetime
) -> list[Decimal]:
    """How many contracts of trading volume reach each resting order (after its queue), in
    price then list (time) priority; updates each order's queue and what it has seen, and
    marks book liquidity that crossed our orders as taken. See the module docstring."""
    reached = [ZERO] * len(orders)
    ranked = sorted(range(len(orders)), key=lambda i: (_priority(orders[i]), i))

    def spend(volume: Decimal, price: Decimal, eligible) -> Decimal:
        for i in ranked:
            if volume <= 0:
                break
            order = orders[i]
            if not eligible(order) or not order.crosses(price):
                continue
            queued = min(volume, order.queue_ahead)
            order.queue_ahead -= queued
            volume -= queued
            got = min(volume, order.remaining - reached[i])
            reached[i] += got
            volume -= got
        return volume

    for trade in sorted(prints, key=lambda p: p.at):
        if trade.at > at:
            continue
        volume = trade.count  # one trade fills our bids or our asks, never both
        for is_bid in (True, False):

            def eligible(order: Order, trade=trade, is_bid=is_bid) -> bool:
                return (
                    order.is_bid == is_bid
                    and (order.seen_until is None or trade.at > order.seen_until)
                    and (order.expires_at is None or trade.at < order.expires_at)
                )

            volume = spend(volume, trade.yes_price, eligible)
    if book is not None:
        taken.sync(book)
        for is_bid, book_side, levels in ((True, "ask", book.asks), (False, "bid", book.bids)):

            def fresh(order: Order, is_bid=is_bid) -> bool:
                return (
                    order.is_bid == is_bid
                    and order.seen_version != book.version
                    and (order.expires_at is None or at < order.expires_at)
                )

            for price, displayed in levels:
                left = taken.left(book_side, price, displayed)
                if left <= 0:
                    continue
                used = left - spend(left, price, fresh)
                if used > 0:
                    taken.take(book_side, price, displayed, used)
    for order in orders:
        order.seen_until = at
        if book is not None:
            order.seen_version = book.version
    return reached


def fill_resting(
    order: Order,
    volume: Decimal,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    at: datetime | None = None,
    cap: Decimal | None = None,
    budget: Decimal | None = None,
) -> Fill | None:
    """The maker fill of a resting order that ``volume`` contracts reached (at its limit)."""
    n = min(volume, order.remaining)
    if cap is not None:
        n = min(n, max(cap, ZERO))
    n = _affordable(order, order.yes_price, n, budget, fees, True, at) if n > 0 else n
    if n <= 0:
        return None
    fill = Fill(order.yes_price, n, _fee(order, order.yes_price, n, fees, True, at), maker=True)
    _record(order, fill)
    return fill


def expired(order: Order, at: datetime) -> bool:
    return order.expires_at is not None and order.expires_at <= at


def book_from_quote(quote, *, version: str, assumed_depth: Decimal) -> Book:
    """A top-of-book ``Book`` from a ``MarketQuote`` (a depth it does not know is assumed)."""
    bids: tuple[Level, ...] = ()
    asks: tuple[Level, ...] = ()
    if quote.yes_bid is not None:
        depth = quote.no_ask_depth if quote.no_ask_depth is not None else assumed_depth
        bids = ((quote.yes_bid, depth),)
    if quote.yes_ask is not None:
        depth = quote.yes_ask_depth if quote.yes_ask_depth is not None else assumed_depth
        asks = ((quote.yes_ask, depth),)
    return Book(bids=bids, asks=asks, version=version, assumed_depth=assumed_depth)
