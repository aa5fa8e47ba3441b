"""django-q2 tasks for market data: a few lines each, resolving the client and calling a service."""

from __future__ import annotations

from markets import kalshi
from markets.services import market_sync


def sync_markets() -> str:
    """Copy Kalshi's open markets into the database; the summary line is the task's result."""
    with kalshi.kalshi_client() as client:
        return market_sync(client=client).summary()
