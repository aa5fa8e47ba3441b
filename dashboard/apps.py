from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        from dashboard.cache import reset_generation_key
        from trading.signals import cycle_finished

        def invalidate(**kwargs) -> None:
            # Every cycle changes what the pages show: cached parts are rebuilt on demand.
            reset_generation_key()

        cycle_finished.connect(invalidate, weak=False, dispatch_uid="dashboard-invalidate-cache")
