#!/bin/sh
# One entrypoint for every container of the image (docs/ARCHITECTURE.md, Conventions).
#
#   web            migrate + setup_schedules (once, under a PostgreSQL advisory lock), then
#                  exec gunicorn. Deploy steps live here only: the worker never migrates.
#   worker         exec the django-q2 cluster (it waits in compose until web is healthy, so
#                  the schema is current).
#   dev            the deploy steps, then runserver with auto-reload (compose.dev.yml).
#   worker-health  exit 0 when the newest job heartbeat is fresh (the worker's healthcheck).
#   <program>      any program on PATH (sh, python, ...) runs as given.
#   <command>      anything else is a manage.py command: `docker compose run --rm web createsuperuser`.
set -eu

cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings}"

deploy_steps() {
    # Several web replicas may start at once: the first takes the lock and migrates, the others
    # wait and then find nothing to do. On SQLite (one machine) no lock is needed.
    # Their output goes through logging (logger "deploy"), so LOG_FORMAT=json covers it too.
    python - <<'PY'
import logging

import django

django.setup()
logging.captureWarnings(True)
from django.core.management import call_command
from django.db import connection

from config.logging import LogLines

log = logging.getLogger("deploy")
output = {"stdout": LogLines(log), "stderr": LogLines(log, logging.WARNING), "no_color": True}
LOCK = 0x4B44_0001  # "KD" + 1: this project's migration lock
locked = connection.vendor == "postgresql"
if locked:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK])
try:
    call_command("migrate", interactive=False, verbosity=1, **output)
    call_command("setup_schedules", **output)
finally:
    for stream in output.values():
        if isinstance(stream, LogLines):
            stream.flush()
    if locked:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK])
PY
}

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
    web)
        if [ "${MIGRATE_ON_START:-1}" = "1" ]; then
            deploy_steps
        fi
        exec gunicorn -c gunicorn.conf.py "$@"
        ;;
    worker)
        exec python manage.py worker "$@"
        ;;
    dev)
        deploy_steps
        exec python manage.py runserver "${DEV_BIND:-0.0.0.0:8000}" "$@"
        ;;
    worker-health)
        exec python - <<'PY'
import sys
from datetime import timedelta

import django

django.setup()
from django.conf import settings
from django.utils import timezone

from trading.models import JobRun

last = JobRun.objects.order_by("-heartbeat_at").values_list("heartbeat_at", flat=True).first()
limit = timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS)
sys.exit(0 if last is not None and timezone.now() - last <= limit else 1)
PY
        ;;
    manage|manage.py)
        exec python manage.py "$@"
        ;;
    *)
        if command -v "$role" >/dev/null 2>&1; then
            exec "$role" "$@"
        fi
        exec python manage.py "$role" "$@"
        ;;
esac
