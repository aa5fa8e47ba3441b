"""KALSHI_SUBACCOUNT scopes every portfolio call that takes one, through the real client."""

from __future__ import annotations

from decimal import Decimal as D

from django.test import SimpleTestCase, override_settings

from markets.exchange import OrderRequest
from markets.exchange_kalshi import KalshiExchange
from markets.kalshi import kalshi_client
from tests.fakes import FakeKalshi

TICKER = "KXSUB-26SEP01-T1"

# Every V2 call the desk makes on its account that takes ``subaccount`` (query or body).
SCOPED = (
    "GET /portfolio/balance",
    "GET /portfolio/positions",
    "GET /portfolio/orders",
    "GET /portfolio/fills",
    "GET /portfolio/settlements",
    "POST /portfolio/events/orders",
    "DELETE /portfolio/events/orders/{order_id}",
)


def _every_portfolio_call(subaccount: int | None) -> FakeKalshi:
    fake = FakeKalshi()
    fake.add_market(TICKER, yes_bid="0.4000", yes_ask="0.4200")
    exchange = KalshiExchange(fake.client(subaccount=subaccount))
    exchange.balance()
    exchange.positions()
    exchange.orders()
    exchange.fills()
    exchange.settlements()
    ack = exchange.place_order(OrderRequest("c1", TICKER, "yes", "buy", D("0.30"), D("2")))
    exchange.cancel_order(ack.order_id, TICKER)
    return fake


def _sent(fake: FakeKalshi, route: str) -> list[object]:
    """The subaccount each request to ``route`` carried (query or JSON body); "absent" if none."""
    values = []
    for request in fake.calls(route):
        if request.method == "POST":
            values.append((request.json or {}).get("subaccount", "absent"))
        else:
            values.append(request.query.get("subaccount", "absent"))
    return values


class SubaccountTests(SimpleTestCase):
    def test_a_configured_subaccount_reaches_the_exchange_on_every_portfolio_call(self):
        fake = _every_portfolio_call(subaccount=3)
        for route in SCOPED:
            with self.subTest(route=route):
                expected = 3 if route.startswith("POST") else "3"
                self.assertEqual(_sent(fake, route), [expected])

    def test_the_primary_account_zero_is_sent_too(self):
        fake = _every_portfolio_call(subaccount=0)
        self.assertEqual(_sent(fake, "GET /portfolio/fills"), ["0"])
        self.assertEqual(_sent(fake, "POST /portfolio/events/orders"), [0])

    def test_without_a_subaccount_no_call_carries_the_parameter(self):
        fake = _every_portfolio_call(subaccount=None)
        for route in SCOPED:
            with self.subTest(route=route):
                self.assertEqual(_sent(fake, route), ["absent"])

    @override_settings(KALSHI_SUBACCOUNT=7)
    def test_the_factory_takes_the_subaccount_from_settings(self):
        self.assertEqual(kalshi_client().subaccount, 7)

    @override_settings(KALSHI_SUBACCOUNT=None)
    def test_the_factory_leaves_it_unset_by_default(self):
        self.assertIsNone(kalshi_client().subaccount)

    def test_a_negative_subaccount_is_refused(self):
        with self.assertRaises(ValueError):
            FakeKalshi().client(subaccount=-1)
