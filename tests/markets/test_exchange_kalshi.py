"""KalshiExchange over the real KalshiClient against FakeKalshi (httpx.MockTransport)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from django.test import TestCase
from django.utils import timezone

from markets import kalshi
from markets.exchange import (
    DuplicateOrder,
    ExchangeDataError,
    OrderOutcomeUnknown,
    OrderRejected,
    OrderRequest,
)
from markets.exchange_kalshi import KalshiExchange
from markets.services import market_sync
from tests.base import make_event, make_market, make_series
from tests.fakes import FakeKalshi
from trading import services
from trading.models import Fill, JobRun, Position, TradingState

TICKER = "KXHIGHNY-26SEP01-T60"
CREATE = "POST /portfolio/events/orders"


def request(cid="c1", side="yes", action="buy", price="0.47", count="10", **kw) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid,
        ticker=TICKER,
        side=side,
        action=action,
        yes_price=D(price),
        count=D(count),
        **kw,
    )


class KalshiExchangeTests(TestCase):
    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.add_market(
            TICKER, yes_bid="0.4500", yes_ask="0.4700", yes_bid_size="30", yes_ask_size="20"
        )
        self.ex = KalshiExchange(self.fake.client())

    def test_it_is_the_live_exchange(self):
        self.assertTrue(self.ex.places_real_orders)
        self.assertEqual(self.ex.name, "live")

    def test_open_markets_maps_quotes_depth_and_category_from_the_db(self):
        self.fake.add_market("KXOTHER-26SEP01-T1", yes_bid=None, yes_ask="0.1000")
        self.fake.add_market("KXSHUT-26SEP01-T1", yes_bid="0.1", yes_ask="0.2", status="closed")
        series = make_series(ticker="KXHIGHNY", category="Climate")
        make_market(make_event(series, event_ticker="KXHIGHNY-26SEP01"), ticker=TICKER)
        quotes = {q.ticker: q for q in self.ex.open_markets()}
        self.assertEqual(set(quotes), {TICKER, "KXOTHER-26SEP01-T1"})
        q = quotes[TICKER]
        self.assertEqual((q.yes_bid, q.yes_ask), (D("0.45"), D("0.47")))
        self.assertEqual((q.yes_ask_depth, q.no_ask_depth), (D("20"), D("30")))
        self.assertEqual((q.status, q.event_ticker), ("active", "KXHIGHNY-26SEP01"))
        self.assertEqual(q.category, "Climate")
        other = quotes["KXOTHER-26SEP01-T1"]
        self.assertEqual((other.yes_bid, other.no_ask_depth, other.category), (None, D(0), ""))
        self.assertEqual(self.fake.calls("GET /markets")[0].query["status"], "open")

    def test_quote_takes_depth_at_the_best_ask_from_the_book(self):
        self.fake.set_orderbook(
            TICKER, yes=[("0.44", "5"), ("0.45", "7")], no=[("0.50", "9"), ("0.53", "11")]
        )
        q = self.ex.quote(TICKER)
        self.assertEqual((q.yes_bid, q.yes_ask), (D("0.45"), D("0.47")))
        # YES ask depth = best NO bid level (0.53 x 11); NO ask depth = best YES bid (0.45 x 7)
        self.assertEqual((q.yes_ask_depth, q.no_ask_depth), (D("11"), D("7")))

    def test_a_marketable_buy_executes_and_sends_a_v2_bid(self):
        placed = self.ex.place_order(request())
        self.assertEqual((placed.status, placed.filled_count), ("executed", D("10")))
        self.assertEqual((placed.side, placed.action, placed.client_order_id), ("yes", "buy", "c1"))
        [sent] = self.fake.calls(CREATE)
        self.assertEqual(sent.json["side"], "bid")
        self.assertEqual(sent.json["price"], "0.4700")
        self.assertEqual(sent.json["self_trade_prevention_type"], "taker_at_cross")
        self.assertEqual(sent.json["client_order_id"], "c1")
        self.assertEqual(sent.json["time_in_force"], "good_till_canceled")

    def test_buying_no_is_an_ask_at_the_yes_price_and_rests_below_the_book(self):
        placed = self.ex.place_order(request(side="no", price="0.50"))
        self.assertEqual((placed.status, placed.remaining_count), ("resting", D("10")))
        [sent] = self.fake.calls(CREATE)
        self.assertEqual((sent.json["side"], sent.json["price"]), ("ask", "0.5000"))

    def test_reduce_only_is_sent(self):
        self.ex.place_order(request(price="0.47", count="5"))
        self.ex.place_order(
            request(cid="c2", action="sell", price="0.45", count="5", reduce_only=True)
        )
        sent = self.fake.calls(CREATE)[1].json
        self.assertEqual((sent["side"], sent["reduce_only"]), ("ask", True))
        self.assertEqual(self.fake.position(TICKER), D(0))

    def test_max_cost_includes_the_fee_and_refuses_before_sending(self):
        # 10 x 0.47 = 4.70 plus a 0.18 taker fee: 4.80 is not enough
        with self.assertRaises(OrderRejected) as caught:
            self.ex.place_order(request(max_cost=D("4.80")))
        self.assertEqual(caught.exception.code, "invalid_order")
        self.assertEqual(self.fake.count(CREATE), 0)
        self.ex.place_order(request(max_cost=D("4.88")))
        self.assertEqual(self.fake.count(CREATE), 1)

    def test_a_409_is_a_duplicate_order(self):
        self.ex.place_order(request(price="0.30"))
        with self.assertRaises(DuplicateOrder):
            self.ex.place_order(request(price="0.30"))

    def test_a_400_is_a_rejection_with_kalshis_code(self):
        self.fake.fail_next(CREATE, 400)
        with self.assertRaises(OrderRejected) as caught:
            self.ex.place_order(request())
        self.assertTrue(caught.exception.code)
        self.assertFalse(caught.exception.outcome_unknown)

    def test_timeouts_and_5xx_leave_the_outcome_unknown(self):
        for kind in ("timeout", 500, 429, "accept_then_500"):
            self.fake.fail_next(CREATE, kind)
            with self.assertRaises(OrderOutcomeUnknown):
                self.ex.place_order(request(cid=f"c-{kind}", price="0.30"))

    def test_a_401_on_create_is_permanent_not_unknown(self):
        self.fake.fail_next(CREATE, 401)
        with self.assertRaises(OrderRejected):
            self.ex.place_order(request())

    def test_orders_and_fills_read_back_in_their_buy_form(self):
        self.ex.place_order(request(count="4"))
        self.ex.place_order(
            request(cid="c2", action="sell", price="0.45", count="4", reduce_only=True)
        )
        fills = self.ex.fills()
        by_order = {f.order_id: f for f in fills}
        self.assertEqual(len(by_order), 2)
        directions = sorted((f.side, f.action, f.yes_price) for f in fills)
        # selling YES is a YES ask: it reads back as buying NO at the same YES price
        self.assertEqual(directions, [("no", "buy", D("0.45")), ("yes", "buy", D("0.47"))])
        self.assertTrue(all(f.fee > 0 and f.is_taker for f in fills))
        orders = {o.client_order_id: o for o in self.ex.orders()}
        self.assertEqual(orders["c2"].side, "no")
        self.assertEqual((orders["c1"].status, orders["c1"].filled_count), ("executed", D("4")))
        self.assertEqual(orders["c1"].fees, by_order[orders["c1"].order_id].fee)

    def test_positions_balance_and_settlements(self):
        self.ex.place_order(request(count="10"))
        [position] = self.ex.positions()
        self.assertEqual((position.ticker, position.position), (TICKER, D("10")))
        self.assertEqual(self.ex.balance(), D("1000") - D("4.70") - D("0.18"))
        self.fake.settle_market(TICKER, "yes")
        [settlement] = self.ex.settlements()
        self.assertEqual((settlement.result, settlement.yes_count), ("yes", D("10")))
        self.assertEqual(settlement.revenue, D("10.00"))
        self.assertEqual(self.ex.positions(), [])

    def test_since_is_sent_as_min_ts(self):
        since = self.fake.now - timedelta(hours=1)
        self.ex.fills(since=since)
        self.assertEqual(
            self.fake.calls("GET /portfolio/fills")[0].query["min_ts"], str(int(since.timestamp()))
        )

    def test_cancel_and_cancel_of_an_unknown_order(self):
        placed = self.ex.place_order(request(price="0.30"))
        self.ex.cancel_order(placed.order_id, TICKER)
        self.assertEqual(self.fake.open_orders(), [])
        with self.assertRaises(OrderRejected):
            self.ex.cancel_order("nope", TICKER)

    def test_a_resting_order_carries_its_expiry_in_unix_seconds_and_cancels_go_to_v2(self):
        expires = self.fake.now + timedelta(minutes=2)
        placed = self.ex.place_order(request(price="0.30", expiration_time=expires))
        [sent] = self.fake.calls(CREATE)
        self.assertEqual(sent.json["expiration_time"], int(expires.timestamp()))
        self.assertEqual(sent.json["time_in_force"], "good_till_canceled")
        [read] = [o for o in self.ex.client.iter_orders() if o.order_id == placed.order_id]
        self.assertEqual(read.expiration_time, expires.replace(microsecond=0))
        self.ex.cancel_order(placed.order_id, TICKER)
        [cancel] = self.fake.calls("DELETE /portfolio/events/orders/{order_id}")
        self.assertEqual(cancel.query.get("market_ticker"), TICKER)

    def test_an_immediate_order_is_sent_without_an_expiry(self):
        self.ex.place_order(
            request(
                time_in_force="immediate_or_cancel",
                expiration_time=self.fake.now + timedelta(minutes=2),
            )
        )
        [sent] = self.fake.calls(CREATE)
        self.assertNotIn("expiration_time", sent.json)

    def test_status(self):
        self.fake.trading_active = False
        status = self.ex.status()
        self.assertEqual((status.exchange_active, status.trading_active), (True, False))


class UnreadableMoneyRecordTests(TestCase):
    """An order, fill, position, settlement or balance that cannot be read (or stored) is never
    skipped: the read raises ``ExchangeDataError`` naming the record and the field, and reconcile
    books nothing from it."""

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.now = timezone.now()
        self.fake.add_market(
            TICKER,
            yes_bid="0.4500",
            yes_ask="0.4700",
            close_time=timezone.now() + timedelta(days=3),
        )
        client = self.fake.client()
        market_sync(client=client)
        self.ex = KalshiExchange(client)
        self.ex.place_order(request(count="4"))
        [self.fill_id] = [f["fill_id"] for f in self.fake.fills]

    def corrupt(self, route: str, key: str, **fields):
        """The next reply to ``route`` carries its first record with ``fields`` changed."""

        def mutate(body):
            body[key][0] = {**body[key][0], **fields}

        self.fake.fail_next(route, "mutate", mutate=mutate)

    def test_a_malformed_fill_stops_reconcile_with_the_reason_and_books_nothing(self):
        self.corrupt("GET /portfolio/fills", "fills", count_fp="four")
        with self.assertRaises(ExchangeDataError) as caught:
            services.reconcile_run(exchange=self.ex, mode="live", now=self.fake.now)
        reason = caught.exception.message
        self.assertIn(f"Fill[{self.fill_id}].count_fp", reason)
        self.assertIn("halt", reason)
        self.assertFalse(Fill.objects.exists())
        self.assertFalse(Position.objects.exists())
        # Money records are never skipped silently: trading is halted with that reason.
        state = TradingState.load()
        self.assertEqual(state.state, TradingState.State.HALTED)
        self.assertIn(f"Fill[{self.fill_id}].count_fp", state.reason)

    def test_the_failed_job_run_carries_the_reason(self):
        self.corrupt("GET /portfolio/fills", "fills", yes_price_dollars="0.47000001")
        run = services.run_job(
            "reconcile",
            "live",
            lambda run, token: services.reconcile_run(
                exchange=self.ex, mode="live", now=self.fake.now, run=run
            ),
        )
        self.assertEqual(run.status, JobRun.Status.FAILED)
        self.assertIn(f"Fill[{self.fill_id}].yes_price_dollars", run.error)
        self.assertFalse(Fill.objects.exists())

    def test_every_money_read_refuses_an_unreadable_record(self):
        reads = [
            ("GET /portfolio/orders", "orders", {"fill_count_fp": None}, self.ex.orders),
            ("GET /portfolio/fills", "fills", {"created_time": "yesterday"}, self.ex.fills),
            (
                "GET /portfolio/positions",
                "market_positions",
                {"position_fp": []},
                self.ex.positions,
            ),
            ("GET /portfolio/settlements", "settlements", {"revenue": "1.5"}, self.ex.settlements),
        ]
        self.fake.settle_market(TICKER, "yes")
        self.fake.positions[TICKER].position = D(3)
        for route, key, fields, read in reads:
            with self.subTest(route=route):
                self.corrupt(route, key, **fields)
                with self.assertRaises(ExchangeDataError) as caught:
                    read()
                self.assertIn(next(iter(fields)), caught.exception.message)
                self.assertTrue(caught.exception.permanent)
                read()  # the next, clean read works
        self.fake.fail_next(
            "GET /portfolio/balance",
            "mutate",
            mutate=lambda body: body.update(balance_dollars="NaN"),
        )
        with self.assertRaises(ExchangeDataError) as caught:
            self.ex.balance()
        self.assertIn("balance_dollars", caught.exception.message)

    def test_money_values_our_columns_cannot_hold_are_refused_with_a_clear_message(self):
        # Exact Decimal strings the spec allows, but CountField / MoneyField hold 12 / 9 digits
        # before the point.
        cases = [
            ("GET /portfolio/fills", "fills", {"count_fp": "1000000000000.00"}, self.ex.fills),
            ("GET /portfolio/fills", "fills", {"fee_cost": "1000000000.00"}, self.ex.fills),
            ("GET /portfolio/orders", "orders", {"taker_fees_dollars": "1e9"}, self.ex.orders),
            ("GET /portfolio/fills", "fills", {"fill_id": "f\x00"}, self.ex.fills),
        ]
        for route, key, fields, read in cases:
            with self.subTest(fields=fields):
                self.corrupt(route, key, **fields)
                with self.assertRaises(ExchangeDataError) as caught:
                    read()
                self.assertIn(next(iter(fields)), caught.exception.message)
        self.fake.fail_next(
            "GET /portfolio/balance",
            "mutate",
            mutate=lambda body: body.update(balance_dollars="123456789012.50"),
        )
        with self.assertRaises(ExchangeDataError) as caught:
            self.ex.balance()
        self.assertIn("balance", caught.exception.message)


class MalformedMarketReadsTests(TestCase):
    """Market data is not money: a malformed market is logged and left out of the open markets
    (live and paper) and of the outcomes, and the rest is served."""

    def setUp(self):
        self.fake = FakeKalshi()
        self.fake.add_market(TICKER, yes_bid="0.4500", yes_ask="0.4700")
        self.fake.add_market("KXBAD-26SEP01-T1", yes_bid="0.4500", yes_ask="0.4700")
        self.fake.markets["KXBAD-26SEP01-T1"]["floor_strike"] = "fifty"

    def test_the_live_exchange_skips_it(self):
        with self.assertLogs("markets.kalshi", "WARNING") as logs:
            quotes = KalshiExchange(self.fake.client()).open_markets()
        self.assertEqual([q.ticker for q in quotes], [TICKER])
        self.assertIn("Market[KXBAD-26SEP01-T1].floor_strike", "\n".join(logs.output))

    def test_paper_quotes_skip_it(self):
        from markets.paper import PaperQuotes

        self.fake.settle_market(TICKER, "yes")
        self.fake.add_market("KXOPEN-26SEP01-T1", yes_bid="0.4500", yes_ask="0.4700")
        quotes = PaperQuotes(self.fake.client())
        with self.assertLogs("markets.kalshi", "WARNING") as logs:
            self.assertEqual([q.ticker for q in quotes.open_markets()], ["KXOPEN-26SEP01-T1"])
            outcomes = quotes.outcomes([TICKER, "KXBAD-26SEP01-T1"])
        self.assertEqual(set(outcomes), {TICKER})
        self.assertIn("KXBAD-26SEP01-T1", "\n".join(logs.output))

    def test_an_event_reader_can_skip_a_malformed_event(self):
        self.fake.add_event("KXBADEVENT-26SEP01", mutually_exclusive="sometimes")
        client = self.fake.client()
        with self.assertRaises(kalshi.KalshiParseError):
            client.get_events()
        skipped = []
        events = client.get_events(on_error=skipped.append)
        self.assertIn("KXHIGHNY-26SEP01", [e.event_ticker for e in events])
        self.assertNotIn("KXBADEVENT-26SEP01", [e.event_ticker for e in events])
        [error] = skipped
        self.assertEqual(
            (error.record, error.field), ("Event[KXBADEVENT-26SEP01]", "mutually_exclusive")
        )
