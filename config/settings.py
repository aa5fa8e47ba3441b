"""The one settings module. Every value comes from the environment; see .env.example.

Defaults are safe for a newcomer's machine: embedded SQLite, a local-memory cache, paper
trading (never real orders) and no keys. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY
and ALLOWED_HOSTS.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_choice,
    env_decimal,
    env_int,
    env_list,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, "
            "or set DEBUG=1 for local development only."
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_q",
    "health_check",
    "markets",
    "trading",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Without DATABASE_URL the app runs on one SQLite file shared by the web server and the worker:
# WAL lets readers run beside the writer, busy_timeout makes a writer wait instead of failing
# with "database is locked", and IMMEDIATE transactions take the write lock up front so two
# processes never deadlock upgrading a read lock.
_SQLITE_OPTIONS = {
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;"
    ),
    "transaction_mode": "IMMEDIATE",
}
DATABASE_URL = env_secret("DATABASE_URL")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        # The message never repeats the URL: it may hold a password.
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL ({exc})") from None
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["OPTIONS"] = {**_SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
        _db["CONN_MAX_AGE"] = 0
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "db.sqlite3",
        "OPTIONS": _SQLITE_OPTIONS,
    }
_db.setdefault("TEST", {})
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------
REDIS_URL = env_secret("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "kalshi-desk"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
                # The dashboard keeps serving when Redis is down (it reads the database);
                # /health/ reports the cache as failing. Nothing that guards money uses the cache.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "kalshi-desk",
        }
    }

# --- Task queue -----------------------------------------------------------------------------
# ORM broker: deliveries survive a worker crash (at-least-once), so every job is idempotent
# and guarded by a database lease. timeout < retry so a slow task is never handed out twice
# while still running; max_attempts=1 and ack_failures so a failing job waits for its next
# scheduled slot instead of looping; catch_up=False so downtime does not replay missed slots.
Q_CLUSTER = {
    "name": "kalshi-desk",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": env_int("Q_TIMEOUT", 120),
    "retry": env_int("Q_RETRY", 300),
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "queue_limit": 2,
    "bulk": 1,
    "recycle": 200,
    "max_rss": 400_000,
    "poll": 1,
    "save_limit": 1000,
    "label": "Jobs",
    "sync": env_bool("Q_SYNC", False),
}
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured("Q_TIMEOUT must be smaller than Q_RETRY")

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security -------------------------------------------------------------------------------
HTTPS = env_bool("HTTPS", default=False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health/live/$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", default=False):
    # Only behind a proxy that overwrites X-Forwarded-Proto (see docs/DEPLOYMENT.md).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.logging.SecretsExceptionReporterFilter"

# --- Logging: secrets are redacted from every record ----------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx/httpcore debug output would print request headers (the Kalshi signature).
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# --- Trading --------------------------------------------------------------------------------
# paper is the default: live public data, simulated fills, never a real order.
TRADING_MODE = env_choice("TRADING_MODE", ("replay", "paper", "live"), "paper")
REPLAY_STEP_SECONDS = env_int("REPLAY_STEP", 300)
RECORDED_DATA_DIR = Path(env_str("RECORDED_DATA_DIR") or BASE_DIR / "markets" / "data" / "kalshi")
PAPER_STARTING_BALANCE = env_decimal("PAPER_STARTING_BALANCE", "1000.00")
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("WORKER_HEARTBEAT_MAX_AGE", 300)
# How long one trading cycle may hold the job lease; below Q_TIMEOUT so a killed run's lease
# expires before the queue could hand the job out again.
TRADING_LEASE_TTL_SECONDS = env_int("TRADING_LEASE_TTL", 110)

# --- Kalshi ---------------------------------------------------------------------------------
KALSHI_ENV = env_choice("KALSHI_ENV", ("demo", "prod"), "demo")
KALSHI_BASE_URLS = {
    "demo": "https://external-api.demo.kalshi.co/trade-api/v2",
    "prod": "https://external-api.kalshi.com/trade-api/v2",
}
KALSHI_API_BASE_URL = env_str("KALSHI_API_BASE_URL") or KALSHI_BASE_URLS[KALSHI_ENV]
KALSHI_API_KEY_ID = env_secret("KALSHI_API_KEY_ID")
KALSHI_PRIVATE_KEY_PATH = env_str("KALSHI_PRIVATE_KEY_PATH")
KALSHI_PRIVATE_KEY = env_secret("KALSHI_PRIVATE_KEY")
KALSHI_RATE_TIER = env_choice(
    "KALSHI_RATE_TIER",
    ("basic", "advanced", "expert", "premier", "paragon", "prime", "prestige"),
    "basic",
)
KALSHI_TIMEOUT_SECONDS = env_int("KALSHI_TIMEOUT", 10)

# --- Language models ------------------------------------------------------------------------
LLM_PROVIDER = env_choice(
    "LLM_PROVIDER", ("none", "xai", "openai", "openrouter", "local", "custom"), "none"
)
LLM_BASE_URL = env_str("LLM_BASE_URL")
LLM_MODEL = env_str("LLM_MODEL")
LLM_API_KEY = env_secret("LLM_API_KEY")
LLM_TIMEOUT_SECONDS = env_int("LLM_TIMEOUT", 60)
# market, baseline, llm, recorded, or the dotted path of your own Forecaster class.
FORECASTER = env_str("FORECASTER") or "baseline"
AI_DAILY_BUDGET_DEFAULT = env_decimal("AI_DAILY_BUDGET", "10.00")
if AI_DAILY_BUDGET_DEFAULT < Decimal("0"):
    raise ImproperlyConfigured("AI_DAILY_BUDGET must not be negative")
