"""Keeping secrets out of logs and error reports, and the log line formats.

Two layers: a logging filter that redacts the configured secret values and anything shaped like
a private key or bearer token from every record, and an exception-reporter filter that also
hides settings whose names do not look secret (DATABASE_URL, KALSHI_PRIVATE_KEY_PATH, ...).
``JsonFormatter`` writes one JSON object per line (LOG_FORMAT=json) and redacts again whatever
it adds beyond the message, so it is safe even on a handler without the filter (gunicorn's).
"""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import UTC, datetime

from django.views.debug import SafeExceptionReporterFilter

REDACTED = "[redacted]"

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"\b(sk|xai)-[A-Za-z0-9_\-]{12,}"),
    re.compile(r"(?i)(KALSHI-ACCESS-SIGNATURE['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9+/=]{16,}"),
    # The key id is not a secret on its own, but it names the key: not for logs or pages.
    re.compile(r"(?i)(KALSHI-ACCESS-KEY['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9\-]{8,}"),
    re.compile(r"(?i)(://[^:/\s]+:)[^@\s]+(@)"),
]

_SECRET_SETTINGS = (
    "SECRET_KEY",
    "KALSHI_API_KEY_ID",
    "KALSHI_PRIVATE_KEY",
    "LLM_API_KEY",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "HEALTH_TOKEN",
    "EMAIL_HOST_PASSWORD",
)

_secret_cache: tuple[str, ...] | None = None


def _secret_values() -> tuple[str, ...]:
    """The configured secret values, longest first (read once settings are configured; a
    process that logs before that, like gunicorn's master, gets only the pattern redaction)."""
    global _secret_cache
    if _secret_cache is not None:
        return _secret_cache
    from django.conf import settings

    if not settings.configured:
        return ()
    try:
        candidates = [getattr(settings, name, None) for name in _SECRET_SETTINGS]
        # Passwords that came inside a URL (DATABASE_URL, REDIS_URL) as parsed into settings.
        candidates += [db.get("PASSWORD") for db in settings.DATABASES.values()]
        candidates += [
            (cache.get("OPTIONS") or {}).get("PASSWORD") for cache in settings.CACHES.values()
        ]
        values = {value for value in candidates if isinstance(value, str) and len(value) >= 6}
    except Exception:  # settings that fail to load must not break logging
        return ()
    _secret_cache = tuple(sorted(values, key=len, reverse=True))
    return _secret_cache


def _secret_values_reset() -> None:
    """Forget the cached values (tests that change the secret settings)."""
    global _secret_cache
    _secret_cache = None


def redact(text: str) -> str:
    """Return ``text`` with configured secrets and secret-shaped strings replaced."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2) or ''}", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Rewrite each record's message (after %-formatting) and traceback text, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not kill logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|REDIS_URL|PRIVATE|DSN",
        flags=re.I,
    )


# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is added
# to the JSON object (when it is a plain value).
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the
    traceback and ``extra=`` fields when present. Every string in it is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key.startswith("_") or key in entry:
                continue
            if isinstance(value, str):
                entry[key] = redact(value)
            elif value is None or isinstance(value, bool | int | float):
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


class LogLines(io.TextIOBase):
    """A text stream that logs each line written to it, for a management command's output
    (``call_command(..., stdout=LogLines(logger))``): with LOG_FORMAT=json the deploy steps'
    output (migrate, setup_schedules) becomes JSON lines like the rest of the log."""

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        if line.strip():
            self._logger.log(self._level, line.rstrip())
