"""gunicorn settings: ``gunicorn config.wsgi -c gunicorn.conf.py``. Every value can be changed
from the environment (docs/DEPLOYMENT.md lists them).

Sync workers: each serves one request at a time, so gunicorn must sit behind a buffering proxy
(nginx) that absorbs slow clients. ``forwarded_allow_ips`` names the proxies whose
X-Forwarded-Proto gunicorn believes; never ``*`` unless only the proxy can reach gunicorn.
"""

from __future__ import annotations

import os
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


# Where the container's own cgroup is mounted (Docker and podman give it a cgroup namespace).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_cpu_limit(root: Path) -> int | None:
    """The CPU quota of the cgroup at ``root`` in whole cores (rounded up), or None: cgroup v2's
    ``cpu.max`` ("<quota> <period>" or "max <period>"), else cgroup v1's ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` (quota -1: no limit) in the cpu controller's folder."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        folder = root / controller
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return max(1, -(-quota // period)) if quota > 0 and period > 0 else None
    return None


def cpu_count(cgroup_root: Path | None = None) -> int:
    """Cores this process may use: the CPU affinity, lowered by a cgroup v2 or v1 quota (a
    container's ``cpus:`` limit), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root or CGROUP_ROOT)
    if limit is not None:
        cores = min(cores, limit)
    return max(1, cores)


def worker_count() -> int:
    """GUNICORN_WORKERS (or the conventional WEB_CONCURRENCY) if set; else (2 x cores) + 1,
    capped at GUNICORN_MAX_WORKERS (default 8: workers are processes, not clients)."""
    explicit = _int("GUNICORN_WORKERS", 0) or _int("WEB_CONCURRENCY", 0)
    if explicit > 0:
        return explicit
    return max(2, min(2 * cpu_count() + 1, _int("GUNICORN_MAX_WORKERS", 8)))


wsgi_app = "config.wsgi:application"
# 127.0.0.1 outside a container (the proxy is on the same host); the image sets 0.0.0.0:8000,
# reachable only on the compose network.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = worker_count()
threads = _int("GUNICORN_THREADS", 1)
worker_class = "gthread" if threads > 1 else "sync"
# A worker silent this long is killed and replaced (a request that hangs).
timeout = _int("GUNICORN_TIMEOUT", 30)
# On TERM/HUP, workers get this long to finish their requests.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle each worker after about this many requests (a guard against slow leaks), staggered.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# Worker heartbeats on disk can stall under I/O load; tmpfs cannot.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# False, so HUP reloads the application code.
preload_app = False
# gunicorn's runtime control socket (``gunicornc``): off unless a path is given, so two
# gunicorns on one host never fight over ~/.gunicorn/gunicorn.ctl.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "").strip() or None
control_socket_disable = control_socket is None
if control_socket is None:
    del control_socket
limit_request_line = 8190
limit_request_fields = 100

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# The path without its query string (%(U)s): a ?token= never reaches the log. The first field is
# the X-Forwarded-For the proxy set, then the proxy's own address.
access_log_format = '%({x-forwarded-for}i)s %(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json":
    # gunicorn's own lines (start-up, worker exits, access) as JSON, redacted like the app's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "config.logging.RedactSecretsFilter"}},
        "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["redact"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "gunicorn.error": {
                "handlers": ["console"],
                "level": loglevel.upper(),
                "propagate": False,
            },
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
    }
