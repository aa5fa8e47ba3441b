"""Fast bulk writes: COPY on PostgreSQL instead of the ORM's parameterised INSERTs.

Django's ``bulk_create`` converts every value through the ORM and sends one large statement;
COPY streams the rows, which is several times faster on large loads.
Constraints still apply: rows land in the real table (directly, or from a staging table with
one ``INSERT … ON CONFLICT``). ``copy_rows`` callers keep ``bulk_create`` for SQLite;
``insert_rows`` and ``ids_by_key`` (keys to ids in one query) serve both databases the project
runs on, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, models, transaction

IN_CHUNK = 500  # values per IN (...) lookup: below SQLite's bound-variable limit


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def ids_by_key(model: type[models.Model], field: str, keys: Sequence[Any]) -> dict[Any, int]:
    """``{key: primary key}`` for the rows whose ``field`` is one of ``keys`` (missing ones left out).

    One query whatever the number of keys, which go as a single parameter: a PostgreSQL array
    (``= ANY(%s)``: several times faster than an ``IN`` of thousands of placeholders, which the
    driver must also parse) or a JSON array read by SQLite's ``json_each``. Keys are strings
    or numbers.
    """
    if not keys:
        return {}
    meta = model._meta
    quote = connection.ops.quote_name
    column = quote(meta.get_field(field).column)
    if is_postgresql():
        condition, param = f"{column} = ANY(%s)", list(keys)
    else:  # SQLite
        condition, param = f"{column} IN (SELECT value FROM json_each(%s))", json.dumps(list(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column}, {quote(meta.pk.column)} FROM {quote(meta.db_table)} "
            f"WHERE {condition}",
            [param],
        )
        return dict(cursor.fetchall())


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Reserve ``count`` primary keys from the table's identity sequence (PostgreSQL)."""
    if count == 0:
        return []
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            # The sequence's name is looked up once (an init plan), not once per row.
            "SELECT nextval((SELECT pg_get_serial_sequence(%s, %s))::regclass) "
            "FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def insert_rows(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (field attname → value) and return their new primary keys, in order.

    Columns a row leaves out take the field's default. No model instances are built (most of
    ``bulk_create``'s cost per row) and the number of queries does not grow with the rows:
    PostgreSQL reserves the keys from the identity sequence and streams the rows with one COPY;
    SQLite takes the keys after the table's highest and sends one ``executemany``. JSON columns
    are encoded with the field's own encoder, as ``JSONField`` does. A row with a column the
    model lacks is refused before anything is written.
    """
    if not rows:
        return []
    fields = _value_fields(model)
    known = {f.attname for f in fields}
    for row in rows:
        _refuse_unknown(model, row, known)
    if not is_postgresql():  # SQLite
        return _insert_rows_sqlite(model, fields, rows)
    ids = allocate_ids(model, len(rows))
    _copy_dicts(model, fields, rows, ids)
    return ids


def copy_dicts(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
    """COPY ``rows`` (as for ``insert_rows``) into the model's table, keys from its sequence,
    streaming: for data sets too large to hold (PostgreSQL). Returns the number of rows."""
    fields = _value_fields(model)
    known = {f.attname for f in fields}

    def checked() -> Iterator[dict[str, Any]]:
        for row in rows:
            _refuse_unknown(model, row, known)
            yield row

    return _copy_dicts(model, fields, checked(), None)


def _value_fields(model: type[models.Model]) -> list[Any]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def _refuse_unknown(model: type[models.Model], row: dict[str, Any], known: set[str]) -> None:
    unknown = row.keys() - known
    if unknown:
        raise ValueError(f"{model._meta.label} has no column(s) {sorted(unknown)}")


def _copy_dicts(
    model: type[models.Model],
    fields: list[Any],
    rows: Iterable[dict[str, Any]],
    ids: Sequence[int] | None,
) -> int:
    """One COPY of ``rows``; with ``ids`` the primary keys are given, else the sequence's."""
    meta = model._meta
    # Each row over the defaults, then the columns in table order (C-speed itemgetter).
    defaults = {f.attname: f.get_default() for f in fields}
    columns = operator.itemgetter(*(f.attname for f in fields))
    first = 0 if ids is None else 1  # the position of the first field's value in a row
    json_encoders = [
        (position, (f.encoder or json.JSONEncoder)())
        for position, f in enumerate(fields, start=first)
        if isinstance(f, models.JSONField)
    ]  # encoding as JSONField.get_prep_value does: json.dumps(value, cls=encoder)
    quote = connection.ops.quote_name
    names = [f.column for f in fields]
    if ids is not None:
        names = [meta.pk.column, *names]
    cols = ", ".join(quote(c) for c in names)
    count = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({cols}) FROM STDIN") as copy:
            for row in rows:
                values = [*columns({**defaults, **row})]
                if ids is not None:
                    values = [ids[count], *values]
                for position, encoder in json_encoders:
                    if values[position] is not None:
                        values[position] = encoder.encode(values[position])
                copy.write_row(values)
                count += 1
    return count


def _insert_rows_sqlite(
    model: type[models.Model], fields: list[Any], rows: Sequence[dict[str, Any]]
) -> list[int]:
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    pk = quote(meta.pk.column)
    cols = ", ".join([pk, *(quote(f.column) for f in fields)])
    marks = ", ".join(["%s"] * (len(fields) + 1))
    defaults = {f.attname: f.get_default() for f in fields}
    preps = [(f.attname, f.get_db_prep_save) for f in fields]  # the ORM's own conversions
    with transaction.atomic(), connection.cursor() as cursor:
        # Transactions are IMMEDIATE (config/settings.py): SQLite's one write lock is held from
        # BEGIN, so no other writer can take these keys between this read and the insert.
        # AUTOINCREMENT tables never reuse a key, hence sqlite_sequence as well as max().
        cursor.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
            f"coalesce((SELECT max({pk}) FROM {table}), 0))",
            [meta.db_table],
        )
        start = cursor.fetchone()[0] + 1
        ids = list(range(start, start + len(rows)))
        values = []
        for key, row in zip(ids, rows, strict=True):
            merged = {**defaults, **row}
            values.append([key, *(prep(merged[name], connection) for name, prep in preps)])
        cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", values)
    return ids


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
