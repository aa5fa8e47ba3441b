#!/bin/sh
# The web server and the worker together, as `make demo` runs them (from the repository root):
#     docker/serve-demo.sh .venv/bin 8000
# SIGTERM, SIGINT or SIGHUP to this script or to its whole process group stops both within
# 20 s: gunicorn stops gracefully and `manage.py worker` (the qcluster supervisor) finishes or
# abandons the cycle in progress. Nothing is left running.
BIN="${1:?usage: serve-demo.sh BIN_DIR [PORT]}"
PORT="${2:-8000}"
web=
worker=
stop() {
    trap '' INT TERM HUP  # one stop at a time
    kill -TERM $web $worker 2>/dev/null
    wait
    exit 0
}
trap stop INT TERM HUP
"$BIN/python" manage.py worker &
worker=$!
"$BIN/gunicorn" config.wsgi --bind "127.0.0.1:$PORT" --workers 2 --access-logfile - &
web=$!
wait
