"""PaperQuotes: live public Kalshi data (FakeKalshi) driving the simulated exchange."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.test import TestCase

from markets.exchange import OrderRequest
from markets.models import SimFill
from markets.paper import PaperQuotes
from markets.simulator import SimulatedExchange
from tests.fakes import FakeKalshi

TICKER = "KXHIGHNY-26SEP01-T60"


class PaperQuotesTests(TestCase):
    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.add_market(TICKER, yes_bid="0.4500", yes_ask="0.4700", yes_ask_size="6")
        self.fake.add_market("KXCLOSED-26SEP01-T1", yes_bid="0.1", yes_ask="0.2", status="closed")
        self.quotes = PaperQuotes(self.fake.client())

    def test_open_markets_lists_active_markets_once_per_cycle(self):
        first = self.quotes.open_markets()
        self.assertEqual([q.ticker for q in first], [TICKER])
        self.assertEqual((first[0].yes_ask, first[0].yes_ask_depth), (D("0.47"), D("6")))
        self.quotes.open_markets()
        self.assertEqual(self.fake.count("GET /markets"), 1)
        self.quotes.refresh()
        self.quotes.open_markets()
        self.assertEqual(self.fake.count("GET /markets"), 2)

    def test_quote_reads_the_book_and_none_for_a_closed_or_unknown_market(self):
        self.fake.set_orderbook(TICKER, yes=[("0.45", "3")], no=[("0.52", "8"), ("0.53", "2")])
        q = self.quotes.quote(TICKER)
        self.assertEqual((q.yes_ask, q.yes_ask_depth, q.no_ask_depth), (D("0.47"), D("2"), D("3")))
        self.assertIsNone(self.quotes.quote("KXCLOSED-26SEP01-T1"))
        self.assertIsNone(self.quotes.quote("NOPE-1"))

    def test_outcomes_report_only_settled_markets(self):
        self.fake.settle_market(TICKER, "no")
        self.fake.markets[TICKER]["settlement_ts"] = (
            self.fake.now + timedelta(hours=2)
        ).isoformat()
        found = self.quotes.outcomes([TICKER, "KXCLOSED-26SEP01-T1"])
        self.assertEqual(set(found), {TICKER})
        self.assertEqual(found[TICKER].result, "no")
        self.assertEqual(found[TICKER].settled_at, self.fake.now + timedelta(hours=2))

    def test_the_simulated_exchange_fills_against_the_live_book_and_never_posts(self):
        self.fake.set_orderbook(TICKER, yes=[("0.45", "10")], no=[("0.53", "4")])
        ex = SimulatedExchange(
            name="paper", quotes=self.quotes, account="paper-test", starting_cash=D("100")
        )
        placed = ex.place_order(
            OrderRequest(
                client_order_id="p1",
                ticker=TICKER,
                side="yes",
                action="buy",
                yes_price=D("0.47"),
                count=D("10"),
            )
        )
        # only the 4 contracts offered at the best ask fill; the rest rests in the simulator
        self.assertEqual((placed.status, placed.filled_count), ("resting", D("4")))
        # (read the simulator's ledger directly: ex.fills() would tick against the same live book)
        [fill] = SimFill.objects.filter(account__name="paper-test")
        self.assertEqual((fill.yes_price, fill.count), (D("0.47"), D("4")))
        self.fake.set_orderbook(TICKER, yes=[("0.45", "10")], no=[("0.40", "50")])
        self.quotes.refresh()
        self.assertEqual(len(ex.fills()), 1)  # the ask moved away: nothing more fills
        self.assertEqual([r for r in self.fake.requests if r.method != "GET"], [])
        self.assertEqual(self.fake.accepted, [])
