# The one image for the web server and the worker: docker/entrypoint.sh picks the
# process. Build: docker compose build  (or: docker build -t kalshi-desk .)
# No `# syntax=` line on purpose: it makes BuildKit fetch a frontend image from a registry before
# building, which fails offline or behind a mirror. The built-in frontend reads this file as is.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Stage 1: the wheels of requirements.lock, every one checked against its hash ---------------
FROM ${PYTHON_IMAGE} AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /wheels
# Only the lock file (every dependency, transitive ones too, with hashes; `make lock` writes it):
# code changes do not invalidate this layer, and every build gets the same package set.
COPY requirements.lock ./
RUN pip wheel --require-hashes --no-deps --wheel-dir /wheels -r requirements.lock

# --- Stage 2: the slim runtime, no compiler, no pip cache, non-root ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles \
    STATICFILES_MANIFEST=1 \
    LOG_FORMAT=json \
    GUNICORN_BIND=0.0.0.0:8000

RUN groupadd --system --gid 10001 desk \
    && useradd --system --uid 10001 --gid desk --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin desk

# Install from the wheels of stage 1 only (no index), hashes checked again: the image gets
# exactly the locked set, nothing more (--no-deps), and `pip check` proves it is complete.
# The wheels are copied in, not bind-mounted from stage 1: buildah's layer cache resolved such a
# mount to the wheels of an earlier build (an image without a newly locked package). The copy
# costs the wheels' size in one lower layer; the install is then exactly this build's lock.
COPY --from=wheels /wheels /tmp/wheels
RUN pip install --no-index --find-links=/tmp/wheels --require-hashes --no-deps \
        -r /tmp/wheels/requirements.lock \
    && pip check \
    && rm -rf /tmp/wheels

WORKDIR /app
# Code and data belong to root and are read-only for the app user.
COPY . .
# Static files are collected (hashed and compressed) at build. The SECRET_KEY here exists only
# for this one command, so settings can load; it is not in the image's environment and the
# running containers get their own from a Docker secret.
RUN SECRET_KEY=build-time-collectstatic-only DEBUG=0 \
        python manage.py collectstatic --noinput -v0 \
    && python -m compileall -q /app \
    && chmod 0755 docker/entrypoint.sh \
    && mkdir -p /app/var \
    && chown desk:desk /app/var

USER desk:desk
EXPOSE 8000

# Liveness of the web process: no secret, no Host header, no TLS and no database needed
# (/health/live/ is answered before all of them). Full health is /health/ and /health/detail/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8000/health/live/'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
