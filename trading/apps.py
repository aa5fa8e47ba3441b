from __future__ import annotations

import gc

from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        # Everything imported so far (modules, models, settings, the admin) lives as long as
        # the process. Frozen, it is left out of the garbage collector's full passes, which
        # otherwise re-walk ~100,000 objects whenever a cycle has built a few thousand rows
        # (about 80 ms each on this machine); forked workers also keep sharing those pages.
        gc.freeze()
