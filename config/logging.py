"""Keeping secrets out of logs and error reports.

Two layers: a logging filter that redacts the configured secret values and anything shaped like
a private key or bearer token from every record, and an exception-reporter filter that also
hides settings whose names do not look secret (DATABASE_URL, KALSHI_PRIVATE_KEY_PATH, ...).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from django.views.debug import SafeExceptionReporterFilter

REDACTED = "[redacted]"

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"\b(sk|xai)-[A-Za-z0-9_\-]{12,}"),
    re.compile(r"(?i)(KALSHI-ACCESS-SIGNATURE['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9+/=]{16,}"),
    re.compile(r"(?i)(://[^:/\s]+:)[^@\s]+(@)"),
]

_SECRET_SETTINGS = (
    "SECRET_KEY",
    "KALSHI_API_KEY_ID",
    "KALSHI_PRIVATE_KEY",
    "LLM_API_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "HEALTH_TOKEN",
)


@lru_cache(maxsize=1)
def _secret_values() -> tuple[str, ...]:
    from django.conf import settings

    values = []
    for name in _SECRET_SETTINGS:
        value = getattr(settings, name, None)
        if isinstance(value, str) and len(value) >= 6:
            values.append(value)
    return tuple(values)


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
