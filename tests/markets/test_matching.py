"""Properties of the pure matcher (markets.matching): no Django, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from unittest import TestCase

from hypothesis import given, settings
from hypothesis import strategies as st

from markets import matching
from markets.fees import QUADRATIC_WITH_MAKER_FEES, FeeSchedule, order_fee

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
FEES = FeeSchedule(fee_type=QUADRATIC_WITH_MAKER_FEES)

cents = st.integers(min_value=1, max_value=99).map(lambda c: D(c) / 100)
counts = st.integers(min_value=1, max_value=300).map(D)


@st.composite
def books(draw):
    """A consistent book: YES bids below YES asks, best first on each side."""
    split = draw(st.integers(min_value=2, max_value=98))
    bid_prices = draw(st.lists(st.integers(1, split - 1), max_size=4, unique=True))
    ask_prices = draw(st.lists(st.integers(split, 99), max_size=4, unique=True))
    bids = tuple((D(p) / 100, draw(counts)) for p in sorted(bid_prices, reverse=True))
    asks = tuple((D(p) / 100, draw(counts)) for p in sorted(ask_prices))
    complete = draw(st.booleans())
    return matching.Book(bids, asks, version="v1", complete=complete, assumed_depth=D("100"))


orders = st.builds(
    lambda side, action, price, count: matching.Order(side, action, price, count),
    st.sampled_from(["yes", "no"]),
    st.sampled_from(["buy", "sell"]),
    cents,
    counts,
)


def crossing_displayed(order: matching.Order, book: matching.Book) -> D:
    levels = book.asks if order.is_bid else book.bids
    return sum((c for p, c in levels if order.crosses(p)), D(0))


class TakerProperties(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        book=books(),
        batch=st.lists(orders, min_size=1, max_size=5),
        tif=st.sampled_from(matching.TIME_IN_FORCE),
    )
    def test_never_more_than_displayed_and_never_worse_than_the_limit(self, book, batch, tif):
        taken = matching.Taken()
        filled_by_level: dict[tuple[bool, D], D] = {}
        for order in batch:
            fills, status = matching.place(order, book, taken, time_in_force=tif, fees=FEES, at=T0)
            self.assertEqual(sum((f.count for f in fills), D(0)), order.filled)
            self.assertLessEqual(order.filled, order.count)
            self.assertLessEqual(order.filled, crossing_displayed(order, book))
            for fill in fills:
                self.assertFalse(fill.maker)
                self.assertTrue(order.crosses(fill.yes_price))
                key = (order.is_bid, fill.yes_price)
                filled_by_level[key] = filled_by_level.get(key, D(0)) + fill.count
            if tif == matching.FOK:
                self.assertIn(order.filled, (D(0), order.count))
            if tif != matching.GTC:
                self.assertNotEqual(status, matching.RESTING)
            self.assertEqual(status == matching.EXECUTED, order.filled == order.count)
        # Across all the orders at one book version, no level gives more than it displays.
        for (is_bid, price), total in filled_by_level.items():
            displayed = dict(book.asks if is_bid else book.bids)[price]
            self.assertLessEqual(total, displayed)

    @settings(max_examples=200, deadline=None)
    @given(book=books(), order=orders, budget=st.integers(0, 200).map(D))
    def test_a_buy_never_spends_more_than_its_budget(self, book, order, budget):
        fills, _ = matching.place(order, book, matching.Taken(), fees=FEES, at=T0, budget=budget)
        spent = sum((f.count * order.side_price(f.yes_price) + f.fee for f in fills), D(0))
        if order.action == "buy":
            self.assertLessEqual(spent, budget)


class RestingProperties(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        book=books(),
        batch=st.lists(orders, min_size=1, max_size=4),
        trades=st.lists(st.tuples(st.integers(1, 30), cents, counts), max_size=6),
        moved=books(),
        budget=st.integers(0, 500).map(D),
        position=st.integers(0, 400).map(D),
    )
    def test_maker_fills_stay_within_printed_and_crossing_volume(
        self, book, batch, trades, moved, budget, position
    ):
        taken = matching.Taken()
        resting = []
        for order in batch:
            _, status = matching.place(order, book, taken, fees=FEES, at=T0)
            if status == matching.RESTING:
                resting.append(order)
        before = {id(o): o.filled for o in resting}
        queued = {id(o): o.queue_ahead for o in resting}
        prints = [
            matching.Print(T0 + timedelta(minutes=m), price, count) for m, price, count in trades
        ]
        later = T0 + timedelta(minutes=31)
        new_book = matching.Book(moved.bids, moved.asks, version="v2", assumed_depth=D("100"))
        reached = matching.reach(resting, prints, new_book, taken, at=later)
        cash, held = budget, position
        maker_total = D(0)
        for order, volume in zip(resting, reached, strict=True):
            self.assertGreaterEqual(volume, 0)
            self.assertLessEqual(volume, order.count - before[id(order)])
            fill = matching.fill_resting(
                order,
                volume,
                fees=FEES,
                at=later,
                cap=held if order.action == "sell" else None,
                budget=cash if order.action == "buy" else None,
            )
            if fill is None:
                continue
            maker_total += fill.count
            # Maker, at its limit price, never more than reached it.
            self.assertTrue(fill.maker)
            self.assertEqual(fill.yes_price, order.yes_price)
            self.assertLessEqual(fill.count, volume)
            # Cash and contracts are conserved: what is paid or sold comes out of the books.
            cost = fill.count * order.side_price(fill.yes_price) + fill.fee
            if order.action == "buy":
                cash -= cost
                self.assertGreaterEqual(cash, 0)
            else:
                held -= fill.count
                self.assertGreaterEqual(held, 0)
            # Only volume beyond the order's queue reaches it.
            through = sum((p.count for p in prints if order.crosses(p.yes_price)), D(0))
            crossing = crossing_displayed(order, new_book)
            self.assertLessEqual(
                fill.count + queued[id(order)] - order.queue_ahead, through + crossing
            )
        # Each contract printed or shown fills at most one of our orders.
        volume = sum((p.count for p in prints), D(0)) + sum(
            (c for _, c in new_book.asks + new_book.bids), D(0)
        )
        self.assertLessEqual(maker_total, volume)

    @settings(max_examples=100, deadline=None)
    @given(chunks=st.lists(st.integers(1, 50).map(D), min_size=1, max_size=6), price=cents)
    def test_the_fills_of_one_order_add_up_to_its_fee(self, chunks, price):
        total = sum(chunks, D(0))
        order = matching.Order("yes", "buy", price, total)
        order.seen_until = T0
        fees = D(0)
        for n, chunk in enumerate(chunks, start=1):
            fill = matching.fill_resting(order, chunk, fees=FEES, at=T0 + timedelta(minutes=n))
            fees += fill.fee
        self.assertEqual(order.filled, total)
        self.assertEqual(fees, order_fee(total, price, fees=FEES, maker=True))


class QueueTests(TestCase):
    def test_an_order_improving_the_price_has_no_queue_and_one_behind_the_top_the_assumed(self):
        book = matching.Book(((D("0.40"), D("30")),), ((D("0.45"), D("5")),), "v", False, D("100"))
        improve = matching.Order("yes", "buy", D("0.41"), D("1"))
        join = matching.Order("yes", "buy", D("0.40"), D("1"))
        behind = matching.Order("yes", "buy", D("0.39"), D("1"))
        self.assertEqual(matching.queue_at(improve, book), D("0"))
        self.assertEqual(matching.queue_at(join, book), D("30"))
        self.assertEqual(matching.queue_at(behind, book), D("100"))
        full = matching.Book(book.bids, book.asks, "v", True, D("100"))
        self.assertEqual(matching.queue_at(behind, full), D("0"))

    def test_one_print_is_shared_by_our_orders_in_price_then_time_priority(self):
        book = matching.Book((), (), "v")
        better = matching.Order("yes", "buy", D("0.42"), D("10"), seen_until=T0)
        worse = matching.Order("yes", "buy", D("0.41"), D("10"), seen_until=T0)
        trade = matching.Print(T0 + timedelta(minutes=1), D("0.40"), D("15"))
        reached = matching.reach([worse, better], [trade], book, matching.Taken(), at=trade.at)
        self.assertEqual(reached, [D("5"), D("10")])
