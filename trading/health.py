"""This project's own /health/ checks (django-health-check v4 classes).

Messages are written here, never copied from exceptions, so no secret can leak through them.
Checks run their ORM work through ``sync_to_async`` on the request's own thread.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning


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


HEALTH_CHECKS = (
    "health_check.checks.Database",
    "health_check.checks.Cache",
    "trading.health.WorkerHeartbeat",
    "trading.health.TradingStateCheck",
)
