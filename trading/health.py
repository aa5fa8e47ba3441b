"""/health/: this project's checks (django-health-check v4 classes) and the views that run them.

Three answers, by audience:

- ``/health/live/`` (``LivenessMiddleware``): the process serves. No I/O, no host check, no TLS
  redirect: the container probe and the proxy use it.
- ``/health/`` (``HealthPublicView``): anyone may ask, the answer is only
  ``{"status": "ok"}`` (200) or ``{"status": "unhealthy"}`` (503).
- ``/health/detail/`` (``HealthDetailView``): every check with its message, for a staff session
  or a caller holding ``HEALTH_TOKEN`` (``Authorization: Bearer``, or ``?token=``).

A warning (``ServiceWarning``: the cache is down, trading is reduce-only, the exchange status is
unknown) is shown in the detail but does not make the service unhealthy. Messages are written
here, never copied from exceptions, so no secret can leak through them. Checks run their ORM work
through ``sync_to_async`` on the request's own thread. Nothing here calls the exchange: the worker
records what it saw (``exchange_probe``) and the check reads that record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
from collections.abc import Callable
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from health_check.base import HealthCheck, HealthCheckResult
from health_check.checks import Cache
from health_check.exceptions import HealthCheckException, ServiceUnavailable, ServiceWarning
from health_check.views import HealthCheckView

logger = logging.getLogger(__name__)

TRADING_CYCLE_JOB = "trading_cycle"
EXCHANGE_STATUS_JOB = "exchange_status"


# --- Checks -----------------------------------------------------------------------------------


@dataclasses.dataclass
class CacheWarnOnly(Cache):
    """The cache answers. A failure is a warning: the desk runs without Redis (nothing that
    guards money uses the cache, and the dashboard reads the database)."""

    async def run(self) -> None:
        try:
            await super().run()
        except HealthCheckException as exc:
            raise ServiceWarning(f"cache unavailable ({exc.message})") from None


@dataclasses.dataclass
class WorkerHeartbeat(HealthCheck):
    """The worker ran a job recently (the newest ``JobRun`` heartbeat is fresh)."""

    def _check(self) -> None:
        from trading.models import JobRun

        newest = JobRun.objects.order_by("-heartbeat_at").values_list("heartbeat_at", flat=True)
        last = newest.first()
        if last is None:
            raise ServiceUnavailable("no job has run yet: is the worker (qcluster) running?")
        age = timezone.now() - last
        limit = timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS)
        if age > limit:
            raise ServiceUnavailable(
                f"last worker heartbeat {int(age.total_seconds())}s ago "
                f"(limit {int(limit.total_seconds())}s)"
            )

    async def run(self) -> None:
        await sync_to_async(self._check)()


@dataclasses.dataclass
class ReconcileFresh(HealthCheck):
    """In paper and live mode, a trading cycle (which reconciles orders, fills and positions with
    the exchange, first and last) finished successfully within ``RECONCILE_MAX_AGE``."""

    def _check(self) -> None:
        from trading.models import JobRun

        mode = settings.TRADING_MODE
        if mode == "replay":
            return  # recorded data: there is no exchange to drift from
        last = (
            JobRun.objects.filter(job=TRADING_CYCLE_JOB, mode=mode, status=JobRun.Status.OK)
            .exclude(finished_at=None)
            .order_by("-finished_at")
            .values_list("finished_at", flat=True)
            .first()
        )
        limit = timedelta(seconds=settings.RECONCILE_MAX_AGE_SECONDS)
        if last is None:
            raise ServiceUnavailable(f"no successful {mode} trading cycle (reconcile) yet")
        age = timezone.now() - last
        if age > limit:
            raise ServiceUnavailable(
                f"last successful reconcile {int(age.total_seconds())}s ago "
                f"(limit {int(limit.total_seconds())}s)"
            )

    async def run(self) -> None:
        await sync_to_async(self._check)()


@dataclasses.dataclass
class ExchangeReachable(HealthCheck):
    """What the worker last saw of the exchange: unreachable is unhealthy; closed for trading,
    never seen, or seen too long ago is a warning. Never a live call from here."""

    def _check(self) -> None:
        from trading.models import JobRun

        if settings.TRADING_MODE == "replay":
            return  # the simulated exchange is always there
        row = (
            JobRun.objects.filter(job=EXCHANGE_STATUS_JOB)
            .order_by("-heartbeat_at")
            .values("status", "heartbeat_at", "counts")
            .first()
        )
        if row is None:
            raise ServiceWarning("exchange status unknown: the worker has not recorded one yet")
        age = timezone.now() - row["heartbeat_at"]
        limit = timedelta(seconds=settings.EXCHANGE_STATUS_MAX_AGE_SECONDS)
        if age > limit:
            raise ServiceWarning(
                f"exchange status unknown: last seen {int(age.total_seconds())}s ago "
                f"(limit {int(limit.total_seconds())}s)"
            )
        if row["status"] != JobRun.Status.OK:
            raise ServiceUnavailable("exchange unreachable at the worker's last check")
        counts = row["counts"] or {}
        if not counts.get("exchange_active"):
            raise ServiceWarning("exchange reachable but not active (maintenance?)")
        if not counts.get("trading_active"):
            raise ServiceWarning("exchange reachable but trading is paused")

    async def run(self) -> None:
        await sync_to_async(self._check)()


@dataclasses.dataclass
class TradingStateCheck(HealthCheck):
    """Trading is not halted. A halt is unhealthy, with its reason; reduce-only is a warning."""

    def _check(self) -> None:
        from trading.models import TradingState

        state = TradingState.load()
        if state.state == TradingState.State.HALTED:
            raise ServiceUnavailable(f"trading halted: {state.reason}")
        if state.state == TradingState.State.REDUCE_ONLY:
            raise ServiceWarning(f"trading is reduce-only: {state.reason or 'no reason given'}")

    async def run(self) -> None:
        await sync_to_async(self._check)()


@dataclasses.dataclass
class JobRunsAlive(HealthCheck):
    """No job run was abandoned (its process died mid-run) since the last one that finished:
    a warning naming the run, as the next run recovers what it left (reconcile first)."""

    def _check(self) -> None:
        from trading.models import JobRun
        from trading.services import LEASE_NAME, holder_dead

        latest = (
            JobRun.objects.exclude(status=JobRun.Status.SKIPPED)
            .exclude(job__in=(EXCHANGE_STATUS_JOB, "heartbeat"))
            .order_by("-started_at", "-id")
            .values("pk", "job", "status", "owner", "started_at")
            .first()
        )
        if latest is None:
            return
        if latest["status"] == JobRun.Status.RUNNING:
            from trading.models import JobLease

            lease = JobLease.objects.filter(name=LEASE_NAME).values("owner", "expires_at").first()
            live = (
                lease is not None
                and lease["owner"] == latest["owner"]
                and lease["expires_at"] > timezone.now()
                and not holder_dead(lease["owner"])
            )
            if live:
                return
        elif latest["status"] != JobRun.Status.ABANDONED:
            return
        raise ServiceWarning(
            f"{latest['job']} run #{latest['pk']} (started {latest['started_at']:%Y-%m-%d %H:%M}"
            " UTC) abandoned: its process died before it finished"
        )

    async def run(self) -> None:
        await sync_to_async(self._check)()


HEALTH_CHECKS = (
    "health_check.checks.Database",
    "trading.health.CacheWarnOnly",
    "trading.health.WorkerHeartbeat",
    "trading.health.JobRunsAlive",
    "trading.health.ReconcileFresh",
    "trading.health.ExchangeReachable",
    "trading.health.TradingStateCheck",
)


# --- What the worker records --------------------------------------------------------------------


def exchange_status_record(
    *, reachable: bool, exchange_active: bool = False, trading_active: bool = False, mode: str
) -> None:
    """Store the exchange status the worker just saw, in one ``JobRun`` row kept up to date
    (the database, so every web process sees it, with or without Redis)."""
    from trading.models import JobRun

    now = timezone.now()
    fields = {
        "mode": mode,
        "status": JobRun.Status.OK if reachable else JobRun.Status.FAILED,
        "heartbeat_at": now,
        "finished_at": now,
        "counts": {"exchange_active": int(exchange_active), "trading_active": int(trading_active)},
        "summary": (
            "unreachable"
            if not reachable
            else f"exchange {'active' if exchange_active else 'inactive'}, "
            f"trading {'active' if trading_active else 'paused'}"
        ),
    }
    latest = JobRun.objects.filter(job=EXCHANGE_STATUS_JOB).order_by("-id").values("pk")[:1]
    if not JobRun.objects.filter(pk__in=latest).update(**fields):
        JobRun.objects.create(job=EXCHANGE_STATUS_JOB, started_at=now, **fields)


def exchange_probe(exchange, mode: str) -> bool:
    """Ask ``exchange`` for its status (worker side) and record the answer; True if reachable.

    A failure is recorded by its type only: an exception's text may carry a URL or a header.
    """
    try:
        status = exchange.status()
    except Exception as exc:  # any failure to get an answer means "unreachable"
        logger.warning("Exchange status check failed: %s", type(exc).__name__)
        exchange_status_record(reachable=False, mode=mode)
        return False
    exchange_status_record(
        reachable=True,
        exchange_active=bool(status.exchange_active),
        trading_active=bool(status.trading_active),
        mode=mode,
    )
    return True


# --- Views --------------------------------------------------------------------------------------


def _is_failure(result: HealthCheckResult) -> bool:
    return result.error is not None and not isinstance(result.error, ServiceWarning)


def health_token_matches(request: HttpRequest) -> bool:
    """The request carries HEALTH_TOKEN (Bearer header or ?token=), compared in constant time."""
    expected = settings.HEALTH_TOKEN
    if not expected:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        supplied = request.GET.get("token", "")
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


class HealthPublicView(HealthCheckView):
    """Runs every check and says only whether the service is healthy."""

    checks = HEALTH_CHECKS

    async def get(self, request, *args, **kwargs):
        with self.get_executor() as executor:
            results = await asyncio.gather(
                *(check.get_result(executor) for check in self.get_checks())
            )
        healthy = not any(_is_failure(result) for result in results)
        return JsonResponse(
            {"status": "ok" if healthy else "unhealthy"}, status=200 if healthy else 503
        )


class HealthDetailView(HealthCheckView):
    """Every check and its message (HTML, JSON, text...) for staff or the health token.

    The status is 503 when a check fails and 200 when there are only warnings."""

    checks = HEALTH_CHECKS

    async def dispatch(self, request, *args, **kwargs):
        if not await self._allowed(request):
            return JsonResponse({"detail": "staff session or health token required"}, status=403)
        return await super().dispatch(request, *args, **kwargs)

    async def _allowed(self, request: HttpRequest) -> bool:
        if health_token_matches(request):
            return True
        user = await request.auser()
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return False
        if settings.OTP_REQUIRED:
            return bool(getattr(user, "is_verified", lambda: False)())
        return True

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            failing = any(_is_failure(result) for result in self.results)
            response.status_code = 503 if failing else 200
        return response


# --- Liveness ---------------------------------------------------------------------------------

LIVE_PATH = "/health/live/"


class LivenessMiddleware:
    """First in MIDDLEWARE: answers ``/health/live/`` before host validation, the HTTPS redirect
    and the session, so the container probe needs no Host header, no TLS and no database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == LIVE_PATH and request.method in ("GET", "HEAD"):
            response = HttpResponse("ok\n", content_type="text/plain")
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
