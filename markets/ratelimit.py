"""Client-side token buckets matching Kalshi's rate limits (docs/KALSHI.md, Rate limits).

Kalshi charges every request tokens (10 by default; a V2 cancel costs 2) against two independent
buckets, Read and Write, whose refill rate and capacity depend on the account's tier. We keep the
same two buckets on our side so that we slow down before Kalshi answers 429. One limiter per
process (``shared_rate_limiter``) is shared by every client built by the factory; limits across
several processes (web, worker) are not coordinated, which is why the per-process budget can be
set lower with a smaller tier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

Bucket = Literal["read", "write"]

DEFAULT_COST = 10

# tier -> (read tokens/s, write tokens/s), docs/KALSHI.md, Rate limits.
TIER_RATES: dict[str, tuple[int, int]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
    "prestige": (10000, 8000),
}


def _capacity_seconds(tier: str, bucket: Bucket) -> int:
    """Write buckets above Basic and Read buckets at Basic/Advanced hold 2 s of budget; others 1 s."""
    if bucket == "write":
        return 1 if tier == "basic" else 2
    return 2 if tier in ("basic", "advanced") else 1


class TokenBucket:
    """A thread-safe token bucket that lets a caller go into debt and then tells it how long to wait.

    Reserving first and sleeping afterwards (outside the lock) keeps callers in arrival order and
    never holds the lock while sleeping.
    """

    def __init__(
        self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic
    ):
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, cost: float) -> float:
        """Take ``cost`` tokens; return how many seconds the caller must wait before sending."""
        if cost > self.capacity:
            raise ValueError(
                f"a request costing {cost} tokens can never fit a bucket of {self.capacity}"
            )
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= cost
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    @property
    def tokens(self) -> float:
        with self._lock:
            now = self._clock()
            return min(self.capacity, self._tokens + (now - self._updated) * self.rate)


class RateLimiter:
    """The Read and Write buckets of one Kalshi tier."""

    def __init__(
        self,
        tier: str = "basic",
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if tier not in TIER_RATES:
            raise ValueError(
                f"unknown Kalshi rate tier {tier!r}; expected one of {', '.join(TIER_RATES)}"
            )
        self.tier = tier
        read_rate, write_rate = TIER_RATES[tier]
        self._buckets: dict[str, TokenBucket] = {
            "read": TokenBucket(
                read_rate, read_rate * _capacity_seconds(tier, "read"), clock=clock
            ),
            "write": TokenBucket(
                write_rate, write_rate * _capacity_seconds(tier, "write"), clock=clock
            ),
        }
        self._sleep = sleep

    def bucket(self, name: Bucket) -> TokenBucket:
        return self._buckets[name]

    def acquire(self, bucket: Bucket, cost: int = DEFAULT_COST) -> float:
        """Block until ``cost`` tokens of ``bucket`` are available; return the seconds waited."""
        wait = self._buckets[bucket].reserve(cost)
        if wait > 0:
            self._sleep(wait)
        return wait

    def __repr__(self) -> str:
        return f"<RateLimiter tier={self.tier}>"


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_rate_limiter(tier: str) -> RateLimiter:
    """The process-wide limiter for ``tier`` (created on first use)."""
    with _shared_lock:
        limiter = _shared.get(tier)
        if limiter is None:
            limiter = _shared[tier] = RateLimiter(tier)
        return limiter
