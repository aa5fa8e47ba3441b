"""``manage.py check_kalshi``: is this installation able to talk to Kalshi?

Prints the environment and base URL, the exchange status, whether the API key works (a signed
balance read; "no key configured" is not a failure: paper trading needs no key) and the clock
skew between this machine and Kalshi's ``Date`` header (signatures carry our timestamp; Kalshi
documents no window, so more than ``MAX_SKEW_SECONDS`` is reported as a failure). Every failure
gets its own line and the command exits non-zero.

``check_kalshi(client)`` does the work and is what the tests call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.logging import redact
from markets import kalshi

MAX_SKEW_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str

    def line(self) -> str:
        # Through the log redaction: an exchange's error text may echo our request headers.
        return redact(f"{'ok  ' if self.ok else 'FAIL'}  {self.text}")


def _server_date(client: kalshi.KalshiClient) -> float | None:
    """Kalshi's clock (Unix seconds), or None when the reply has no usable Date header."""
    moment = client.server_time()
    return moment.timestamp() if moment is not None else None


def check_kalshi(
    client: kalshi.KalshiClient, *, clock: Callable[[], float] = time.time
) -> list[Check]:
    checks = [
        Check(True, f"environment: {settings.KALSHI_ENV}"),
        Check(True, f"base URL: {client.base_url}"),
    ]
    try:
        status = client.get_exchange_status()
    except (kalshi.KalshiError, httpx.HTTPError) as exc:
        message = exc.message if isinstance(exc, kalshi.KalshiError) else type(exc).__name__
        checks.append(Check(False, f"exchange status: unreachable ({message})"))
        return checks
    checks.append(
        Check(
            status.exchange_active,
            f"exchange status: exchange {'active' if status.exchange_active else 'INACTIVE'}, "
            f"trading {'active' if status.trading_active else 'paused'}",
        )
    )

    if not client.authenticated:
        checks.append(Check(True, "API key: no key configured (public data only; paper mode)"))
    else:
        try:
            balance = client.get_balance()
        except kalshi.KalshiAuthError:
            checks.append(Check(False, "API key: key rejected or clock skew (HTTP 401)"))
        except kalshi.KalshiError as exc:
            checks.append(Check(False, f"API key: balance read failed ({exc.message})"))
        else:
            checks.append(Check(True, f"API key: works (balance ${balance.balance:,.2f})"))

    try:
        server = _server_date(client)
    except httpx.HTTPError as exc:
        server = None
        checks.append(Check(False, f"clock skew: no reply ({type(exc).__name__})"))
    else:
        if server is None:
            checks.append(Check(False, "clock skew: Kalshi sent no usable Date header"))
    if server is not None:
        skew = clock() - server
        checks.append(
            Check(
                abs(skew) <= MAX_SKEW_SECONDS,
                f"clock skew: {skew:+.1f}s vs Kalshi's Date header (limit ±{MAX_SKEW_SECONDS:.0f}s)",
            )
        )
    return checks


class Command(BaseCommand):
    help = "Check the Kalshi configuration: environment, exchange status, API key, clock skew."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            client = kalshi.kalshi_client()
        except kalshi.KalshiError as exc:
            raise CommandError(redact(f"Kalshi client not configured: {exc.message}")) from None
        with client:
            checks = check_kalshi(client)
        for check in checks:
            self.stdout.write(check.line())
        failures = [c for c in checks if not c.ok]
        if failures:
            raise CommandError(f"{len(failures)} Kalshi check(s) failed")
        self.stdout.write("Kalshi: all checks passed.")
