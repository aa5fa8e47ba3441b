# syntax=docker/dockerfile:1.7
# The one image for the web server and the worker (STYLE G20): docker/entrypoint.sh picks the
# process. Build: docker compose build  (or: docker build -t kalshi-desk .)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Stage 1: wheels for every dependency pinned in pyproject.toml -------------------------------
FROM ${PYTHON_IMAGE} AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
# Only the dependency list: code changes do not invalidate this layer.
COPY pyproject.toml ./
RUN pip wheel --wheel-dir /wheels .

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

# Install from the wheels of stage 1 only (no index): the image gets exactly the pinned set.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels kalshi-trading-desk

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
