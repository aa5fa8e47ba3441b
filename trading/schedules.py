"""The django-q2 schedules, declared in code and synced by ``manage.py setup_schedules``."""

from __future__ import annotations

PREFIX = "kd:"

SCHEDULES = [
    {
        "name": f"{PREFIX}trading_cycle",
        "func": "trading.tasks.run_trading_cycle",
        "schedule_type": "I",
        "minutes": 1,
    },
    {
        "name": f"{PREFIX}heartbeat",
        "func": "trading.tasks.heartbeat",
        "schedule_type": "I",
        "minutes": 1,
    },
]
