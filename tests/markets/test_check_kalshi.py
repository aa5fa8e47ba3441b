"""manage.py check_kalshi against FakeKalshi."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from config.logging import REDACTED
from markets import kalshi
from markets.management.commands.check_kalshi import check_kalshi
from tests.fakes import FAKE_BASE_URL, FakeKalshi


def texts(checks):
    return {c.text.split(":", 1)[0]: (c.ok, c.text) for c in checks}


@pytest.fixture
def fake():
    return FakeKalshi()


def on_time(fake, offset=0.0):
    return lambda: fake.now.timestamp() + offset


def test_all_good_with_a_working_key(fake):
    checks = texts(check_kalshi(fake.client(), clock=on_time(fake)))
    assert all(ok for ok, _ in checks.values())
    assert checks["base URL"][1] == f"base URL: {FAKE_BASE_URL}"
    assert "balance $1,000.00" in checks["API key"][1]
    assert "exchange active, trading active" in checks["exchange status"][1]
    assert "+0.0s" in checks["clock skew"][1]
    assert fake.count("GET /portfolio/balance") == 1


def test_no_key_is_reported_but_not_a_failure(fake):
    checks = texts(check_kalshi(fake.public_client(), clock=on_time(fake)))
    assert checks["API key"] == (True, "API key: no key configured (public data only; paper mode)")
    assert fake.count("GET /portfolio/balance") == 0


def test_a_401_says_key_rejected_or_clock_skew(fake):
    fake.fail_next("GET /portfolio/balance", 401)
    checks = texts(check_kalshi(fake.client(), clock=on_time(fake)))
    assert checks["API key"] == (False, "API key: key rejected or clock skew (HTTP 401)")


def test_clock_skew_beyond_the_limit_fails(fake):
    checks = texts(check_kalshi(fake.public_client(), clock=on_time(fake, -42)))
    assert checks["clock skew"][0] is False
    assert "-42.0s" in checks["clock skew"][1]


def test_an_inactive_or_unreachable_exchange_fails(fake):
    fake.exchange_active = False
    checks = texts(check_kalshi(fake.public_client(), clock=on_time(fake)))
    assert checks["exchange status"][0] is False
    fake.fail_next("GET /exchange/status", "connect_error", times=10)
    checks = texts(check_kalshi(fake.public_client(), clock=on_time(fake)))
    assert checks["exchange status"][0] is False
    assert "unreachable" in checks["exchange status"][1]


def test_the_command_prints_and_exits_non_zero_on_failure(monkeypatch):
    fake = FakeKalshi(now=datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(kalshi, "kalshi_client", lambda **kw: fake.client(clock=time.time))
    out = StringIO()
    call_command("check_kalshi", stdout=out)
    assert "all checks passed" in out.getvalue()
    assert "API key: works" in out.getvalue()
    fake.fail_next("GET /portfolio/balance", 401)
    out = StringIO()
    with pytest.raises(CommandError, match="1 Kalshi check"):
        call_command("check_kalshi", stdout=out)
    assert "FAIL  API key: key rejected or clock skew (HTTP 401)" in out.getvalue()


class EchoingKalshi(FakeKalshi):
    """An exchange whose errors echo the request's headers back (key id and signature)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.echoed: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(("/portfolio/balance", "/markets")):
            headers = {k: v for k, v in request.headers.items() if k.startswith("kalshi-")}
            self.echoed += [headers["kalshi-access-key"], headers["kalshi-access-signature"]]
            body = {"code": "bad_request", "message": f"request headers: {headers}"}
            return httpx.Response(400, json=body)
        return super().__call__(request)


def test_exchange_errors_are_printed_redacted(monkeypatch):
    fake = EchoingKalshi(now=datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(kalshi, "kalshi_client", lambda **kw: fake.client(clock=time.time))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("check_kalshi", stdout=out, stderr=err)
    printed = out.getvalue() + err.getvalue() + str(caught.value)
    assert "API key: balance read failed" in printed
    assert fake.echoed and REDACTED in printed
    for secret in fake.echoed:
        assert secret not in printed


def test_sync_markets_prints_exchange_errors_redacted(monkeypatch):
    fake = EchoingKalshi(now=datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(kalshi, "kalshi_client", lambda **kw: fake.client(clock=time.time))
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync_markets", "--no-progress", stdout=out, stderr=err)
    printed = out.getvalue() + err.getvalue() + str(caught.value)
    assert fake.echoed and REDACTED in printed
    for secret in fake.echoed:
        assert secret not in printed
