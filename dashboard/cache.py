"""Cached dashboard parts, invalidated all at once by a generation key.

Every cached part is stored under ``version=generation_key()``. The trading job calls
``reset_generation_key()`` at the end of each cycle (and the dashboard's own controls call it
after they change something), which moves every reader to a new version: old entries are
simply never read again and expire on their own. No per-key invalidation logic anywhere.

On top of the parts, ``page_response`` keeps each user's finished pages, keyed by everything
a page shows that can change without a new generation (the user, the URL, the live trading
state and, where shown, the heartbeat as displayed); the request's CSRF token is put in on
every response. A page served from there costs about what a trivial logged-in page does, plus
the one live query that builds its key.

The parts also carry a TTL (``PART_TTL_SECONDS``) as a backstop: with the local-memory cache
(no ``REDIS_URL``) each process has its own cache, so a reset in the worker process cannot reach
the web processes, and the TTL bounds how stale a page can be there. With Redis the reset is
seen by every process at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
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
    """Drop this thread's memo and this process's recent pages (tests that clear the cache
    call this)."""
    _memo.until = 0.0
    _recent_pages.clear()


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


# --- Whole pages ----------------------------------------------------------------------------

# Rendered in place of the CSRF token in a cached page; each response gets its own token.
CSRF_PLACEHOLDER = "csrf-token-of-this-request-0f3c9a"
_PLACEHOLDER_BYTES = CSRF_PLACEHOLDER.encode()


def page_response(
    request: HttpRequest, live: tuple[object, ...], build: Callable[[], HttpResponse]
) -> HttpResponse:
    """The page ``build()`` renders, from this user's page cache when nothing in ``live``
    (and nothing in the generation) changed since it was rendered.

    Only plain 200 GET pages are kept, and never one that shows a message (a message is shown
    once). ``build`` renders ``{% csrf_token %}`` as ``CSRF_PLACEHOLDER`` (``wants_placeholder``).
    """
    if request.method != "GET" or len(messages.get_messages(request)):
        return build()
    user = request.user
    # The user's permissions (read already, by the view's permission check) decide which
    # controls a page shows: a role granted or taken away shows at once.
    perms = tuple(sorted(user.get_all_permissions()))
    key = part_key(
        "page", user.pk, user.get_username(), user.is_staff, perms, request.get_full_path(), live
    )
    version = generation_key()
    content = _recent_pages.get(key, version)  # the response's bytes, as sent
    if content is None:
        content = cache.get(key, version=version)
    if content is None:
        request.csrf_placeholder = True
        response = build()
        if response.status_code != 200 or response.streaming:
            return _with_token(request, response)
        content = response.content
        cache.set(key, content, timeout=PART_TTL_SECONDS, version=version)
    _recent_pages.put(key, version, content)
    return HttpResponse(content.replace(_PLACEHOLDER_BYTES, get_token(request).encode()))


class _RecentPages:
    """This process's most recently served pages, in front of the shared cache.

    Keyed like the shared cache (the same key and generation), so it is exactly as fresh: a
    reset, a new trading state or a new heartbeat makes a new key. It saves the round trip to
    Redis on a page served again; entries live ``SECONDS`` at most, and the oldest go beyond
    ``SIZE``. Off when the cache itself is this process's memory.
    """

    SIZE = 256
    SECONDS = 30.0

    def __init__(self) -> None:
        self._pages: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def enabled() -> bool:
        return not isinstance(caches["default"], LocMemCache)

    def get(self, key: str, version: int) -> bytes | None:
        if not self.enabled():
            return None
        with self._lock:
            item = self._pages.get((key, version))
            if item is None:
                return None
            if item[0] <= time.monotonic():
                del self._pages[(key, version)]
                return None
            self._pages.move_to_end((key, version))
            return item[1]

    def put(self, key: str, version: int, content: bytes) -> None:
        if not self.enabled():
            return
        with self._lock:
            if (key, version) not in self._pages:
                self._pages[(key, version)] = (time.monotonic() + self.SECONDS, content)
            while len(self._pages) > self.SIZE:
                self._pages.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()


_recent_pages = _RecentPages()


def wants_placeholder(request: HttpRequest) -> bool:
    return getattr(request, "csrf_placeholder", False)


def _with_token(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if not response.streaming and _PLACEHOLDER_BYTES in response.content:
        response.content = response.content.replace(_PLACEHOLDER_BYTES, get_token(request).encode())
    return response
