"""One client for the OpenAI chat-completions protocol, over httpx.

xAI, OpenAI, OpenRouter, a local server (Ollama, llama.cpp) and any compatible endpoint speak
the same protocol: ``POST {base}/chat/completions`` with ``Authorization: Bearer <key>``. A
``Provider`` row says what differs (base URL, whether a key is needed, JSON mode, the name of
the output-token limit).

Policy:

- explicit timeouts: ``timeout`` seconds for the whole attempt (connect is at most 5 s), and
  the reply body is read in chunks and cut at ``MAX_BODY_BYTES``;
- bounded retries: 429 (unless the body says the quota is gone), 408, 5xx, timeouts and
  transport errors are retried ``max_retries`` times with jittered exponential backoff
  (``Retry-After`` honoured up to the cap); other 4xx are permanent. ``sleep`` and ``rand`` are
  injectable so tests run instantly;
- ``before_attempt`` is called before every HTTP attempt (the budget reservation); if it
  raises, nothing is sent;
- an attempt whose request may have reached the model but whose answer was lost (a read
  timeout, a dropped connection) is counted in ``unknown_attempts``: the caller charges it at
  the worst case, like an order of unknown outcome;
- the request carries no tools and no functions; the key is only in the Authorization header,
  never in the body, and never in an error message.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured

from config.logging import redact
from trading.llm.prices import Price, call_cost, price_for, worst_case_cost

CONNECT_TIMEOUT = 5.0
MAX_BODY_BYTES = 512 * 1024
USER_AGENT = "kalshi-trading-desk/0.1"


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    needs_key: bool = True
    json_mode: bool = True
    max_tokens_field: str = "max_tokens"
    free: bool = False


PROVIDERS: dict[str, Provider] = {
    "xai": Provider("xai", "https://api.x.ai/v1", max_tokens_field="max_completion_tokens"),
    "openai": Provider(
        "openai", "https://api.openai.com/v1", max_tokens_field="max_completion_tokens"
    ),
    "openrouter": Provider("openrouter", "https://openrouter.ai/api/v1"),
    "local": Provider("local", "http://127.0.0.1:11434/v1", needs_key=False, free=True),
    # Any compatible server: LLM_BASE_URL is required; JSON mode is not assumed.
    "custom": Provider("custom", "", needs_key=False, json_mode=False),
}


class LLMConfigError(ImproperlyConfigured):
    """The LLM settings are incomplete or unsafe."""


class LLMError(Exception):
    """A call that produced no answer. ``kind``: timeout, rate_limited, quota, server, client,
    transport, bad_reply. ``unknown_attempts``: attempts that may have been billed."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status_code: int | None = None,
        attempts: int = 1,
        unknown_attempts: int = 0,
        body: str = "",
    ) -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.kind = kind
        self.status_code = status_code
        self.attempts = attempts
        self.unknown_attempts = unknown_attempts
        self.body = redact(body)


@dataclass(frozen=True)
class LLMResult:
    """One answered call: the text, the tokens, the exact cost."""

    text: str | None
    input_tokens: int
    output_tokens: int
    cost: Decimal
    latency_ms: int
    model: str
    attempts: int = 1
    unknown_attempts: int = 0
    finish_reason: str = ""
    refusal: str = ""
    usage_missing: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or (host or "").startswith("127.")


def _check_base_url(url: str, *, has_key: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMConfigError(f"LLM_BASE_URL must be an http(s) URL; got {url!r}")
    if has_key and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise LLMConfigError(
            "refusing to send the LLM API key over plain http to a remote host; use https"
        )
    return url.rstrip("/")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class ChatClient:
    """``complete(messages) -> LLMResult`` against one provider and model."""

    def __init__(
        self,
        *,
        provider: Provider,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        json_mode: bool | None = None,
        price: Price | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not model:
            raise LLMConfigError("LLM_MODEL is required")
        if len(model) > 128:
            raise LLMConfigError("LLM_MODEL is longer than 128 characters")
        if not timeout or timeout <= 0:
            raise LLMConfigError("LLM_TIMEOUT must be a positive number of seconds")
        if provider.needs_key and not api_key:
            raise LLMConfigError(f"LLM provider {provider.name!r} needs LLM_API_KEY")
        url = base_url or provider.base_url
        if not url:
            raise LLMConfigError(f"LLM provider {provider.name!r} needs LLM_BASE_URL")
        self.provider = provider
        self.model = model
        self.base_url = _check_base_url(url, has_key=bool(api_key))
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.json_mode = provider.json_mode if json_mode is None else json_mode
        self.price = price or price_for(model, free=provider.free)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rand = rand
        self._monotonic = monotonic
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if provider.name == "openrouter":
            headers["X-Title"] = "kalshi-trading-desk"
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout)),
            transport=transport,
            headers=headers,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"<ChatClient {self.provider.name} {self.model} {redact(self.base_url)}>"

    def close(self) -> None:
        self._http.close()

    # -- the request -------------------------------------------------------------------------

    def payload(
        self,
        messages: list[dict[str, str]],
        *,
        max_output_tokens: int,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            self.provider.max_tokens_field: int(max_output_tokens),
            "stream": False,
        }
        if temperature is not None:
            body["temperature"] = temperature
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def worst_case_cost(self, messages: list[dict[str, str]], max_output_tokens: int) -> Decimal:
        return worst_case_cost(self.price, messages, max_output_tokens)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        step = min(self._backoff_cap, self._backoff_base * (2**attempt))
        delay = step / 2 + step / 2 * self._rand()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_cap))
        return delay

    def _read(self, response: httpx.Response, started: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise LLMError(f"reply body larger than {MAX_BODY_BYTES} bytes", kind="bad_reply")
            if self._monotonic() - started > self.timeout:
                raise httpx.ReadTimeout("reply took longer than the timeout")
            chunks.append(chunk)
        return b"".join(chunks)

    def _attempt(self, body: dict[str, Any]) -> tuple[int, bytes, httpx.Headers]:
        started = self._monotonic()
        request = self._http.build_request("POST", "/chat/completions", json=body)
        response = self._http.send(request, stream=True)
        try:
            content = self._read(response, started)
        finally:
            response.close()
        return response.status_code, content, response.headers

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_output_tokens: int,
        temperature: float | None = None,
        before_attempt: Callable[[int], None] | None = None,
    ) -> LLMResult:
        """One chat completion, with retries. Raises ``LLMError`` when there is no answer."""
        body = self.payload(messages, max_output_tokens=max_output_tokens, temperature=temperature)
        started = self._monotonic()
        attempt = 0
        unknown = 0
        error: LLMError | None = None
        while True:
            if before_attempt is not None:
                try:
                    before_attempt(attempt)
                except Exception as exc:
                    if error is None:
                        raise
                    raise LLMError(
                        f"{exc}; no retry after: {error.message}",
                        kind="budget",
                        status_code=error.status_code,
                        attempts=attempt,
                        unknown_attempts=unknown,
                        body=error.body,
                    ) from exc
            retry_after: float | None = None
            try:
                status, content, headers = self._attempt(body)
            except LLMError as exc:  # an oversized reply: answered, so possibly billed
                exc.attempts, exc.unknown_attempts = attempt + 1, unknown + 1
                raise
            except httpx.TimeoutException as exc:
                sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                unknown += int(sent)
                error = LLMError(
                    f"{self.provider.name}: {type(exc).__name__} after {self.timeout:g}s",
                    kind="timeout",
                )
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError)
                unknown += int(sent)
                error = LLMError(
                    f"{self.provider.name}: transport error ({type(exc).__name__})",
                    kind="transport",
                )
            else:
                if 200 <= status < 300:
                    return self._result(content, started, attempt + 1, unknown)
                error = _http_error(self.provider.name, status, content)
                retry_after = _retry_after(headers)
                if error.kind not in ("rate_limited", "server", "timeout"):
                    error.attempts, error.unknown_attempts = attempt + 1, unknown
                    raise error
            if attempt >= self.max_retries:
                error.attempts, error.unknown_attempts = attempt + 1, unknown
                error.message = f"{error.message} (gave up after {attempt + 1} attempts)"
                raise error
            self._sleep(self._backoff(attempt, retry_after))
            attempt += 1

    # -- the reply ---------------------------------------------------------------------------

    def _result(self, content: bytes, started: float, attempts: int, unknown: int) -> LLMResult:
        latency_ms = max(0, int((self._monotonic() - started) * 1000))

        def bad(message: str) -> LLMError:
            return LLMError(
                f"{self.provider.name}: {message}",
                kind="bad_reply",
                attempts=attempts,
                unknown_attempts=unknown + 1,  # answered, so billed; tokens unknown
                body=content[:2000].decode("utf-8", "replace"),
            )

        try:
            data = json.loads(content)
        except ValueError:
            raise bad("the HTTP reply is not JSON") from None
        if not isinstance(data, dict):
            raise bad("the HTTP reply is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("the reply has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise bad("the reply has no message")
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise bad("the message content is not text")
        refusal = message.get("refusal")
        finish_reason = choices[0].get("finish_reason")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _positive_int(usage.get("prompt_tokens"))
        completion_tokens = _positive_int(usage.get("completion_tokens"))
        total_tokens = _positive_int(usage.get("total_tokens"))
        notes: list[str] = []
        usage_missing = prompt_tokens is None or completion_tokens is None
        if usage_missing:
            input_tokens = output_tokens = 0
            cost = Decimal(0)
            notes.append("the reply has no token usage: charged the worst case")
        else:
            assert prompt_tokens is not None and completion_tokens is not None
            input_tokens = prompt_tokens
            # Some providers count reasoning tokens outside completion_tokens: bill the larger.
            output_tokens = completion_tokens
            if total_tokens is not None and total_tokens - prompt_tokens > completion_tokens:
                output_tokens = total_tokens - prompt_tokens
            cost = call_cost(self.price, input_tokens, output_tokens)
        if self.price.note:
            notes.append(self.price.note)
        return LLMResult(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            latency_ms=latency_ms,
            model=self.model,
            attempts=attempts,
            unknown_attempts=unknown,
            finish_reason=finish_reason if isinstance(finish_reason, str) else "",
            refusal=refusal if isinstance(refusal, str) else "",
            usage_missing=usage_missing,
            notes=tuple(notes),
        )


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _provider_message(content: bytes) -> tuple[str, str]:
    """The provider's error (code, message) from a JSON error body, if any."""
    try:
        data = json.loads(content)
    except ValueError:
        return "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        return str(code), str(error.get("message") or "")[:300]
    if isinstance(error, str):
        return "", error[:300]
    return "", ""


def _http_error(provider: str, status: int, content: bytes) -> LLMError:
    code, message = _provider_message(content)
    detail = f": {message}" if message else ""
    text = f"{provider}: HTTP {status}{f' {code}' if code else ''}{detail}"
    body = content[:2000].decode("utf-8", "replace")
    if status == 429 and "quota" not in code.lower():
        kind = "rate_limited"
    elif status in (402, 429):
        kind = "quota"
    elif status == 408:
        kind = "timeout"
    elif status >= 500:
        kind = "server"
    else:
        kind = "client"
    return LLMError(text, kind=kind, status_code=status, body=body)
