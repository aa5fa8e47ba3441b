"""Exact money: one place that says how prices, counts and dollar amounts are represented.

Everything is ``decimal.Decimal``, never ``float``:

- a *price* is dollars per contract with at most 4 decimal places (Kalshi's ``*_dollars``
  strings, sub-cent ticks included): ``PRICE_PLACES``;
- a *count* is contracts with at most 2 decimal places (Kalshi's ``*_fp`` strings): ``COUNT_PLACES``;
- an *amount* (cash, cost, fee, P&L, AI spend) has at most 6 decimal places: ``MONEY_PLACES``.

Parsing refuses values that are not exact in their unit instead of rounding them; rounding
happens only where a value leaves the app, explicitly, in the safe direction.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from django.db import models

PRICE_PLACES = 4
COUNT_PLACES = 2
MONEY_PLACES = 6

PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)  # 0.0001
COUNT_QUANTUM = Decimal(1).scaleb(-COUNT_PLACES)  # 0.01
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)  # 0.000001
CENT = Decimal("0.01")
ZERO = Decimal(0)
ONE = Decimal(1)


class MoneyError(ValueError):
    """A value that is not an exact price, count or amount."""


def _to_decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        # Floats are refused outright: 0.1 is not 0.1.
        raise MoneyError(f"{what}: {value!r} is a {type(value).__name__}, expected a string")
    try:
        result = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{what}: {value!r} is not a number") from None
    if not result.is_finite():
        raise MoneyError(f"{what}: {value!r} is not a finite number")
    return result


def _exact(value: Decimal, quantum: Decimal, what: str, raw: Any) -> Decimal:
    quantized = value.quantize(quantum)
    if quantized != value:
        raise MoneyError(f"{what}: {raw!r} has more than {-quantum.as_tuple().exponent} decimals")
    return quantized


def parse_price(value: Any, what: str = "price") -> Decimal:
    """Parse a dollar price in [0, 1] with at most 4 decimals (e.g. ``"0.5600"``)."""
    result = _exact(_to_decimal(value, what), PRICE_QUANTUM, what, value)
    if result < ZERO or result > ONE:
        raise MoneyError(f"{what}: {value!r} is outside [0, 1]")
    return result


def parse_count(value: Any, what: str = "count") -> Decimal:
    """Parse a contract count with at most 2 decimals (e.g. ``"10.00"``); may be negative."""
    return _exact(_to_decimal(value, what), COUNT_QUANTUM, what, value)


def parse_amount(value: Any, what: str = "amount") -> Decimal:
    """Parse a dollar amount with at most 6 decimals (e.g. ``"12.345600"``)."""
    return _exact(_to_decimal(value, what), MONEY_QUANTUM, what, value)


def cents_to_dollars(value: Any, what: str = "cents") -> Decimal:
    """Kalshi's few remaining integer-cent fields (balance, settlement revenue)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MoneyError(f"{what}: {value!r} is not an integer number of cents")
    try:
        cents = int(value)
    except ValueError:
        raise MoneyError(f"{what}: {value!r} is not an integer number of cents") from None
    return (Decimal(cents) / 100).quantize(CENT)


def ceil_to(value: Decimal, quantum: Decimal) -> Decimal:
    return value.quantize(quantum, rounding=ROUND_CEILING)


def floor_to(value: Decimal, quantum: Decimal) -> Decimal:
    return value.quantize(quantum, rounding=ROUND_FLOOR)


def format_dollars(value: Decimal | None, places: int = 2) -> str:
    """``Decimal("-1234.5")`` → ``"-$1,234.50"``; the one formatter templates use."""
    if value is None:
        return "—"
    quantum = Decimal(1).scaleb(-places)
    rounded = value.quantize(quantum)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.{places}f}"


# --- Model fields ---------------------------------------------------------------------------
# max_digits stays <= 15 so that SQLite (which stores these as REAL) round-trips them exactly.


class PriceField(models.DecimalField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 5)
        kwargs.setdefault("decimal_places", PRICE_PLACES)
        super().__init__(*args, **kwargs)


class CountField(models.DecimalField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", COUNT_PLACES)
        super().__init__(*args, **kwargs)


class MoneyField(models.DecimalField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 15)
        kwargs.setdefault("decimal_places", MONEY_PLACES)
        super().__init__(*args, **kwargs)


class RatioField(models.DecimalField):
    """A probability, fraction or percentage as a fraction (0.05 = 5%), 6 decimals."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 9)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(*args, **kwargs)
