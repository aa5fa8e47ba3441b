from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from trading import services
from trading.exchanges import exchange_for


class Command(BaseCommand):
    help = (
        "Reconcile orders, fills, positions and balance against the exchange now. Exits 0 when "
        "the run finished, 1 when it failed, 75 when another run holds the lease."
    )

    def handle(self, *args, **options) -> str:
        mode = settings.TRADING_MODE

        def work(run, token):
            exchange = exchange_for(mode)
            return services.reconcile_run(exchange=exchange, mode=mode, now=exchange.now(), run=run)

        return services.job_exit(services.run_job("reconcile", mode, work))
