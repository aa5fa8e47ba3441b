#!/usr/bin/env bash
# `make image-test`: build the image with no Docker daemon and no image registry, run it against
# the local PostgreSQL and Redis the way compose runs it, and check what a deploy relies on.
#
#   - the build: buildah (chroot isolation, overlay storage, run by root), from Debian's archive;
#     when python:3.11-slim-bookworm is neither stored nor pullable, a stand-in for it is built
#     from Debian's archive with debootstrap and tagged localhost/kalshi-desk-standin-python
#     (never under the real image's name). It stays in podman's storage: later runs reuse it.
#   - the image's packages are exactly requirements.lock (pip freeze against the lock), and a
#     second build with no layer cache installs the same set (pip freeze of both images);
#   - gunicorn starts 3 workers under a 1-CPU limit (cgroup v1 or v2);
#   - containers run non-root, read-only, no-new-privileges, with secrets as files;
#   - three web containers started together apply the migrations exactly once;
#   - /health/live/ 200, the image's HEALTHCHECK passes, a hashed static file is served;
#   - the worker's heartbeat is fresh, and /health/ answers 200 once the worker runs;
#   - `check --deploy` is clean; every log line is JSON (LOG_FORMAT=json);
#   - SIGTERM: web and worker exit 0 within 20 s.
#
# Needs root and PostgreSQL + Redis on 127.0.0.1 (.ci/run starts them). It never reaches Kalshi
# or a language model (TRADING_MODE=replay). Settings (environment):
#   IMAGE_TEST_DB        scratch database, created and dropped here   (default imgci)
#   IMAGE_TEST_REDIS_DB  Redis database number, flushed before and after (default 10)
#   IMAGE_TEST_PORT      first of three loopback ports for web          (default 8410)
#   IMAGE_TEST_DRIVER    storage driver: overlay (default) or vfs
#   IMAGE_TEST_STORAGE   podman/buildah storage, kept between runs      (default below)
#   IMAGE_TEST_MIRROR    Debian mirror for the stand-in (default: the one apt uses)
#   IMAGE_TEST_REBUILD   0 skips the second build (no cache) whose pip freeze must match
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${IMAGE_TEST_DB:-imgci}
REDIS_DB=${IMAGE_TEST_REDIS_DB:-10}
PORT=${IMAGE_TEST_PORT:-8410}
DRIVER=${IMAGE_TEST_DRIVER:-overlay}
STORAGE=${IMAGE_TEST_STORAGE:-/var/lib/containers/kalshi-desk-image-test-$DRIVER}
IMAGE=localhost/kalshi-desk:image-test
UPSTREAM_BASE=docker.io/library/python:3.11-slim-bookworm
STANDIN=localhost/kalshi-desk-standin-python:3.11-bookworm
PG=(-h 127.0.0.1 -p 5432 -U postgres)
started=$SECONDS

say() { printf '=== image-test [%3ds] %s\n' $((SECONDS - started)) "$*"; }
fail() { printf 'image-test FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (buildah and podman with chroot isolation need it)"

# --- 1. Tools: Debian's buildah and podman, installed when missing (never skipped) ---------------
missing=()
for tool in buildah podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian"
    apt-get update -qq || fail "apt-get update failed; cannot install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || fail "could not install ${missing[*]}"
fi
for tool in buildah podman runc; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is still missing"
done
pg_isready "${PG[@]:0:4}" -q || fail "PostgreSQL is not running on 127.0.0.1:5432"
redis-cli -h 127.0.0.1 ping >/dev/null || fail "Redis is not running on 127.0.0.1:6379"

# This test's own container configuration, not the machine's: the kernel's overlay storage
# (IMAGE_TEST_DRIVER=vfs where overlay mounts are not allowed: it works anywhere, but copies
# every layer in full and is many times slower), runc with cgroupfs (no systemd here), and a
# storage folder of its own that persists between runs, so the base image and the build cache
# are reused.
WORK=$(mktemp -d)
mkdir -p "$STORAGE"
cat > "$WORK/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
runroot = "/run/kalshi-desk-image-test-$DRIVER"
graphroot = "$STORAGE"
EOF
cat > "$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf"

WEBS=(imgtest_web1 imgtest_web2 imgtest_web3)
# Without systemd, podman reports an error for every container's health-check timer (it cannot
# schedule one); the image's HEALTHCHECK is run explicitly below. That noise goes to a file.
quiet() { "$@" 2>> "$WORK/podman.log"; }
cleanup() {
    local status=$?
    if [ "$status" != 0 ] && [ -d "$WORK/logs" ]; then
        for name in "${WEBS[@]}" imgtest_worker; do
            podman logs "$name" > "$WORK/logs/$name.log" 2>&1 || true
            echo "--- last lines of $name" >&2
            tail -n 15 "$WORK/logs/$name.log" >&2 || true
        done
    fi
    podman rm -f --ignore -t 0 "${WEBS[@]}" imgtest_worker >/dev/null 2>&1 || true
    [ "$status" = 0 ] || [ ! -s "$WORK/podman.log" ] || grep -v 'systemd' "$WORK/podman.log" >&2 || true
    dropdb "${PG[@]}" --if-exists "$DB" >/dev/null 2>&1 || true
    redis-cli -h 127.0.0.1 -n "$REDIS_DB" flushdb >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# --- 2. The base image: the real one if stored or pullable, else the stand-in -------------------
if podman image exists "$UPSTREAM_BASE"; then
    BASE=$UPSTREAM_BASE
elif podman image exists "$STANDIN"; then
    BASE=$STANDIN
    say "base image: the stand-in stored by an earlier run ($STANDIN)"
elif timeout 60 podman pull -q "$UPSTREAM_BASE" >/dev/null 2>&1; then
    BASE=$UPSTREAM_BASE
else
    say "$UPSTREAM_BASE cannot be pulled: building the stand-in $STANDIN with debootstrap"
    BASE=$STANDIN
    # The mirror apt uses here (one-line or deb822 sources), not a security archive.
    mirror=${IMAGE_TEST_MIRROR:-$( { grep -hE '^(deb|URIs:) ' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
        | grep -oE 'https?://[^ ]+' | grep -v -- '-security' | head -n1 || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs="$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
        bookworm "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap from $mirror failed"; }
    # What the Dockerfile expects of python:3.11-slim: python and pip in /usr/local/bin, pip
    # allowed to install into the system Python (no PEP 668 marker).
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
    printf '#!/bin/sh\nexec /usr/bin/python3 -m pip "$@"\n' > "$rootfs/usr/local/bin/pip"
    chmod 0755 "$rootfs/usr/local/bin/pip"
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    # The machine's extra certificate authorities (a TLS-inspecting proxy to the package index),
    # so pip in the build can reach it as the host does. Test-only image: never published.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c --numeric-owner . | podman import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL org.opencontainers.image.description=stand-in for python:3.11-slim-bookworm, built by docker/image-test.sh' \
        --change 'CMD ["python3"]' - "$STANDIN" > "$WORK/import.log" 2>&1 \
        || { cat "$WORK/import.log" >&2; fail "podman import of the stand-in failed"; }
    rm -rf "$rootfs"
fi

# --- 3. Build: docker format keeps HEALTHCHECK; --layers reuses unchanged steps -----------------
say "building $IMAGE from $BASE"
build_started=$SECONDS
buildah bud --quiet --isolation chroot --network host --pull=never --format docker --layers \
    --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; fail "the image did not build"; }
say "built in $((SECONDS - build_started)) s"
# Old builds' layers are released (the cache of this build stays: it belongs to the tagged image).
podman image prune -f >/dev/null 2>&1 || true

# The image holds exactly the locked package set (the same set on every build).
quiet podman run --rm --entrypoint pip "$IMAGE" freeze --disable-pip-version-check \
    > "$WORK/freeze.txt"
python3 docker/lock_freeze.py requirements.lock "$WORK/freeze.txt" \
    "$(quiet podman run --rm --entrypoint python "$IMAGE" -c 'import platform; print(platform.python_version())')" \
    || fail "the image's packages are not the locked set"
# A second build from scratch (no cached layer, every wheel downloaded again) must install the
# same package set as the first.
if [ "${IMAGE_TEST_REBUILD:-1}" = 1 ]; then
    say "rebuilding without the layer cache"
    buildah bud --quiet --isolation chroot --network host --pull=never --format docker \
        --no-cache --build-arg "PYTHON_IMAGE=$BASE" -t "$IMAGE-rebuild" . \
        > "$WORK/rebuild.log" 2>&1 || { tail -n 40 "$WORK/rebuild.log" >&2; fail "the rebuild failed"; }
    quiet podman run --rm --entrypoint pip "$IMAGE-rebuild" freeze --disable-pip-version-check \
        > "$WORK/freeze-rebuild.txt"
    diff -u "$WORK/freeze.txt" "$WORK/freeze-rebuild.txt" \
        || fail "two builds installed different package sets"
    say "two builds, identical package sets ($(wc -l < "$WORK/freeze.txt") packages)"
    podman rmi "$IMAGE-rebuild" >/dev/null
fi

# --- 4. Run: as compose runs it (read-only, secrets as files), on this host's network ----------
mkdir -m 0700 "$WORK/secrets" "$WORK/logs"
for name in secret_key health_token; do
    python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > "$WORK/secrets/$name"
done
for name in postgres_password redis_password kalshi_api_key_id kalshi_private_key llm_api_key; do
    : > "$WORK/secrets/$name"
done
chown 10001:10001 "$WORK"/secrets/*
chmod 0400 "$WORK"/secrets/*
dropdb "${PG[@]}" --if-exists "$DB" >/dev/null 2>&1 || true
createdb "${PG[@]}" "$DB"
redis-cli -h 127.0.0.1 -n "$REDIS_DB" flushdb >/dev/null

run_args=(--network host --read-only --read-only-tmpfs=false --tmpfs /tmp
    --security-opt no-new-privileges --cpus 1
    -e ALLOWED_HOSTS=localhost -e HTTPS=1 -e TRUST_X_FORWARDED_PROTO=1
    -e TRADING_MODE=replay -e LOG_FORMAT=json
    -e "DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB"
    -e "REDIS_URL=redis://127.0.0.1:6379/$REDIS_DB")
for name in secret_key health_token postgres_password redis_password kalshi_api_key_id \
    kalshi_private_key llm_api_key; do
    variable=$(tr '[:lower:]' '[:upper:]' <<< "$name")
    [ "$name" = postgres_password ] && variable=DATABASE_PASSWORD
    run_args+=(-v "$WORK/secrets/$name:/run/secrets/$name:ro" -e "${variable}_FILE=/run/secrets/$name")
done

podman rm -f --ignore -t 0 "${WEBS[@]}" imgtest_worker >/dev/null 2>&1
say "starting three web containers at once"
for i in 0 1 2; do
    port=$((PORT + i))
    quiet podman run -d --name "${WEBS[$i]}" "${run_args[@]}" -e "GUNICORN_BIND=127.0.0.1:$port" \
        -e "HEALTHCHECK_URL=http://127.0.0.1:$port/health/live/" "$IMAGE" web >/dev/null &
done
wait
for i in 0 1 2; do
    port=$((PORT + i))
    for _ in $(seq 180); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/health/live/" 2>/dev/null && break
        [ "$(podman inspect -f '{{.State.Running}}' "${WEBS[$i]}")" = true ] \
            || fail "${WEBS[$i]} exited"
        sleep 1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health/live/" \
        || fail "${WEBS[$i]}: /health/live/ is not 200"
done
say "three web containers answer /health/live/ 200"

for name in "${WEBS[@]}"; do
    [ "$(podman exec "$name" id -u)" = 10001 ] || fail "$name does not run as uid 10001"
done
applied=0
for name in "${WEBS[@]}"; do
    podman logs "$name" > "$WORK/logs/$name.log" 2>&1
    count=$(grep -c 'Applying trading.0001_initial' "$WORK/logs/$name.log" || true)
    applied=$((applied + count))
done
[ "$applied" = 1 ] || fail "trading.0001_initial was applied $applied times by three web containers"
rows=$(psql "${PG[@]}" -d "$DB" -tAc \
    "SELECT count(*) FROM django_migrations WHERE app = 'trading' AND name = '0001_initial'")
[ "$rows" = 1 ] || fail "django_migrations has $rows rows for trading.0001_initial"
# Each container is limited to one CPU: gunicorn starts (2 x 1) + 1 = 3 workers, not one per
# core of the host (the limit is read from cgroup v1 or v2, whichever the host has).
booted=$(grep -c 'Booting worker' "$WORK/logs/${WEBS[0]}.log" || true)
[ "$booted" = 3 ] || fail "gunicorn started $booted workers under a 1-CPU limit, not 3"
say "non-root; migrations applied once by three web containers"

podman healthcheck run "${WEBS[0]}" || fail "the image's HEALTHCHECK fails"
podman exec "${WEBS[0]}" python manage.py check --deploy --fail-level WARNING \
    > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; fail "check --deploy is not clean"; }

headers=(-H 'Host: localhost' -H 'X-Forwarded-Proto: https')
curl -fsS "${headers[@]}" -o "$WORK/login.html" "http://127.0.0.1:$PORT/accounts/login/" \
    || fail "the login page is not served"
css=$(grep -oE -m1 '/static/css/app\.[0-9a-f]{12}\.css' "$WORK/login.html") \
    || fail "the login page links no hashed stylesheet"
curl -fsS "${headers[@]}" -D "$WORK/css.headers" -o /dev/null "http://127.0.0.1:$PORT$css" \
    || fail "the hashed stylesheet $css is not served"
grep -qi 'cache-control:.*max-age=315360000' "$WORK/css.headers" \
    || fail "the hashed stylesheet is not cached for long"
say "HEALTHCHECK, check --deploy, hashed static file $css"

say "starting the worker"
quiet podman run -d --name imgtest_worker "${run_args[@]}" "$IMAGE" worker >/dev/null
for _ in $(seq 180); do
    podman exec imgtest_worker /app/docker/entrypoint.sh worker-health 2>/dev/null && break
    [ "$(podman inspect -f '{{.State.Running}}' imgtest_worker)" = true ] || fail "the worker exited"
    sleep 1
done
podman exec imgtest_worker /app/docker/entrypoint.sh worker-health \
    || fail "the worker's heartbeat never became fresh"
status=000
for _ in $(seq 60); do
    status=$(curl -sS "${headers[@]}" -o "$WORK/health.json" -w '%{http_code}' \
        "http://127.0.0.1:$PORT/health/" || true)
    [ "$status" = 200 ] && break
    sleep 1
done
[ "$status" = 200 ] || fail "/health/ answered $status with the worker running: $(cat "$WORK/health.json")"
curl -fsS "${headers[@]}" -H "Authorization: Bearer $(cat "$WORK/secrets/health_token")" \
    -o "$WORK/detail.json" "http://127.0.0.1:$PORT/health/detail/?format=json" \
    || fail "/health/detail/ is not 200: $(cat "$WORK/detail.json")"
grep -q '"WorkerHeartbeat()": "OK"' "$WORK/detail.json" || fail "web does not see the heartbeat"
say "worker heartbeat fresh; /health/ 200"

# --- 5. Stop: SIGTERM, exit 0, well within 20 s -----------------------------------------------
stops=()
for name in imgtest_worker "${WEBS[@]}"; do
    stop_started=${EPOCHREALTIME/./}
    quiet podman stop -t 60 "$name" >/dev/null
    took_ms=$(( (${EPOCHREALTIME/./} - stop_started) / 1000 ))
    stops+=("$name ${took_ms}ms")
    code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || fail "$name exited $code on SIGTERM"
    [ "$took_ms" -lt 20000 ] || fail "$name took ${took_ms} ms to stop on SIGTERM"
    podman logs "$name" > "$WORK/logs/$name.log" 2>&1
done
say "SIGTERM: every container exited 0 within 20 s (${stops[*]})"

# LOG_FORMAT=json: every line any container printed is one JSON object.
python3 - "$WORK"/logs/*.log <<'PY' || fail "a container printed a line that is not JSON"
import json
import sys

for path in sys.argv[1:]:
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError:
                sys.exit(f"{path}:{number}: not JSON: {line.strip()[:200]}")
PY

say "passed"
