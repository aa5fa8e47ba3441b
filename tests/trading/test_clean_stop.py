"""Clean stops: the demo's processes (gunicorn and ``manage.py worker`` over qcluster, started by
``docker/serve-demo.sh`` as ``make demo`` does) on a temporary SQLite database and a free port,
with a replay burst in progress, are all gone within 20 s of SIGTERM, SIGINT or SIGHUP to their
process group, or of SIGTERM to the script alone.

Every process started carries a marker in its environment, so the test finds each one, even
one orphaned into another process group, through /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMALL = ROOT / "tests" / "data" / "recorded-small"
STOP_LIMIT = 20.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(marker: str) -> list[int]:
    """The pids of every live process whose environment holds ``marker``."""
    found = []
    needle = f"KD_STOP_TEST={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie has exited: only its parent's wait is missing
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    env = _env(tmp, "setup")
    for args in (
        ["migrate", "-v0"],
        ["load_recorded_markets", "--data", str(SMALL), "--no-progress"],
        ["set_risk", "skill_min_settled=0"],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    return tmp


def _env(tmp: Path, marker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / 'demo.sqlite3'}",
        TRADING_MODE="replay",
        FORECASTER="baseline",
        DEBUG="0",
        SECRET_KEY="stop-test-secret-key-0123456789-abcdefghijklmnopqr",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CACHE_DIR=str(tmp / "cache"),
        Q_WORKERS="1",
        KD_STOP_TEST=marker,
    )
    return env


def _wait_for(check, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [
        (signal.SIGTERM, True),
        (signal.SIGINT, True),
        (signal.SIGHUP, True),
        (signal.SIGTERM, False),
    ],
    ids=["TERM-group", "INT-group", "HUP-group", "TERM-script"],
)
def test_the_demo_stops_within_20_seconds(demo_db, signum, whole_group):
    marker = uuid.uuid4().hex
    env = _env(demo_db, marker)
    db = demo_db / "demo.sqlite3"
    # A trading cycle queued for the worker at once (a replay burst of up to 90 s).
    queued = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django_q.tasks import async_task; "
            "async_task('trading.tasks.run_trading_cycle', 'replay')",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert queued.returncode == 0, queued.stderr
    port = _free_port()
    demo = subprocess.Popen(
        ["docker/serve-demo.sh", str(BIN), str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def cycle_running() -> bool:
            with sqlite3.connect(db, timeout=5) as conn:
                row = conn.execute(
                    "SELECT COUNT(*) FROM trading_jobrun WHERE job = 'trading_cycle' "
                    "AND status = 'running'"
                ).fetchone()
            return row[0] > 0

        def web_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert _wait_for(web_up, 60), "gunicorn did not start"
        assert _wait_for(cycle_running, 60), "no cycle started"
        assert len(_marked(marker)) >= 5  # script, gunicorn + workers, supervisor, qcluster...

        started = time.monotonic()
        if whole_group:
            os.killpg(demo.pid, signum)
        else:
            os.kill(demo.pid, signum)
        gone = _wait_for(lambda: not _marked(marker), STOP_LIMIT)
        elapsed = time.monotonic() - started
        assert gone, f"still running after {STOP_LIMIT} s: {_marked(marker)}"
        assert demo.wait(timeout=1) is not None
    finally:
        for pid in _marked(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # The cycle in progress was finished or abandoned through the normal protocol.
    with sqlite3.connect(db) as conn:
        statuses = {r[0] for r in conn.execute("SELECT status FROM trading_jobrun")}
    assert "running" not in statuses or _abandoned_on_restart(env), statuses
    print(f"{'group' if whole_group else 'script'} {signal.Signals(signum).name}: {elapsed:.1f} s")


def _abandoned_on_restart(env: dict[str, str]) -> bool:
    """A cycle cut off by SIGKILL stays "running" until the next look: trading_status marks it
    abandoned (its process is gone)."""
    status = subprocess.run(
        [sys.executable, "manage.py", "trading_status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return "abandoned" in status.stdout
