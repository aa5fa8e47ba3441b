"""Request parameters no page can use: refused with 400 before any view runs.

- A NUL byte in the path or the query string. PostgreSQL cannot store or compare one in text
  (the driver raises), so a ``/markets/%00/`` or a ``?q=%00`` would reach the database and fail
  there; no page of ours has a use for it.
- A date part out of range in a lookup the admin lists pass through to the ORM
  (``?created_at__year=99999``, ``?started_at__month=13``): the database bounds of such a
  lookup are computed as Python datetimes, which stop at year 9999, so the page would fail
  while it renders. Every admin list takes these (its date hierarchy's and any date field's),
  including the lists of Django's and django-q2's own models, hence a middleware rather than a
  method on our admin classes.

The dashboard's own parameters are parsed and bounded by its forms (``dashboard.forms``), which
raise ``BadRequest``; the middleware answers that with the same plain 400, so a refused
parameter is one log line (``django.request``), never a stack trace an attacker can repeat.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

# Date and time parts a lookup may extract, with the values that mean something. Years are held
# to a range a trading desk's rows can have (and that stays clear of datetime's year 9999).
MIN_YEAR, MAX_YEAR = 1900, 2999
DATE_PARTS: dict[str, tuple[int, int]] = {
    "year": (MIN_YEAR, MAX_YEAR),
    "iso_year": (MIN_YEAR, MAX_YEAR),
    "quarter": (1, 4),
    "month": (1, 12),
    "week": (1, 53),
    "day": (1, 31),
    "week_day": (1, 7),
    "iso_week_day": (1, 7),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 59),
}


def bad_parameter(key: str, value: str) -> str | None:
    """Why the query parameter ``key=value`` cannot be served, or None when it can."""
    if "\x00" in key or "\x00" in value:
        return "a NUL byte in a query parameter"
    parts = key.split("__")
    for index, part in enumerate(parts[1:], start=1):
        if part not in DATE_PARTS:
            continue
        low, high = DATE_PARTS[part]
        values = value.split(",") if "in" in parts[index + 1 :] else [value]
        for item in values:
            item = item.strip()
            if not (item.isdigit() and len(item) <= 4 and low <= int(item) <= high):
                return f"a date lookup's {part} must be a whole number from {low} to {high}"
    return None


def _bad(reason: str) -> HttpResponse:
    # Plain text, and the reason never repeats what was sent.
    return HttpResponseBadRequest(
        f"Bad request: {reason}.\n", content_type="text/plain; charset=utf-8"
    )


class ParameterGuardMiddleware:
    """Answer 400 to a request whose path or query string no view can use (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            return _bad("a NUL byte in the path")
        for key, values in request.GET.lists():
            for value in values:
                reason = bad_parameter(key, value)
                if reason:
                    return _bad(reason)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view's ``BadRequest`` (a refused filter): the plain 400, without a traceback."""
        if isinstance(exception, BadRequest):
            return _bad(str(exception).rstrip(".") or "a query parameter cannot be used")
        return None
