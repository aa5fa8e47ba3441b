"""Cached dashboard parts, invalidated all at once by a generation key.

Every cached part is stored under ``version=generation_key()``. The trading job calls
``reset_generation_key()`` at the end of each cycle (and the dashboard's own controls call it
after they change something), which moves every reader to a new version: old entries are
simply never read again and expire on their own. No per-key invalidation logic anywhere.

The parts also carry a TTL (``PART_TTL_SECONDS``) as a backstop: with the local-memory cache
(no ``REDIS_URL``) each process has its own cache, so a reset in the worker process cannot reach
the web processes, and the TTL bounds how stale a page can be there. With Redis the reset is
seen by every process at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

GENERATION_KEY = "dashboard:generation"
PART_TTL_SECONDS = 120

T = TypeVar("T")


def _new_generation() -> int:
    # Nanoseconds: a fresh value even when two resets race or the cache was flushed.
    return time.time_ns()


# The generation read last by this thread, reused for MEMO_SECONDS: a page then costs one
# cache round trip, not two. Another process's reset is seen at most this late; this
# process's own resets at once.
MEMO_SECONDS = 1.0
_memo = threading.local()


def generation_key() -> int:
    """The current generation (an int usable as a cache ``version``)."""
    now = time.monotonic()
    if getattr(_memo, "until", 0.0) > now:
        return _memo.value
    value = cache.get(GENERATION_KEY)
    if value is None:
        # First use, or the cache was cleared: start a new generation (add() so that two
        # processes starting together agree on one value when the cache is shared).
        cache.add(GENERATION_KEY, _new_generation(), timeout=None)
        value = cache.get(GENERATION_KEY) or _new_generation()
    _memo.value, _memo.until = int(value), now + MEMO_SECONDS
    return _memo.value


def reset_generation_key() -> None:
    """Invalidate every cached dashboard part (call after each trading cycle)."""
    value = _new_generation()
    cache.set(GENERATION_KEY, value, timeout=None)
    _memo.value, _memo.until = value, time.monotonic() + MEMO_SECONDS


def forget_generation() -> None:
    """Drop this thread's memo (tests that clear the cache call this)."""
    _memo.until = 0.0


def part_key(name: str, *params: object) -> str:
    """A bounded cache key for a named part and its parameters (e.g. a page's filters)."""
    if not params:
        return f"dashboard:{name}"
    digest = hashlib.sha256(repr(params).encode()).hexdigest()[:32]
    return f"dashboard:{name}:{digest}"


def cached(key: str, build: Callable[[], T], *, timeout: int = PART_TTL_SECONDS) -> T:
    """The value under ``key`` in the current generation, built (and stored) on a miss."""
    version = generation_key()
    value = cache.get(key, version=version)
    if value is None:
        value = build()
        cache.set(key, value, timeout=timeout, version=version)
    return value


def cached_html(key: str, template: str, build: Callable[[], dict[str, object]]) -> SafeString:
    """A fragment rendered from ``template`` with the context ``build()`` returns, cached as
    HTML. Fragments never hold a CSRF token or anything else tied to one user or request:
    forms are rendered outside them, on every request."""
    return mark_safe(cached(key, lambda: render_to_string(template, build())))  # noqa: S308
