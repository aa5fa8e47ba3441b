"""Signals the trading app sends, so that layers above it (the dashboard) can react without
``trading`` importing them."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after every trading-cycle job run (whatever its outcome), with ``mode`` and ``summary``.
cycle_finished = Signal()
