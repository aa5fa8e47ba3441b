"""Formatting for the dashboard's templates: money, prices, percentages, durations, reasons.

Every filter takes ``None`` (or an empty string) and shows an em dash. Numbers may come as
``Decimal``, ``int`` or the decimal strings that ``Decision.details`` holds; they are read as
``Decimal`` (never through ``float``) and rounded only for display.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone

from markets.money import format_dollars
from trading.reasons import REASON_LABELS, Reason

register = template.Library()

DASH = "—"


def _decimal(value: Any) -> Decimal | None:
    """``value`` as a Decimal, or None when it is missing or not a number."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float):  # never expected; read by its shortest repr, not its bits
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _fixed(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN):,.{places}f}"


@register.filter
def dollars(value: Any, places: int = 2) -> str:
    """``Decimal("-1234.5")`` → ``-$1,234.50`` (markets.money.format_dollars)."""
    number = _decimal(value)
    return DASH if number is None else format_dollars(number, int(places))


@register.filter
def signed_dollars(value: Any, places: int = 2) -> str:
    """Dollars with an explicit sign for gains: ``+$12.00``, ``-$3.50``, ``$0.00``."""
    number = _decimal(value)
    if number is None:
        return DASH
    text = format_dollars(number, int(places))
    return f"+{text}" if number.quantize(Decimal(1).scaleb(-int(places))) > 0 else text


@register.filter
def pnl_class(value: Any) -> str:
    """CSS class for a gain (``pos``), a loss (``neg``) or nothing."""
    number = _decimal(value)
    if number is None or number == 0:
        return ""
    return "pos" if number > 0 else "neg"


@register.filter
def price(value: Any) -> str:
    """A contract price in dollars with 4 places: ``0.4200``."""
    number = _decimal(value)
    return DASH if number is None else _fixed(number, 4)


@register.filter
def cents(value: Any) -> str:
    """A contract price in cents: ``42¢``, or ``42.5¢`` on a sub-cent tick."""
    number = _decimal(value)
    if number is None:
        return DASH
    in_cents = (number * 100).normalize()
    places = max(0, -in_cents.as_tuple().exponent)  # type: ignore[operator]
    return f"{_fixed(in_cents, min(places, 2))}¢"


@register.filter
def pct(value: Any, places: int = 1) -> str:
    """A fraction as a percentage: ``0.0525`` → ``5.3%`` (``|pct:2`` → ``5.25%``)."""
    number = _decimal(value)
    return DASH if number is None else f"{_fixed(number * 100, int(places))}%"


@register.filter
def num(value: Any, places: int = 2) -> str:
    """A plain number with ``places`` decimals and thousands separators."""
    number = _decimal(value)
    return DASH if number is None else _fixed(number, int(places))


@register.filter
def contracts(value: Any) -> str:
    """A contract count: ``10`` or ``10.5`` (counts have at most 2 decimals)."""
    number = _decimal(value)
    if number is None:
        return DASH
    if number == number.to_integral_value():
        return _fixed(number, 0)
    return _fixed(number, 2).rstrip("0")


@register.filter
def duration(value: Any) -> str:
    """A timedelta (or seconds) as ``45s``, ``12m 05s``, ``3h 20m`` or ``2d 4h``."""
    if value is None or value == "":
        return DASH
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
    else:
        number = _decimal(value)
        if number is None:
            return DASH
        seconds = int(number)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


@register.filter
def hours(value: Any) -> str:
    """A number of hours (e.g. ``details.hours_to_close``) as a duration."""
    number = _decimal(value)
    return DASH if number is None else duration(int(number * 3600))


@register.filter
def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was: ``5m 02s ago``."""
    if value is None:
        return DASH
    return f"{duration((now or timezone.now()) - value)} ago"


@register.filter
def reason_label(code: Any) -> str:
    """The operator's words for a decision reason code."""
    if not code:
        return DASH
    try:
        return REASON_LABELS[Reason(str(code))]
    except ValueError:
        return str(code).replace("_", " ").capitalize()


@register.filter
def words(code: Any) -> str:
    """``max_position_pct`` → ``Max position pct``: a code made readable."""
    return DASH if not code else str(code).replace("_", " ").capitalize()


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """``mapping|get:key``; None when the key is missing."""
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def bar_width(value: Any, total: Any) -> str:
    """``value`` as a percentage of ``total`` for a CSS bar width (``0`` when total is 0)."""
    number, whole = _decimal(value), _decimal(total)
    if number is None or not whole:
        return "0"
    return _fixed(max(min(number / whole * 100, Decimal(100)), Decimal(0)), 1)


@register.filter
def times(value: Any, factor: Any) -> Decimal | None:
    """``value × factor`` exactly (e.g. contracts × price); None when either is missing."""
    a, b = _decimal(value), _decimal(factor)
    return None if a is None or b is None else a * b


@register.filter
def minus(value: Any, other: Any) -> Decimal | None:
    """``value − other`` exactly; None when either is missing."""
    a, b = _decimal(value), _decimal(other)
    return None if a is None or b is None else a - b


@register.filter
def pretty_json(value: Any) -> str:
    """A JSON value indented for reading (autoescaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


# The navigation: (URL name, label, names that mark it active). Reversed once per process.
NAV = (
    ("index", "Overview", ("index",)),
    ("markets", "Markets", ("markets", "market")),
    ("decisions", "Decisions", ("decisions", "decision")),
    ("funnel", "Funnel", ("funnel",)),
    ("positions", "Positions", ("positions", "position")),
    ("orders", "Orders", ("orders",)),
    ("fills", "Fills", ("fills",)),
    ("performance", "Performance", ("performance",)),
    ("calibration", "Calibration", ("calibration",)),
    ("settings", "Settings", ("settings", "settings-risk")),
)
_nav_links: list[tuple[str, str, tuple[str, ...]]] = []


@register.simple_tag
def nav_links() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(url, label, active names)`` for each page of the main navigation."""
    if not _nav_links:
        _nav_links.extend(
            (reverse(f"dashboard:{name}"), label, names) for name, label, names in NAV
        )
    return _nav_links
