"""Fast bulk writes on PostgreSQL: COPY instead of the ORM's parameterised INSERTs.

Django's ``bulk_create`` converts every value through the ORM and sends one large statement;
COPY streams the rows, which is several times faster (../shared/PERFORMANCE-LIMITS.md).
Constraints still apply: rows land in the real table (directly, or from a staging table with
one ``INSERT … ON CONFLICT``). Callers keep ``bulk_create`` for SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, models

IN_CHUNK = 500  # values per IN (...) lookup: below SQLite's bound-variable limit


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve ``count`` primary keys from the table's identity sequence (PostgreSQL)."""
    if count == 0:
        return []
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def copy_rows(
    model: type[models.Model],
    objs: Iterable[models.Model],
    fields: Sequence[str],
    *,
    conflict: str | None = None,
    update: Sequence[str] = (),
) -> None:
    """COPY ``fields`` of ``objs`` into the model's table (PostgreSQL, inside a transaction).

    With ``conflict`` (e.g. ``"(ticker)"``) the rows go through a staging table and one
    ``INSERT … ON CONFLICT conflict DO UPDATE SET update…`` (or ``DO NOTHING``).
    """
    meta = model._meta
    concrete = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    cols = ", ".join(quote(f.column) for f in concrete)
    with connection.cursor() as cursor:
        target = table
        if conflict is not None:
            target = quote(f"staging_{meta.db_table}")
            cursor.execute(f"DROP TABLE IF EXISTS {target}")
            cursor.execute(
                f"CREATE TEMP TABLE {target} ON COMMIT DROP AS "
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
        with cursor.cursor.copy(f"COPY {target} ({cols}) FROM STDIN") as copy:
            for obj in objs:
                # As bulk_create does: take foreign keys from related objects saved since the
                # object was built (and refuse an unsaved one).
                obj._prepare_related_fields_for_save(operation_name="copy_rows")
                copy.write_row([_db_value(obj, field) for field in concrete])
        if conflict is not None:
            if update:
                sets = ", ".join(
                    f"{quote(meta.get_field(n).column)} = EXCLUDED.{quote(meta.get_field(n).column)}"
                    for n in update
                )
                action = f"DO UPDATE SET {sets}"
            else:
                action = "DO NOTHING"
            cursor.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {target} "
                f"ON CONFLICT {conflict} {action}"
            )
            cursor.execute(f"DROP TABLE {target}")


def _db_value(obj: models.Model, field: Any) -> Any:
    value = getattr(obj, field.attname)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def concrete_field_names(model: type[models.Model], *, with_pk: bool) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if with_pk or not f.primary_key]
