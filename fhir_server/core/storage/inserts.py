"""The inserts and index deletions of a write unit's flush, as few statements as the databases allow.

Plain DBAPI statements on the transaction's own connection: these are the hot path of every write,
and SQLAlchemy's per-row parameter processing costs more than SQLite itself. Where the dialect has a
bulk transfer (PostgreSQL's COPY) many-row tables use it, after the pipelined statements.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.core.storage.dialect import Dialect
from fhir_server.core.storage.schema import INDEX_TABLES, access_labels

#: Parameters in one multi-row INSERT (SQLite allows 32766 since 3.32, PostgreSQL 65535).
MAX_STATEMENT_PARAMETERS = 30000


@cache
def insert_columns(table: Any) -> list[str]:
    """The columns an insert into ``table`` gives (all but an auto-increment key)."""
    return [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def insert_values(dialect: Dialect, cursor: Any, head: str, values: list[tuple], tail: str = "") -> None:
    """``head`` + one ``(?, ...)`` per row + ``tail``: multi-row statements, as few as the databases'
    parameter limits allow. One statement per table, not one per row: the database has fewer
    statements to run, and on SQLite a writer releases (and must win back) Python's GIL once per
    statement, not once per row, while it holds the database's write lock."""
    one = f"({', '.join([dialect.mark] * len(values[0]))})"
    per_statement = max(1, MAX_STATEMENT_PARAMETERS // len(values[0]))
    for start in range(0, len(values), per_statement):
        chunk = values[start : start + per_statement]
        cursor.execute(head + ", ".join([one] * len(chunk)) + tail, [v for row in chunk for v in row])


def bulk_insert(dialect: Dialect, cursor: Any, table: Any, rows: list[dict]) -> None:
    """Insert ``rows`` into ``table``: the dialect's bulk transfer for many rows, else multi-row INSERTs."""
    columns = insert_columns(table)
    values = [tuple(map(row.get, columns)) for row in rows]
    if _copies(dialect, len(rows)):
        dialect.copy_rows(cursor, table.name, columns, values)
        return
    insert_values(dialect, cursor, f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ", values)


def insert_labels(dialect: Dialect, cursor: Any, rows: list[dict]) -> None:
    """Add access labels; a label a resource already carries is kept as it is."""
    values = list(dict.fromkeys((r["res_type"], r["res_id"], r["label"]) for r in rows))
    head = f"INSERT INTO {access_labels.name} (res_type, res_id, label) VALUES "
    insert_values(dialect, cursor, head, values, " ON CONFLICT DO NOTHING")


def write_rows(
    dialect: Dialect,
    cursor: Any,
    inserts: list[tuple[Any, list[dict]]],
    stale: dict[str, list[str]],
    labels: list[dict],
) -> None:
    """Delete the stale index rows of ``stale`` (type -> ids), then insert ``inserts`` and ``labels``.

    The statements go in one pipeline where the dialect has one (one round trip to the server),
    except for tables with many rows, which follow through the dialect's bulk transfer.
    """
    mark = dialect.mark
    copies = [(table, rows) for table, rows in inserts if _copies(dialect, len(rows))]
    small = [(table, rows) for table, rows in inserts if not _copies(dialect, len(rows))]
    with dialect.pipeline(cursor):
        for rtype, all_ids in stale.items():
            for start in range(0, len(all_ids), 500):  # bound the statement's parameter count
                ids = all_ids[start : start + 500]
                owned = f"res_type = {mark} AND res_id IN ({', '.join([mark] * len(ids))})"
                for table in INDEX_TABLES.values():
                    cursor.execute(f"DELETE FROM {table.name} WHERE {owned}", (rtype, *ids))
        for table, rows in small:
            bulk_insert(dialect, cursor, table, rows)
        if labels:
            insert_labels(dialect, cursor, labels)
    for table, rows in copies:
        bulk_insert(dialect, cursor, table, rows)


def _copies(dialect: Dialect, count: int) -> bool:
    threshold = dialect.copy_threshold
    return threshold is not None and count >= threshold
