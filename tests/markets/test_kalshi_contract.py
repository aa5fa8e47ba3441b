"""Contract tests: the client's requests and the fake's replies against Kalshi's OpenAPI spec.

The client tests (test_kalshi_client.py) check every exchange they cause at fixture teardown; this
module drives every client call once, shows that the checker does catch violations, and verifies a
produced signature with the public key.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from markets.kalshi import KalshiError, KalshiSigner, OrderRequest
from tests.contracts import follows_spec, spec_dict
from tests.fakes import Exchange, FakeKalshi, RecordedRequest, RecordedResponse

D = Decimal
TICKER = "KXHIGHNY-26SEP01-T60"


@lru_cache(maxsize=1)
def signing_key() -> rsa.RSAPrivateKey:
    """Key generation is slow: one key for the whole module."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pss(salt_length: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


def test_the_spec_copy_is_the_pinned_version() -> None:
    spec = spec_dict()
    assert spec["info"]["version"] == "3.28.0"
    assert "/portfolio/events/orders" in spec["paths"]
    assert "/portfolio/orders" in spec["paths"] and "post" not in spec["paths"]["/portfolio/orders"]


def test_a_produced_signature_verifies_with_the_public_key() -> None:
    key = signing_key()
    signer = KalshiSigner("key-id", key)
    signature = base64.b64decode(
        signer.sign(1703123456789, "get", "/trade-api/v2/portfolio/orders?limit=5")
    )
    public = key.public_key()
    # The signed message (docs/KALSHI.md, Signing): timestamp + upper-case method + path, no query.
    public.verify(
        signature, b"1703123456789GET/trade-api/v2/portfolio/orders", pss(32), hashes.SHA256()
    )
    # The salt is the digest length (32 bytes), not the PSS maximum.
    with pytest.raises(InvalidSignature):
        public.verify(
            signature, b"1703123456789GET/trade-api/v2/portfolio/orders", pss(222), hashes.SHA256()
        )
    with pytest.raises(InvalidSignature):
        public.verify(
            signature,
            b"1703123456789GET/trade-api/v2/portfolio/orders?limit=5",
            pss(32),
            hashes.SHA256(),
        )
    headers = signer.headers("POST", "/trade-api/v2/portfolio/events/orders", 1703123456789)
    assert set(headers) == {
        "KALSHI-ACCESS-KEY",
        "KALSHI-ACCESS-TIMESTAMP",
        "KALSHI-ACCESS-SIGNATURE",
    }
    public.verify(
        base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"]),
        b"1703123456789POST/trade-api/v2/portfolio/events/orders",
        pss(32),
        hashes.SHA256(),
    )


def exercise_every_call(fake: FakeKalshi) -> None:
    """Every client call, with its filters, against a small world."""
    fake.add_market(TICKER, yes_bid="0.4500", yes_ask="0.4700")
    fake.add_market("KXHIGHNY-26SEP01-T65", yes_bid="0.2000", yes_ask=None, status="active")
    fake.add_market("KXRAIN-26SEP02-T1", status="closed", result="no")
    fake.add_trade(TICKER)
    fake.add_candlestick(
        TICKER, end_period_ts=int(fake.now.timestamp()), price=("0.45", "0.47", "0.44", "0.46")
    )
    fake.add_candlestick(TICKER, end_period_ts=int(fake.now.timestamp()) + 60)
    fake.max_page_size = 2
    client = fake.client()
    now = int(fake.now.timestamp())

    client.get_exchange_status()
    client.get_events()
    client.get_events(
        status="open",
        series_ticker="KXHIGHNY",
        with_nested_markets=True,
        min_close_ts=now,
        limit=50,
    )
    client.get_event("KXHIGHNY-26SEP01")
    client.get_event("KXHIGHNY-26SEP01", with_nested_markets=False)
    fake.add_series("KXHIGHNY", fee_type="quadratic_with_maker_fees", fee_multiplier=0.5)
    client.get_series("KXHIGHNY")
    client.get_markets()
    client.get_markets(status="open", series_ticker="KXHIGHNY", limit=1000)
    client.get_markets(
        event_ticker="KXHIGHNY-26SEP01",
        tickers=[TICKER, "KXHIGHNY-26SEP01-T65"],
        mve_filter="exclude",
    )
    client.get_markets(
        status="closed", min_close_ts=now - 86400 * 30, max_close_ts=now + 86400 * 30
    )
    client.get_markets(min_updated_ts=now - 60, mve_filter="exclude")
    client.get_market(TICKER)
    client.get_orderbook(TICKER)
    client.get_orderbook(TICKER, depth=3)
    client.get_trades()
    client.get_trades(ticker=TICKER, min_ts=now - 60, max_ts=now + 60, limit=10)
    client.get_market_candlesticks(
        "KXHIGHNY", TICKER, start_ts=now - 3600, end_ts=now + 3600, period_interval=1
    )
    client.get_balance()

    taker = client.create_order(
        OrderRequest.buy(
            ticker=TICKER, outcome_side="yes", count=D("5"), price=D("0.47"), client_order_id="c-1"
        )
    )
    resting = client.create_order(
        OrderRequest(
            ticker=TICKER,
            side="ask",
            count=D("2.50"),
            price=D("0.9900"),
            time_in_force="good_till_canceled",
            self_trade_prevention_type="maker",
            client_order_id="c-2",
            expiration_time=datetime(2026, 9, 2, tzinfo=UTC),
            post_only=True,
            cancel_order_on_pause=True,
        )
    )
    client.create_order(
        OrderRequest.sell(ticker=TICKER, outcome_side="yes", count=D("1"), price=D("0.45"))
    )
    with pytest.raises(KalshiError):  # 409 has a documented ErrorResponse body
        client.create_order(
            OrderRequest(
                ticker=TICKER, side="ask", count=D("1"), price=D("0.99"), client_order_id="c-2"
            )
        )
    with pytest.raises(KalshiError):  # 400
        client.create_order(
            OrderRequest(ticker=TICKER, side="bid", count=D("99999"), price=D("0.5"))
        )
    client.get_positions()
    client.get_positions(ticker=TICKER, count_filter="position,total_traded")
    client.get_positions(event_ticker="KXHIGHNY-26SEP01", count_filter=None)
    client.get_orders()
    client.get_orders(ticker=TICKER, status="resting", min_ts=now - 60, max_ts=now + 60, limit=5)
    client.get_orders(event_ticker=["KXHIGHNY-26SEP01", "KXRAIN-26SEP02"])
    client.get_order(taker.order_id)
    client.get_fills()
    client.get_fills(
        ticker=TICKER, order_id=taker.order_id, min_ts=now - 60, max_ts=now + 60, limit=3
    )
    client.cancel_order(resting.order_id, TICKER)
    with pytest.raises(KalshiError):  # 404 with ErrorResponse
        client.cancel_order(resting.order_id)
    fake.settle_market(TICKER, "yes")
    client.get_settlements()
    client.get_settlements(
        ticker=TICKER, event_ticker="KXHIGHNY-26SEP01", min_ts=now - 60, max_ts=now + 60
    )
    with pytest.raises(KalshiError):  # 404 without a documented body: request still checked
        client.get_market("KXNOPE-1")


@pytest.fixture(scope="module")
def swept() -> FakeKalshi:
    fake = FakeKalshi()
    exercise_every_call(fake)
    return fake


def test_every_request_and_reply_of_every_call_follows_the_spec(swept: FakeKalshi) -> None:
    assert follows_spec(swept.exchanges) == []
    routes = {r.route for r in swept.requests}
    served = {f"{method} {template}" for method, _, template, _ in swept._routes}
    assert routes == served  # every endpoint the client uses was exercised
    statuses = {e.response.status for e in swept.exchanges if e.response}
    assert statuses >= {200, 201, 400, 404, 409}


def test_auth_headers_are_part_of_the_contract(swept: FakeKalshi) -> None:
    signed = next(e for e in swept.exchanges if e.request.route == "GET /portfolio/balance")
    unsigned_headers = {
        k: v for k, v in signed.request.headers.items() if not k.startswith("kalshi-access")
    }
    unsigned = replace(signed, request=replace(signed.request, headers=unsigned_headers))
    problems = follows_spec([unsigned])
    assert problems and "request" in problems[0]


def _exchange(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    status: int = 200,
    reply: bytes = b"{}",
    query: str = "",
) -> Exchange:
    url = f"https://external-api.demo.kalshi.co/trade-api/v2{path}" + (f"?{query}" if query else "")
    headers = {"content-type": "application/json"} if body else {}
    request = RecordedRequest(method, url, f"/trade-api/v2{path}", None, {}, headers, body, None)
    return Exchange(
        request, RecordedResponse(status, {"content-type": "application/json"}, reply), None
    )


def test_the_checker_catches_a_legacy_order_body() -> None:
    legacy = b'{"ticker": "T", "side": "yes", "action": "buy", "count": 1, "yes_price": 56}'
    problems = follows_spec(
        [
            _exchange(
                "POST",
                "/portfolio/events/orders",
                body=legacy,
                status=400,
                reply=b'{"code": "x", "message": "y"}',
            )
        ]
    )
    assert any("request" in p for p in problems)


def test_the_checker_catches_a_bad_filter_and_a_bad_reply(swept: FakeKalshi) -> None:
    assert follows_spec(
        [
            _exchange(
                "GET", "/markets", query="status=active", reply=b'{"markets": [], "cursor": ""}'
            )
        ]
    )
    market_reply = next(
        e
        for e in swept.exchanges
        if e.request.route == "GET /markets/{ticker}" and e.response.status == 200
    )
    broken = market_reply.response.content.replace(b'"close_time"', b'"closing_time"')
    assert follows_spec(
        [replace(market_reply, response=replace(market_reply.response, content=broken))]
    )
    # ... and an injected fault's reply is not held to the spec, only its request.
    assert (
        follows_spec(
            [
                replace(
                    market_reply,
                    response=replace(market_reply.response, content=broken),
                    fault="mutate",
                )
            ]
        )
        == []
    )


def test_the_429_body_contradiction_is_tolerated() -> None:
    # Kalshi really sends {"error": "too many requests"} (docs/KALSHI.md, Rate limits)
    # although the spec's RateLimitError points at ErrorResponse; that one body is deliberately
    # not validated.
    exchange = _exchange(
        "POST",
        "/portfolio/events/orders",
        body=b'{"ticker": "T", "side": "bid", "count": "1.00", "price": "0.5000", "time_in_force": "good_till_canceled", "self_trade_prevention_type": "taker_at_cross"}',
        status=429,
        reply=b'{"error": "too many requests"}',
    )
    exchange = replace(
        exchange,
        request=replace(
            exchange.request,
            headers={
                **exchange.request.headers,
                "kalshi-access-key": "k",
                "kalshi-access-timestamp": "1",
                "kalshi-access-signature": "s",
            },
        ),
    )
    assert follows_spec([exchange]) == []
