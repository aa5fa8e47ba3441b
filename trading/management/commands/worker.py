"""``manage.py worker``: the django-q2 worker (``qcluster``) under a supervisor that stops it
within ``STOP_SECONDS`` however it is signalled.

Why: qcluster stops cleanly only on SIGINT to its main process. SIGTERM to its whole process
group (what ``timeout``, systemd's ``KillMode=control-group`` and a closing terminal send) kills
its sentinel at once (the sentinel keeps SIGTERM's default) while the main process waits on
the sentinel's shared ``Event``: it hangs in a futex wait, with orphaned children. And a plain
SIGTERM to the main process waits for the task in progress, however long it takes.

So qcluster runs here in its own process group, where no outside signal reaches it, and any of
SIGTERM, SIGINT or SIGHUP to this supervisor (or to its group) is turned into the one stop that
works: SIGINT to qcluster's group. The main process stops the cluster; a worker in a replay
burst ends it after the cycle in progress (``trading.tasks``); idle processes ignore it. If the
cluster is still there after ``GRACE_SECONDS`` it gets SIGTERM, then SIGKILL: a cycle cut off
that way is one whose process died, and the next run abandons it and takes its lease over
(``trading.services.runs_abandon``). Whatever is left in the group is killed at the end, so
nothing is orphaned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Through logging, so LOG_FORMAT=json covers the supervisor's lines too.
logger = logging.getLogger("trading.worker")

GRACE_SECONDS = 12.0  # SIGINT: finish the cycle in progress
TERM_SECONDS = 3.0  # then SIGTERM, then SIGKILL
STOP_SECONDS = GRACE_SECONDS + TERM_SECONDS  # under 20 s from the first signal to the end
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: qcluster gets SIGINT if this supervisor itself is killed (even by SIGKILL)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


class Command(BaseCommand):
    help = (
        "Run the worker (django-q2 qcluster) so that SIGTERM, SIGINT or SIGHUP stop it within "
        f"{STOP_SECONDS:.0f} s, finishing or abandoning the cycle in progress."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "qcluster_args", nargs="*", help="passed to qcluster (after --)", default=[]
        )

    def handle(self, *args: Any, qcluster_args: list[str], **options: Any) -> None:
        stop_asked: list[int] = []

        def ask_stop(signum: int, frame: Any) -> None:
            stop_asked.append(signum)

        previous = {sig: signal.signal(sig, ask_stop) for sig in STOP_SIGNALS}
        manage = str(settings.BASE_DIR / "manage.py")
        child = subprocess.Popen(
            [sys.executable, manage, "qcluster", *qcluster_args], preexec_fn=_die_with_parent
        )
        pgid = child.pid  # setsid made it the leader of its own group
        try:
            code = self._supervise(child, pgid, stop_asked)
        finally:
            _signal_group(pgid, signal.SIGKILL)  # nothing of the cluster outlives it
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stop_asked:
            name = signal.Signals(stop_asked[0]).name
            logger.info("worker: stopped on %s (qcluster exit code %s)", name, code)
            return
        raise CommandError(f"qcluster exited on its own with code {code}", returncode=code or 1)

    def _supervise(self, child: subprocess.Popen, pgid: int, stop_asked: list[int]) -> int:
        deadline: float | None = None
        escalated = False
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if stop_asked and deadline is None:
                _signal_group(pgid, signal.SIGINT)
                deadline = time.monotonic() + GRACE_SECONDS
            elif deadline is not None and time.monotonic() > deadline:
                if escalated:
                    _signal_group(pgid, signal.SIGKILL)
                    return child.wait()
                logger.warning("worker: still running after SIGINT; SIGTERM")
                _signal_group(pgid, signal.SIGTERM)
                deadline, escalated = time.monotonic() + TERM_SECONDS, True
