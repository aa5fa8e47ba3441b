"""A fake OpenAI-compatible chat-completions server at the httpx transport, and builders.

``FakeLLM`` answers each POST with the next scripted reply (a ``httpx.Response``, an exception
to raise, or a callable of the request body) and keeps every request it received, so tests
check what would have gone over the wire: the URL, the headers, the model, the messages.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.core.cache.backends.locmem import LocMemCache

from markets.simulator import SimulatedExchange
from tests.base import make_event, make_market
from tests.sim import T0, StaticQuotes, quote
from trading.llm import PROVIDERS, ChatClient, LLMForecaster

API_KEY = "xai-TESTKEY0123456789abcdefSECRET"
WALL = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)  # the real clock of the budget's day

Reply = httpx.Response | Exception | Callable[[dict[str, Any]], httpx.Response]


def forecast_json(
    probability: Any = 0.62,
    confidence: Any = 0.7,
    rationale: str = "Base rates favour YES slightly.",
    key_factors: Any = ("base rate", "recent polling"),
    **extra: Any,
) -> str:
    body: dict[str, Any] = {
        "probability": probability,
        "confidence": confidence,
        "rationale": rationale,
        "key_factors": list(key_factors) if isinstance(key_factors, tuple) else key_factors,
    }
    body.update(extra)
    return json.dumps(body)


def completion(
    content: str | None,
    *,
    prompt_tokens: int | None = 1000,
    completion_tokens: int | None = 100,
    total_tokens: int | None = None,
    finish_reason: str = "stop",
    refusal: str | None = None,
    model: str = "grok-4",
) -> httpx.Response:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
            }
        ],
    }
    if prompt_tokens is not None and completion_tokens is not None:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": total_tokens
            if total_tokens is not None
            else prompt_tokens + completion_tokens,
        }
    return httpx.Response(200, json=body)


def http_error(status: int, message: str = "", code: str = "", **headers: str) -> httpx.Response:
    body = {"error": {"message": message or f"HTTP {status}", "code": code or None}}
    return httpx.Response(status, json=body, headers=headers)


def rate_limited(retry_after: str | None = None) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return http_error(429, "Rate limit reached", "rate_limit_exceeded", **headers)


class FakeLLM:
    """Scripted replies; the last one repeats when the script runs out (``repeat_last``)."""

    def __init__(self, *replies: Reply, repeat_last: bool = True) -> None:
        self.replies: list[Reply] = list(replies)
        self.repeat_last = repeat_last
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        self.bodies.append(body)
        if not self.replies:
            raise AssertionError("FakeLLM: no scripted reply left")
        reply = (
            self.replies[0]
            if (self.repeat_last and len(self.replies) == 1)
            else self.replies.pop(0)
        )
        if isinstance(reply, Exception):
            raise reply
        if callable(reply) and not isinstance(reply, httpx.Response):
            return reply(body)
        return reply

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    # -- what the server saw --------------------------------------------------------------

    @property
    def calls(self) -> int:
        return len(self.requests)

    def user_content(self, index: int = -1) -> str:
        return next(m["content"] for m in self.bodies[index]["messages"] if m["role"] == "user")

    def system_content(self, index: int = -1) -> str:
        return next(m["content"] for m in self.bodies[index]["messages"] if m["role"] == "system")


def read_timeout() -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out")


def make_client(
    fake: FakeLLM, *, provider: str = "xai", model: str = "grok-4", **kw: Any
) -> ChatClient:
    kw.setdefault("api_key", API_KEY if PROVIDERS[provider].needs_key else None)
    kw.setdefault("max_retries", 2)
    kw.setdefault("rand", lambda: 0.5)
    if provider == "custom":
        kw.setdefault("base_url", "https://llm.example.test/v1")
    return ChatClient(
        provider=PROVIDERS[provider],
        model=model,
        transport=fake.transport,
        sleep=fake.sleep,
        **kw,
    )


def fresh_cache() -> LocMemCache:
    return LocMemCache(f"llm-test-{uuid.uuid4().hex}", {})


def make_forecaster(fake: FakeLLM, *, client: ChatClient | None = None, **kw: Any) -> LLMForecaster:
    kw.setdefault("cache", fresh_cache())
    kw.setdefault("wall", lambda: WALL)
    return LLMForecaster(client or make_client(fake), **kw)


def make_exchange(*quotes, account: str | None = None) -> tuple[SimulatedExchange, StaticQuotes]:
    source = StaticQuotes(*quotes)
    exchange = SimulatedExchange(
        name="paper",
        quotes=source,
        account=account or f"llm-{uuid.uuid4().hex[:8]}",
        starting_cash=Decimal("1000"),
    )
    return exchange, source


def make_llm_market(ticker: str, *, title: str = "Will the test event happen?", **kw: Any):
    event = kw.pop("event", None) or make_event(category="Test")
    kw.setdefault("rules_primary", "If the test event happens before close, YES.")
    return make_market(
        event=event, ticker=ticker, title=title, close_time=T0 + timedelta(days=1), **kw
    )


def market_quote(ticker: str, bid: str = "0.40", ask: str = "0.42", **kw: Any):
    return quote(ticker, bid=bid, ask=ask, **kw)


__all__ = [
    "API_KEY",
    "T0",
    "WALL",
    "FakeLLM",
    "completion",
    "forecast_json",
    "fresh_cache",
    "http_error",
    "make_client",
    "make_exchange",
    "make_forecaster",
    "make_llm_market",
    "market_quote",
    "rate_limited",
    "read_timeout",
]
