"""KalshiClient against FakeKalshi through httpx.MockTransport.

Every test that uses the ``fake`` fixture also checks, at teardown, that every request the client
sent and every reply the fake produced by itself follows the OpenAPI spec (tests/contracts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from markets.kalshi import (
    Balance,
    KalshiAuthError,
    KalshiClient,
    KalshiConfigError,
    KalshiDuplicateOrder,
    KalshiError,
    KalshiOrderOutcomeUnknown,
    KalshiOrderRejected,
    KalshiParseError,
    KalshiRateLimited,
    OrderRequest,
    OrderRequestError,
    kalshi_client,
    load_private_key,
    load_private_key_file,
)
from markets.ratelimit import RateLimiter, TokenBucket, shared_rate_limiter
from tests.contracts import assert_follows_spec
from tests.fakes import FAKE_BASE_URL, FakeKalshi, fake_private_key, verify_signature

D = Decimal
TICKER = "KXHIGHNY-26SEP01-T60"
CREATE = "POST /portfolio/events/orders"


@pytest.fixture
def fake() -> Iterator[FakeKalshi]:
    fake = FakeKalshi()
    fake.add_market(TICKER, yes_bid="0.4500", yes_ask="0.4700")
    yield fake
    assert_follows_spec(fake.exchanges)


@pytest.fixture
def client(fake: FakeKalshi) -> KalshiClient:
    return fake.client()


def pem_text() -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        fake_private_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def order(**overrides: object) -> OrderRequest:
    values: dict[str, object] = {
        "ticker": TICKER,
        "side": "bid",
        "count": D("10"),
        "price": D("0.4000"),
        "client_order_id": "intent-1",
    }
    values.update(overrides)
    return OrderRequest(**values)  # type: ignore[arg-type]


# --- Signing and auth --------------------------------------------------------------------------


def test_it_signs_with_rsa_pss_over_timestamp_method_and_full_path(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    client.get_balance()
    sent = fake.calls("GET /portfolio/balance")[0]
    timestamp = sent.headers["kalshi-access-timestamp"]
    assert sent.headers["kalshi-access-key"] == fake.key_id
    assert timestamp == str(int(fake.now.timestamp() * 1000))  # milliseconds
    message = f"{timestamp}GET/trade-api/v2/portfolio/balance".encode()
    assert verify_signature(fake.public_key, sent.headers["kalshi-access-signature"], message)


def test_the_signed_path_leaves_out_the_query(fake: FakeKalshi, client: KalshiClient) -> None:
    client.get_orders(ticker=TICKER, status="resting")
    sent = fake.calls("GET /portfolio/orders")[0]
    assert sent.query == {"ticker": TICKER, "status": "resting", "limit": "1000"}
    timestamp = sent.headers["kalshi-access-timestamp"]
    signature = sent.headers["kalshi-access-signature"]
    assert verify_signature(
        fake.public_key, signature, f"{timestamp}GET/trade-api/v2/portfolio/orders".encode()
    )
    with_query = (
        f"{timestamp}GET/trade-api/v2/portfolio/orders?{sent.url.split('?', 1)[1]}".encode()
    )
    assert not verify_signature(fake.public_key, signature, with_query)


def test_public_endpoints_work_without_a_key_and_send_no_auth_headers() -> None:
    fake = FakeKalshi()
    fake.add_market(TICKER, yes_bid="0.4500", yes_ask="0.4700")
    client = fake.public_client()
    assert not client.authenticated
    assert [m.ticker for m in client.get_markets()] == [TICKER]
    assert not any(h.startswith("kalshi-access") for h in fake.requests[0].headers)
    with pytest.raises(KalshiAuthError):
        client.get_balance()  # the fake, like Kalshi, wants a signature on portfolio paths


def test_a_401_raises_at_once_and_is_never_retried(fake: FakeKalshi) -> None:
    client = fake.client(key_id="not-the-right-key")
    with pytest.raises(KalshiAuthError) as caught:
        client.get_balance()
    assert caught.value.status == 401
    assert caught.value.permanent
    assert fake.count("GET /portfolio/balance") == 1
    assert fake.sleeps == []


def test_clock_skew_shows_up_as_an_auth_error() -> None:
    fake = FakeKalshi(max_skew_ms=5_000)
    late = fake.client(clock=lambda: fake.now.timestamp() - 60)
    with pytest.raises(KalshiAuthError, match="clock skew"):
        late.get_balance()
    assert fake.client().get_balance().balance == D("1000")


def test_secrets_never_show_in_reprs_errors_or_logs(
    fake: FakeKalshi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = fake.client()
    fake.fail_next("GET /portfolio/balance", 500)
    client.get_balance()
    fake.fail_next("GET /portfolio/balance", 401)
    with pytest.raises(KalshiAuthError) as caught:
        client.get_balance()
    signature = fake.requests[-1].headers["kalshi-access-signature"]
    pem = pem_text()
    shown = " ".join(
        [repr(client), repr(client._signer), str(caught.value), repr(caught.value), caplog.text]
    )
    assert "authenticated=True" in repr(client)
    for secret in (fake.key_id, signature, pem.splitlines()[1]):
        assert secret not in shown
    assert "retry 1 of 4" in caplog.text  # the retry was logged, without headers


def test_loading_a_bad_key_never_echoes_it(tmp_path) -> None:
    garbage = (
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KalshiConfigError) as caught:
        load_private_key(garbage)
    assert "c2VjcmV0" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    secret_path = tmp_path / "secret-name.pem"
    with pytest.raises(KalshiConfigError, match="does not exist") as missing:
        load_private_key_file(secret_path)
    assert "secret-name" not in str(missing.value)
    secret_path.write_text(pem_text())
    assert load_private_key_file(secret_path).key_size == 2048
    # A PEM squeezed into a one-line environment variable with literal \n still loads.
    assert load_private_key(pem_text().replace("\n", "\\n")).key_size == 2048


def test_the_factory_reads_settings(fake: FakeKalshi, settings, tmp_path) -> None:
    settings.KALSHI_API_BASE_URL = "https://kalshi.invalid/trade-api/v2"
    settings.KALSHI_API_KEY_ID = fake.key_id
    settings.KALSHI_PRIVATE_KEY = pem_text()
    settings.KALSHI_PRIVATE_KEY_PATH = None
    settings.KALSHI_TIMEOUT_SECONDS = 7
    settings.KALSHI_RATE_TIER = "advanced"
    client = kalshi_client(transport=httpx.MockTransport(fake))
    assert client.get_balance().balance == D("1000")
    assert fake.requests[-1].url.startswith("https://kalshi.invalid/trade-api/v2/portfolio/balance")
    assert client._http.timeout == httpx.Timeout(7.0, connect=3.0)
    assert client._rate_limiter is shared_rate_limiter("advanced")

    key_file = tmp_path / "kalshi.pem"
    key_file.write_text(pem_text())
    settings.KALSHI_PRIVATE_KEY_PATH = str(key_file)
    with pytest.raises(KalshiConfigError, match="not both"):
        kalshi_client(transport=httpx.MockTransport(fake))
    settings.KALSHI_PRIVATE_KEY = None
    assert kalshi_client(transport=httpx.MockTransport(fake)).authenticated
    settings.KALSHI_PRIVATE_KEY_PATH = None
    with pytest.raises(KalshiConfigError, match="no private key"):
        kalshi_client(transport=httpx.MockTransport(fake))
    settings.KALSHI_API_KEY_ID = None
    assert not kalshi_client(transport=httpx.MockTransport(fake)).authenticated


# --- Parsing -----------------------------------------------------------------------------------


def test_a_market_is_parsed_into_exact_typed_fields(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.add_market(
        "KXSUB-26SEP01-B1",
        yes_bid="0.0510",
        yes_ask=None,
        last_price="0.0520",
        volume="1234.50",
        price_level_structure="tapered_deci_cent",
        price_ranges=[
            {"start": "0.0000", "end": "0.1000", "step": "0.0010"},
            {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
        ],
        floor_strike=62.5,
        cap_strike=None,
        rules_secondary="Secondary rules.",
    )
    market = client.get_market("KXSUB-26SEP01-B1")
    assert market.yes_bid == D("0.0510") and isinstance(market.yes_bid, Decimal)
    assert market.yes_ask is None  # "1.0000" means no ask
    assert market.no_bid is None  # "0.0000" means no bid
    assert market.no_ask == D("0.9490")
    assert market.last_price == D("0.052")
    assert market.volume == D("1234.50")
    assert market.floor_strike == D("62.5") and isinstance(market.floor_strike, Decimal)
    assert market.cap_strike is None
    assert market.price_ranges == ((D("0"), D("0.1"), D("0.001")), (D("0.1"), D("0.9"), D("0.01")))
    assert market.is_valid_price(D("0.055")) and not market.is_valid_price(D("0.155"))
    assert market.close_time.tzinfo is UTC
    assert market.close_time == fake.now + timedelta(days=7)
    assert market.rules_secondary == "Secondary rules."
    assert market.spread is None
    with pytest.raises(AttributeError):
        market.ticker = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.pop("close_time"), "close_time"),
        (lambda m: m.update(yes_bid_dollars="0.5x"), "yes_bid_dollars"),
        (lambda m: m.update(yes_ask_dollars="0.12345"), "yes_ask_dollars"),  # more than 4 decimals
        (lambda m: m.update(yes_ask_dollars=0.47), "yes_ask_dollars"),  # a number, not a string
        (lambda m: m.update(volume_fp="1.001"), "volume_fp"),
        (lambda m: m.update(open_time="2026-09-01T12:00:00"), "open_time"),  # no time zone
        (lambda m: m.update(can_close_early="yes"), "can_close_early"),
        (lambda m: m.update(yes_bid_dollars=None), "yes_bid_dollars"),
    ],
)
def test_a_missing_or_malformed_field_raises_a_parse_error_naming_it(
    fake: FakeKalshi, client: KalshiClient, change, field: str
) -> None:
    fake.fail_next(f"/markets/{TICKER}", "mutate", mutate=lambda body: change(body["market"]))
    with pytest.raises(KalshiParseError) as caught:
        client.get_market(TICKER)
    assert f"Market[{TICKER}].{field}" in str(caught.value)
    assert caught.value.permanent
    assert fake.count("GET /markets/{ticker}") == 1  # not retried


def test_unknown_fields_are_ignored(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.fail_next(
        f"/markets/{TICKER}",
        "mutate",
        mutate=lambda body: body["market"].update(brand_new={"x": 1}),
    )
    assert client.get_market(TICKER).ticker == TICKER


def test_the_order_book_is_sorted_ascending_with_derived_asks(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    fake.set_orderbook(
        TICKER,
        yes=[("0.4500", "10"), ("0.4300", "5"), ("0.4400", "7")],
        no=[("0.5200", "3"), ("0.5300", "4")],
    )
    book = client.get_orderbook(TICKER, depth=10)
    assert fake.calls("/markets/{ticker}/orderbook")[0].query == {"depth": "10"}
    assert [p for p, _ in book.yes_bids] == [D("0.43"), D("0.44"), D("0.45")]
    assert book.best_yes_bid == D("0.45")
    assert book.best_yes_ask == D("0.47")  # 1 − best NO bid 0.53
    assert book.best_no_ask == D("0.55")
    assert book.asks("yes") == ((D("0.47"), D("4")), (D("0.48"), D("3")))
    assert book.buy_depth("yes", D("0.47")) == D("4")
    assert book.buy_depth("yes", D("0.48")) == D("7")
    assert book.buy_depth("yes", D("0.46")) == D("0")
    assert book.sell_depth("yes", D("0.44")) == D("17")
    assert book.buy_depth("no", D("0.56")) == D("17")


def test_an_empty_book_has_no_best_prices(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.set_orderbook(TICKER)
    book = client.get_orderbook(TICKER)
    assert book.best_yes_bid is None and book.best_yes_ask is None
    assert book.buy_depth("yes", D("0.99")) == 0
    assert fake.calls("/markets/{ticker}/orderbook")[0].query == {}


def test_portfolio_objects_are_parsed_with_exact_money(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    ack = client.create_order(order(price=D("0.4700"), count=D("10")))  # takes the 0.47 ask
    assert ack.fill_count == D("10") and ack.remaining_count == D("0")
    assert ack.average_fill_price == D("0.47")

    [fill] = client.get_fills(ticker=TICKER)
    assert (fill.order_id, fill.outcome_side, fill.book_side, fill.is_taker) == (
        ack.order_id,
        "yes",
        "bid",
        True,
    )
    assert fill.count == D("10") and fill.yes_price == D("0.47") and fill.no_price == D("0.53")
    assert fill.fee_cost == D("0.18")  # ceil(0.07 × 10 × 0.47 × 0.53)
    assert fill.created_time == fake.now

    [position] = client.get_positions()
    assert position.position == D("10") and position.fees_paid == D("0.18")

    balance = client.get_balance()
    assert isinstance(balance, Balance)
    assert balance.balance == D("995.12")  # 1000 − 4.70 − 0.18
    assert balance.portfolio_value == D("4.70")

    [placed] = client.get_orders(ticker=TICKER)
    assert placed.status == "executed" and placed.client_order_id == "intent-1"
    assert placed.taker_fill_cost == D("4.70") and placed.fees == D("0.18")
    assert client.get_order(ack.order_id) == placed

    fake.settle_market(TICKER, "yes")
    [settlement] = client.get_settlements()
    assert settlement.market_result == "yes"
    assert settlement.revenue == D("10.00")  # 1000 integer cents
    assert settlement.yes_count == D("10") and settlement.value is None
    assert settlement.settled_time == fake.now


def test_events_trades_and_candlesticks(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.add_market("KXHIGHNY-26SEP01-T65", yes_bid="0.2000", yes_ask="0.2200")
    event = client.get_event("KXHIGHNY-26SEP01")
    assert event.series_ticker == "KXHIGHNY"
    assert [m.ticker for m in event.markets] == [TICKER, "KXHIGHNY-26SEP01-T65"]
    [listed] = client.get_events(with_nested_markets=True)
    assert listed.event_ticker == "KXHIGHNY-26SEP01" and len(listed.markets) == 2

    fake.add_trade(TICKER, count="3.00", yes_price="0.4600", taker_outcome_side="no")
    [trade] = client.get_trades(ticker=TICKER)
    assert (trade.count, trade.yes_price, trade.no_price) == (D("3"), D("0.46"), D("0.54"))
    assert (trade.taker_outcome_side, trade.taker_book_side) == ("no", "ask")

    end = int(fake.now.timestamp())
    fake.add_candlestick(TICKER, end_period_ts=end, price=("0.45", "0.47", "0.44", "0.46"))
    fake.add_candlestick(TICKER, end_period_ts=end + 3600)
    candles = client.get_market_candlesticks(
        "KXHIGHNY", TICKER, start_ts=end - 3600, end_ts=end + 3600
    )
    assert candles[0].price.close == D("0.46") and candles[0].yes_bid.close == D("0.45")
    assert candles[1].price.close is None
    assert candles[0].end_period_time == fake.now


# --- Paging ------------------------------------------------------------------------------------


def test_markets_are_paged_to_the_end_with_the_same_filters(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    tickers = [f"KXSERIES-26SEP01-T{i}" for i in range(7)]
    for ticker in tickers:
        fake.add_market(ticker)
    fake.max_page_size = 3
    markets = client.get_markets(status="open", series_ticker="KXSERIES", limit=500)
    assert [m.ticker for m in markets] == tickers
    sent = fake.calls("GET /markets")
    assert len(sent) == 3
    assert "cursor" not in sent[0].query and sent[1].query["cursor"] and sent[2].query["cursor"]
    for request in sent:
        assert request.query["status"] == "open" and request.query["series_ticker"] == "KXSERIES"
        assert request.query["limit"] == "500"


def test_market_filters_are_sent_as_kalshi_expects(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.add_market("KXOTHER-26SEP01-T1")
    assert [m.ticker for m in client.get_markets(tickers=[TICKER, "KXOTHER-26SEP01-T1"])] == [
        TICKER,
        "KXOTHER-26SEP01-T1",
    ]
    assert fake.requests[-1].query["tickers"] == f"{TICKER},KXOTHER-26SEP01-T1"
    assert [m.ticker for m in client.get_markets(event_ticker="KXOTHER-26SEP01")] == [
        "KXOTHER-26SEP01-T1"
    ]
    with pytest.raises(ValueError):
        client.get_markets(status="active")  # a *response* status, not a filter value
    with pytest.raises(ValueError):
        client.get_markets(limit=1001)


def test_a_null_cursor_ends_paging(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.add_market("KXHIGHNY-26SEP01-T65")
    fake.max_page_size = 1
    fake.fail_next("GET /markets", "mutate", mutate=lambda body: body.update(cursor=None))
    assert len(client.get_markets()) == 1
    assert fake.count("GET /markets") == 1


def test_a_repeated_cursor_stops_paging_with_an_error(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    fake.add_market("KXHIGHNY-26SEP01-T65")
    fake.max_page_size = 1
    fake.fail_next("GET /markets", "repeat_cursor", times=5)
    with pytest.raises(KalshiError, match="repeated a pagination cursor") as caught:
        client.get_markets()
    assert caught.value.permanent
    assert fake.count("GET /markets") == 2


# --- GET retries -------------------------------------------------------------------------------


def test_a_429_storm_is_retried_a_bounded_number_of_times(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    fake.fail_next("GET /markets", 429, times=100)
    with pytest.raises(KalshiRateLimited) as caught:
        client.get_markets()
    assert caught.value.status == 429 and not caught.value.permanent
    assert caught.value.message.endswith("too many requests")  # the {"error": "..."} body
    assert fake.count("GET /markets") == 5  # 1 + max_retries
    assert fake.sleeps == [0.375, 0.75, 1.5, 3.0]  # exponential, jitter fixed at 0.5


def test_a_503_carrying_exchange_status_is_an_answer_not_an_error() -> None:
    fake = FakeKalshi()
    fake.fail_next("GET /exchange/status", 503)
    status = fake.client().get_exchange_status()
    assert not status.exchange_active and not status.can_trade
    assert fake.count("GET /exchange/status") == 1 and fake.sleeps == []


def test_backoff_is_jittered_and_capped() -> None:
    high: list[float] = []
    fake = FakeKalshi()
    fake.fail_next("GET /portfolio/balance", 502, times=100)
    with pytest.raises(KalshiError):
        fake.client(max_retries=8, rand=lambda: 1.0, sleep=high.append).get_balance()
    assert high == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    low: list[float] = []
    fake = FakeKalshi()
    fake.fail_next("GET /portfolio/balance", 502, times=100)
    with pytest.raises(KalshiError):
        fake.client(max_retries=3, rand=lambda: 0.0, sleep=low.append).get_balance()
    assert low == [0.25, 0.5, 1.0]


@pytest.mark.parametrize("kind", [500, 502, 503, 429, "timeout", "connect_error"])
def test_gets_recover_from_transient_failures(fake: FakeKalshi, client: KalshiClient, kind) -> None:
    fake.fail_next("GET /markets/{ticker}", kind, times=2)
    assert client.get_market(TICKER).ticker == TICKER
    assert fake.count("GET /markets/{ticker}") == 3
    assert len(fake.sleeps) == 2


def test_a_timeout_storm_ends_in_a_retryable_error(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.fail_next("GET /portfolio/balance", "timeout", times=100)
    with pytest.raises(KalshiError, match="ReadTimeout") as caught:
        client.get_balance()
    assert not caught.value.permanent and caught.value.status is None
    assert fake.count("GET /portfolio/balance") == 5


def test_malformed_json_on_a_get_is_a_parse_error(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.fail_next("GET /markets", "malformed_json")
    with pytest.raises(KalshiParseError, match="not JSON"):
        client.get_markets()
    assert fake.count("GET /markets") == 1


def test_a_404_is_permanent_and_not_retried(fake: FakeKalshi, client: KalshiClient) -> None:
    with pytest.raises(KalshiError) as caught:
        client.get_market("KXNOPE-26SEP01-T1")
    assert (
        caught.value.status == 404 and caught.value.code == "not_found" and caught.value.permanent
    )
    assert fake.count("GET /markets/{ticker}") == 1


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            400,
            {"code": "invalid_order", "message": "bad price", "details": "tick"},
            "invalid_order",
            "bad price",
        ),
        (400, {"error": {"code": "invalid_order", "message": "nested"}}, "invalid_order", "nested"),
        (429, {"error": "too many requests"}, None, "too many requests"),
        (403, {"unexpected": True}, None, None),
    ],
)
def test_both_error_body_shapes_are_understood(status: int, body: dict, code, message) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    client = KalshiClient(
        base_url=FAKE_BASE_URL, transport=httpx.MockTransport(handler), max_retries=0
    )
    with pytest.raises(KalshiError) as caught:
        client.get_exchange_status()
    assert (caught.value.status, caught.value.code) == (status, code)
    if message:
        assert caught.value.message.endswith(message)


def test_a_non_json_error_body_is_summarised() -> None:
    client = KalshiClient(
        base_url=FAKE_BASE_URL,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(502, text="<html>Bad gateway</html>")
        ),
        max_retries=0,
    )
    with pytest.raises(KalshiError, match="HTTP 502: <html>Bad gateway"):
        client.get_markets()


# --- Creating orders (never retried) -----------------------------------------------------------


def test_create_order_sends_a_v2_body_and_returns_the_ack(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    request = order(count=D("5"), price=D("0.41"), expiration_time=1788300000, post_only=True)
    ack = client.create_order(request)
    [sent] = fake.calls(CREATE)
    assert sent.path == "/trade-api/v2/portfolio/events/orders"
    assert sent.json == {
        "ticker": TICKER,
        "side": "bid",
        "count": "5.00",
        "price": "0.4100",
        "time_in_force": "good_till_canceled",
        "self_trade_prevention_type": "taker_at_cross",
        "post_only": True,
        "reduce_only": False,
        "cancel_order_on_pause": False,
        "client_order_id": "intent-1",
        "expiration_time": 1788300000,
    }
    assert ack.order_id == fake.accepted[0].order_id
    assert (ack.client_order_id, ack.fill_count, ack.remaining_count) == (
        "intent-1",
        D("0"),
        D("5"),
    )
    assert ack.ts_ms == int(fake.now.timestamp() * 1000)


@pytest.mark.parametrize(
    "kind", ["no_order", "timeout", "connect_error", 500, 503, 429, "malformed_json"]
)
def test_an_unclear_create_outcome_is_unknown_and_never_retried(
    fake: FakeKalshi, client: KalshiClient, kind
) -> None:
    fake.fail_next(CREATE, kind)
    with pytest.raises(KalshiOrderOutcomeUnknown) as caught:
        client.create_order(order())
    assert caught.value.outcome_unknown and not caught.value.permanent
    assert fake.count(CREATE) == 1
    assert fake.sleeps == []
    assert fake.accepted == []


@pytest.mark.parametrize("kind", ["accept_then_500", "accept_then_timeout"])
def test_an_accepted_order_with_a_lost_reply_is_found_and_not_duplicated(
    fake: FakeKalshi, client: KalshiClient, kind: str
) -> None:
    fake.fail_next(CREATE, kind)
    with pytest.raises(KalshiOrderOutcomeUnknown):
        client.create_order(order())
    assert fake.count(CREATE) == 1
    assert len(fake.accepted) == 1  # it was placed
    # Reconcile by client_order_id (GetOrders has no such filter: filter on our side).
    found = [o for o in client.get_orders(ticker=TICKER) if o.client_order_id == "intent-1"]
    assert [o.order_id for o in found] == [fake.accepted[0].order_id]
    # A resend with the same id while it rests is refused by the exchange: still one order.
    with pytest.raises(KalshiDuplicateOrder) as caught:
        client.create_order(order())
    assert caught.value.is_duplicate_order and caught.value.status == 409 and caught.value.permanent
    assert not caught.value.outcome_unknown
    assert len(fake.accepted) == 1


def test_a_2xx_that_names_the_order_but_is_unreadable_keeps_the_order_id(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    fake.fail_next(CREATE, "mutate", mutate=lambda body: body.update(fill_count="lots"))
    with pytest.raises(KalshiOrderOutcomeUnknown) as caught:
        client.create_order(order())
    assert caught.value.order_id == fake.accepted[0].order_id
    assert "OrderAck" in str(caught.value) and "fill_count" in str(caught.value)


def test_an_ack_for_another_client_order_id_is_not_trusted(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    fake.fail_next(
        CREATE, "mutate", mutate=lambda body: body.update(client_order_id="someone-else")
    )
    with pytest.raises(KalshiOrderOutcomeUnknown, match="different client_order_id"):
        client.create_order(order())


def test_a_documented_rejection_is_permanent(fake: FakeKalshi, client: KalshiClient) -> None:
    with pytest.raises(KalshiOrderRejected) as caught:
        client.create_order(order(count=D("5000")))  # costs more than the $1000 balance
    error = caught.value
    assert (error.status, error.code, error.permanent, error.outcome_unknown) == (
        400,
        "available_balance_too_low",
        True,
        False,
    )
    assert not isinstance(error, KalshiDuplicateOrder)
    assert fake.count(CREATE) == 1 and fake.accepted == []


def test_a_401_on_create_is_an_auth_error(fake: FakeKalshi, client: KalshiClient) -> None:
    fake.fail_next(CREATE, 401)
    with pytest.raises(KalshiAuthError):
        client.create_order(order())
    assert fake.count(CREATE) == 1


def test_a_client_order_id_can_be_reused_once_the_first_order_is_done(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    # Kalshi deduplicates against *open* orders only (docs/KALSHI.md): reconcile before resending.
    client.create_order(order(price=D("0.47"), time_in_force="immediate_or_cancel"))
    client.create_order(order(price=D("0.47"), time_in_force="immediate_or_cancel"))
    assert len(fake.accepted) == 2


def test_time_in_force_is_honoured_by_the_fake(fake: FakeKalshi, client: KalshiClient) -> None:
    fok = client.create_order(
        order(count=D("500"), price=D("0.47"), time_in_force="fill_or_kill", client_order_id="fok")
    )
    assert (fok.fill_count, fok.remaining_count) == (D("0"), D("0"))
    ioc = client.create_order(
        order(
            count=D("150"),
            price=D("0.47"),
            time_in_force="immediate_or_cancel",
            client_order_id="ioc",
        )
    )
    assert (ioc.fill_count, ioc.remaining_count) == (D("100"), D("0"))
    assert client.get_order(ioc.order_id).status == "canceled"


# --- Cancelling ---------------------------------------------------------------------------------


def test_cancel_reduces_a_resting_order_to_zero(fake: FakeKalshi, client: KalshiClient) -> None:
    ack = client.create_order(order())
    cancel = client.cancel_order(ack.order_id, TICKER)
    [sent] = fake.calls("DELETE /portfolio/events/orders/{order_id}")
    assert sent.query == {"market_ticker": TICKER}
    assert (cancel.order_id, cancel.client_order_id, cancel.reduced_by) == (
        ack.order_id,
        "intent-1",
        D("10"),
    )
    assert client.get_order(ack.order_id).status == "canceled"


@pytest.mark.parametrize("kind", [500, 429, "timeout"])
def test_an_unclear_cancel_is_not_retried(fake: FakeKalshi, client: KalshiClient, kind) -> None:
    ack = client.create_order(order())
    fake.fail_next("DELETE /portfolio/events/orders/{order_id}", kind)
    with pytest.raises(KalshiError) as caught:
        client.cancel_order(ack.order_id, TICKER)
    assert caught.value.outcome_unknown and not caught.value.permanent
    assert fake.count("DELETE /portfolio/events/orders/{order_id}") == 1
    assert fake.sleeps == []


def test_cancelling_an_order_that_is_not_open_is_permanent(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    ack = client.create_order(order())
    client.cancel_order(ack.order_id)
    with pytest.raises(KalshiError) as caught:
        client.cancel_order(ack.order_id)
    assert (
        caught.value.status == 404 and caught.value.permanent and not caught.value.outcome_unknown
    )


# --- Order requests: validation and client-side guards -----------------------------------------


def test_buy_max_cost_is_enforced_before_sending() -> None:
    with pytest.raises(OrderRequestError, match="buy_max_cost"):
        order(count=D("10"), price=D("0.60"), buy_max_cost=D("5.99"))
    assert order(count=D("10"), price=D("0.60"), buy_max_cost=D("6.00")).max_cost == D("6.00")
    # An ask buys NO at 1 − price: 10 × 0.40.
    assert order(side="ask", count=D("10"), price=D("0.60"), buy_max_cost=D("4.00")).max_cost == D(
        "4.00"
    )
    with pytest.raises(OrderRequestError):
        order(side="ask", count=D("10"), price=D("0.60"), buy_max_cost=D("3.99"))
    # Closing contracts is not a purchase.
    order(count=D("10"), price=D("0.60"), buy_max_cost=D("1"), reduce_only=True)


def test_sell_position_floor_is_enforced_and_forces_reduce_only() -> None:
    kept = order(
        side="ask", count=D("7"), price=D("0.50"), position=D("10"), sell_position_floor=D("3")
    )
    assert kept.reduce_only and kept.to_body()["reduce_only"] is True
    assert "sell_position_floor" not in kept.to_body() and "buy_max_cost" not in kept.to_body()
    with pytest.raises(OrderRequestError, match="below sell_position_floor"):
        order(
            side="ask", count=D("8"), price=D("0.50"), position=D("10"), sell_position_floor=D("3")
        )
    with pytest.raises(OrderRequestError, match="needs the current position"):
        order(side="ask", count=D("1"), price=D("0.50"), sell_position_floor=D("0"))
    with pytest.raises(OrderRequestError, match="no YES contracts"):
        order(
            side="ask", count=D("1"), price=D("0.50"), position=D("-4"), sell_position_floor=D("0")
        )
    # A bid closes NO contracts (negative position).
    order(side="bid", count=D("5"), price=D("0.50"), position=D("-5"), sell_position_floor=D("0"))
    with pytest.raises(OrderRequestError):
        order(
            side="bid", count=D("6"), price=D("0.50"), position=D("-5"), sell_position_floor=D("0")
        )


def test_reduce_only_is_enforced_by_the_exchange_too(
    fake: FakeKalshi, client: KalshiClient
) -> None:
    with pytest.raises(KalshiOrderRejected, match="increase the position"):
        client.create_order(
            OrderRequest.sell(ticker=TICKER, outcome_side="yes", count=D("1"), price=D("0.45"))
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"side": "yes"},
        {"count": D("0")},
        {"count": D("1.001")},
        {"count": 1.5},
        {"price": D("1")},
        {"price": D("0")},
        {"price": D("0.12345")},
        {"price": 0.5},
        {"time_in_force": "day"},
        {"self_trade_prevention_type": "none"},
        {"client_order_id": "has spaces"},
        {"client_order_id": "x" * 65},
        {"expiration_time": 1788300000, "time_in_force": "immediate_or_cancel"},
        {"expiration_time": datetime(2026, 9, 2, tzinfo=UTC).replace(tzinfo=None)},  # naive
        {"post_only": True, "time_in_force": "fill_or_kill"},
        {"ticker": ""},
    ],
)
def test_invalid_orders_are_refused_locally(overrides: dict) -> None:
    with pytest.raises(OrderRequestError):
        order(**overrides)


def test_buy_and_sell_helpers_map_outcomes_to_book_sides() -> None:
    buy_no = OrderRequest.buy(ticker=TICKER, outcome_side="no", count=D("3"), price=D("0.40"))
    assert (buy_no.side, buy_no.price, buy_no.outcome_price, buy_no.outcome_side) == (
        "ask",
        D("0.60"),
        D("0.40"),
        "no",
    )
    sell_no = OrderRequest.sell(ticker=TICKER, outcome_side="no", count=D("3"), price=D("0.40"))
    assert (sell_no.side, sell_no.price, sell_no.reduce_only) == ("bid", D("0.60"), True)
    expiring = order(expiration_time=datetime(2026, 9, 2, tzinfo=UTC))
    assert expiring.to_body()["expiration_time"] == int(
        datetime(2026, 9, 2, tzinfo=UTC).timestamp()
    )


# --- Rate limiting ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_basic_tier_allows_a_burst_then_paces_reads_and_writes() -> None:
    clock = FakeClock()
    limiter = RateLimiter("basic", clock=clock, sleep=clock.sleep)
    for _ in range(40):  # read bucket: 200 tokens/s, 2 s of capacity = 40 requests of 10
        limiter.acquire("read")
    assert clock.slept == []
    limiter.acquire("read")
    assert clock.slept == [pytest.approx(0.05)]
    for _ in range(10):  # write bucket: 100 tokens/s, 1 s of capacity
        limiter.acquire("write")
    assert len(clock.slept) == 1
    limiter.acquire("write", 2)  # a cancel costs 2 tokens
    assert clock.slept[-1] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("tier", "read", "write"),
    [
        ("basic", (200, 400), (100, 100)),
        ("advanced", (300, 600), (300, 600)),
        ("prestige", (10000, 10000), (8000, 16000)),
    ],
)
def test_tier_budgets_follow_the_api_notes(tier: str, read: tuple, write: tuple) -> None:
    limiter = RateLimiter(tier)
    assert (limiter.bucket("read").rate, limiter.bucket("read").capacity) == read
    assert (limiter.bucket("write").rate, limiter.bucket("write").capacity) == write


def test_the_bucket_is_thread_safe() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 100, clock=clock)
    threads = [
        threading.Thread(target=lambda: [bucket.reserve(1) for _ in range(500)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.tokens == pytest.approx(100 - 4000)


def test_the_client_draws_reads_and_writes_from_their_buckets(fake: FakeKalshi) -> None:
    clock = FakeClock()
    limiter = RateLimiter("basic", clock=clock, sleep=clock.sleep)
    client = fake.client(rate_limiter=limiter)
    client.get_market(TICKER)
    ack = client.create_order(order())
    client.cancel_order(ack.order_id)
    assert limiter.bucket("read").tokens == 390
    assert limiter.bucket("write").tokens == 100 - 10 - 2


def test_one_limiter_per_process_and_tier() -> None:
    assert shared_rate_limiter("basic") is shared_rate_limiter("basic")
    assert shared_rate_limiter("basic") is not shared_rate_limiter("expert")
    with pytest.raises(ValueError):
        RateLimiter("platinum")


def test_explicit_timeouts() -> None:
    client = KalshiClient(base_url=FAKE_BASE_URL, timeout=12.5)
    assert client._http.timeout == httpx.Timeout(12.5, connect=3.0)


def test_the_signature_is_fresh_on_each_attempt(fake: FakeKalshi) -> None:
    ticks = iter([1.0, 2.0, 3.0])
    client = fake.client(clock=lambda: fake.now.timestamp() + next(ticks))
    fake.fail_next("GET /portfolio/balance", 500, times=2)
    client.get_balance()
    stamps = [r.headers["kalshi-access-timestamp"] for r in fake.calls("GET /portfolio/balance")]
    assert len(set(stamps)) == 3
    signatures = {
        r.headers["kalshi-access-signature"] for r in fake.calls("GET /portfolio/balance")
    }
    assert len(signatures) == 3


def test_exchange_status_reports_can_trade(fake: FakeKalshi, client: KalshiClient) -> None:
    assert client.get_exchange_status().can_trade
    fake.trading_active = False
    assert not client.get_exchange_status().can_trade
