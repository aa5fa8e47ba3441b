"""The one settings module. Every value comes from the environment; see .env.example.

Defaults are safe for a newcomer's machine: embedded SQLite, a local-memory cache, paper
trading (never real orders) and no keys. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY
and ALLOWED_HOSTS.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
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
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "markets",
    "trading",
    "dashboard",
]

MIDDLEWARE = [
    # Content-Security-Policy and Permissions-Policy on every response, the liveness answer
    # too (see "Security"); headers only, no I/O.
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    # Answers /health/live/ before host validation and the SSL redirect (the container probe
    # speaks plain HTTP to 127.0.0.1); no I/O.
    "trading.health.LivenessMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # 400 for a NUL byte in the path or query, or an out-of-range date part in a lookup.
    "config.params.ParameterGuardMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.security.OTPRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a lockout into its 429 answer.
    "axes.middleware.AxesMiddleware",
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
                "config.passwords.context",
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
DATABASE_PASSWORD = env_secret("DATABASE_PASSWORD")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        # The message never repeats the URL: it may hold a password.
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL ({exc})") from None
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["OPTIONS"] = {**_SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
        _db["CONN_MAX_AGE"] = 0
    # The password may live apart from the URL (DATABASE_PASSWORD_FILE, a Docker secret), so
    # the URL itself can sit in a compose file without a secret in it.
    if DATABASE_PASSWORD:
        _db["PASSWORD"] = DATABASE_PASSWORD
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
# Like DATABASE_PASSWORD: kept out of the URL when it comes from a secret file.
REDIS_PASSWORD = env_secret("REDIS_PASSWORD")
if REDIS_URL:
    _redis_options = {
        "CLIENT_CLASS": "django_redis.client.DefaultClient",
        "SOCKET_CONNECT_TIMEOUT": 2,
        "SOCKET_TIMEOUT": 2,
        # The dashboard keeps serving when Redis is down (it reads the database);
        # /health/ reports the cache as failing. Nothing that guards money uses the cache.
        "IGNORE_EXCEPTIONS": True,
    }
    if REDIS_PASSWORD:
        _redis_options["PASSWORD"] = REDIS_PASSWORD
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "kalshi-desk"),
            "OPTIONS": _redis_options,
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
elif CACHE_DIR := env_str("CACHE_DIR"):
    # One machine without Redis (the demo): a file cache the web server and the worker share,
    # so each trading cycle's invalidation reaches every web process at once.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(BASE_DIR / CACHE_DIR),  # an absolute CACHE_DIR stays as it is
        }
    }
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
# The lockout check (django-axes) runs first, then the ordinary username/password check.
AUTHENTICATION_BACKENDS = [
    "config.security.LoginThrottleBackend",
    # Django's ModelBackend, reading a user's permissions in one query (trading.roles).
    "trading.roles.RoleBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Outside VAR_DIR in the image (/app/staticfiles), so a volume on var/ never hides a new build's
# files.
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed file names with far-future caching (WhiteNoise). Needs collectstatic before
# the first request, so it is an explicit switch: on in the image, off for tests and runserver.
STATICFILES_MANIFEST = env_bool("STATICFILES_MANIFEST", default=False)
if DEBUG:
    _static_backend = "django.contrib.staticfiles.storage.StaticFilesStorage"
elif STATICFILES_MANIFEST:
    _static_backend = "whitenoise.storage.CompressedManifestStaticFilesStorage"
else:
    _static_backend = "whitenoise.storage.CompressedStaticFilesStorage"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": _static_backend},
}

# --- Security -------------------------------------------------------------------------------
# HTTPS=1 in production (behind a TLS proxy): HSTS, redirect to https, cookies only over TLS.
HTTPS = env_bool("HTTPS", default=False)
# Sessions are read from the cache (Redis in production) and written through to the database,
# so a dashboard request costs no session query while the cache holds it.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health/live/$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = HTTPS and env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Never trust a client-supplied Host rewrite (django commit c613af4).
USE_X_FORWARDED_HOST = False
if env_bool("TRUST_X_FORWARDED_PROTO", default=False):
    # Only behind a proxy that overwrites X-Forwarded-Proto (docker/nginx.conf does) and when
    # nothing else can reach the app server (see docs/DEPLOYMENT.md).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if HTTPS:
    for _origin in CSRF_TRUSTED_ORIGINS:
        if "://" not in _origin:
            raise ImproperlyConfigured(
                f"CSRF_TRUSTED_ORIGINS entries need a scheme (https://host), got {_origin!r}"
            )
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.logging.SecretsExceptionReporterFilter"

# Content-Security-Policy (django-csp): everything from this origin only. No inline script,
# style attribute or event handler runs; pages keep theirs in static/ (json_script data blocks
# are not executed, so they need no exception). frame-ancestors repeats X-Frame-Options.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Permissions-Policy (django-permissions-policy): no page uses a device or sensor.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "usb",
        "xr-spatial-tracking",
    )
}

# --- Mail and password reset ----------------------------------------------------------------
# Mail is configured when EMAIL_HOST is set, or EMAIL_BACKEND names a backend that sends
# (not the console or dummy one). Without it nothing tries to send, and the password reset
# pages answer 404 (the login page shows no link): an administrator sets a new password with
# `manage.py changepassword`. With it, the reset form goes through the login lockout.
EMAIL_HOST = env_str("EMAIL_HOST") or ""
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "kalshi-desk@localhost")
_MAIL_OFF = (
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
)
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else _MAIL_OFF[1]
)
PASSWORD_RESET_ENABLED = EMAIL_BACKEND not in _MAIL_OFF

# Addresses of the reverse proxies in front of the app server (IPs or networks, comma-separated).
# Only a request arriving from one of them has its X-Forwarded-For believed, for the login
# lockout's client address. Empty: the TCP peer is the client.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# Login throttling (django-axes, database handler: the cache may be down, and the cache handler
# is "by design less secure"). A username is locked from one client address after
# AXES_FAILURE_LIMIT failures, for AXES_COOLOFF_MINUTES; both the dashboard login and the admin
# login go through it.
AXES_ENABLED = env_bool("AXES_ENABLED", default=True)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_VERBOSE = False
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("AXES_FAILURE_LIMIT must be at least 1")

# Two-factor authentication (django-otp, TOTP). OTP_REQUIRED=1: the admin and the dashboard
# accept only users verified by a registered device. Off by default so the demo and a first
# login work; see docs/DEPLOYMENT.md for enrolling the first device.
OTP_REQUIRED = env_bool("OTP_REQUIRED", default=False)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Kalshi trading desk")

# /health/detail/ answers to a staff session or this token (Authorization: Bearer, or ?token=).
# Unset: staff only. Never reuse SECRET_KEY here.
HEALTH_TOKEN = env_secret("HEALTH_TOKEN")
if HEALTH_TOKEN and len(HEALTH_TOKEN) < 24:
    raise ImproperlyConfigured("HEALTH_TOKEN must be at least 24 characters long")
if HEALTH_TOKEN and HEALTH_TOKEN == SECRET_KEY:
    raise ImproperlyConfigured("HEALTH_TOKEN must not be the SECRET_KEY")
# In paper and live mode /health/ fails when no trading cycle (which reconciles with the
# exchange) has finished successfully for this long.
RECONCILE_MAX_AGE_SECONDS = env_int("RECONCILE_MAX_AGE", 15 * 60)
# The worker records the exchange status it saw; older than this, /health/ calls it unknown.
EXCHANGE_STATUS_MAX_AGE_SECONDS = env_int("EXCHANGE_STATUS_MAX_AGE", 10 * 60)

# --- Logging: secrets are redacted from every record ----------------------------------------
# LOG_FORMAT=json: one JSON object per line (the image's default); plain: human-readable.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_choice("LOG_FORMAT", ("plain", "json"), "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx/httpcore debug output would print request headers (the Kalshi signature).
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # One line per failed login is enough; axes is chatty at INFO.
        "axes": {"level": "WARNING"},
        # It logs every failing or warning check with a traceback on every probe; an unhealthy
        # answer is logged once by django.request, and /health/detail/ says why.
        "health_check": {"level": "ERROR"},
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
# The subaccount the desk trades with (0 = primary, 1-63 numbered); unset = send none.
_subaccount = env_str("KALSHI_SUBACCOUNT") or ""
if _subaccount and not _subaccount.isdigit():
    raise ImproperlyConfigured(
        f"KALSHI_SUBACCOUNT must be an integer >= 0 (0 is the primary account), got {_subaccount!r}"
    )
KALSHI_SUBACCOUNT: int | None = int(_subaccount) if _subaccount else None
# An order on the account without our client_order_id prefix: halt trading, or ignore it (and
# its fills and positions, on markets the desk does not trade).
FOREIGN_ORDERS = env_choice("FOREIGN_ORDERS", ("halt", "ignore"), "halt")

# --- Language models ------------------------------------------------------------------------
LLM_PROVIDER = env_choice(
    "LLM_PROVIDER", ("none", "xai", "openai", "openrouter", "local", "custom"), "none"
)
LLM_BASE_URL = env_str("LLM_BASE_URL")
LLM_MODEL = env_str("LLM_MODEL")
LLM_API_KEY = env_secret("LLM_API_KEY")
LLM_TIMEOUT_SECONDS = env_int("LLM_TIMEOUT", 60)
# Validated where they are used (trading/llm): a bad value fails with a message naming it.
LLM_SHOW_PRICE = env_bool("LLM_SHOW_PRICE", default=False)
LLM_SAMPLES = env_int("LLM_SAMPLES", 1)
LLM_CRITIC = env_bool("LLM_CRITIC", default=False)
LLM_MAX_OUTPUT_TOKENS = env_int("LLM_MAX_OUTPUT_TOKENS", 2000)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2)
LLM_TEMPERATURE = env_str("LLM_TEMPERATURE") or None
LLM_JSON_MODE = env_str("LLM_JSON_MODE") or None
LLM_PRICE_INPUT_PER_M = env_str("LLM_PRICE_INPUT_PER_M") or None
LLM_PRICE_OUTPUT_PER_M = env_str("LLM_PRICE_OUTPUT_PER_M") or None
RECORDED_SOURCE_FORECASTER = env_str("RECORDED_SOURCE_FORECASTER") or "llm"
RECORDED_SOURCE_MODEL = env_str("RECORDED_SOURCE_MODEL") or ""
RECORDED_SOURCE_PROMPT_VERSION = env_str("RECORDED_SOURCE_PROMPT_VERSION") or ""
# market, baseline, llm, recorded, or the dotted path of your own Forecaster class.
FORECASTER = env_str("FORECASTER") or "baseline"
AI_DAILY_BUDGET_DEFAULT = env_decimal("AI_DAILY_BUDGET", "10.00")
if AI_DAILY_BUDGET_DEFAULT < Decimal("0"):
    raise ImproperlyConfigured("AI_DAILY_BUDGET must not be negative")
