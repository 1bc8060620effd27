"""Copying a hub's whole database into another: ``fhir-server copy-database SOURCE TARGET``.

A hub that starts on the embedded SQLite and outgrows it moves to PostgreSQL this way (or back, for a
local copy of a server's data): every table, row for row — resources, their history with its order
(``resource_versions.seq``), search index rows, access labels, subscriptions, export and import jobs.
The source is read in one transaction (a consistent snapshot: on SQLite writers may go on meanwhile,
but what they write after the snapshot is not copied, so stop the servers first); the target must be
empty. On PostgreSQL the rows stream through ``COPY`` with each table's secondary indexes dropped and
built again after its rows (several times quicker than keeping them up to date row by row), sequences
continue after the copied values, and the planner's statistics are refreshed at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, MetaData, Table, delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tqdm import tqdm

from fhir_server.core.storage.db import Database, normalise_url, open_database
from fhir_server.core.storage.dialect import dialect_for
from fhir_server.core.storage.inserts import insert_values
from fhir_server.core.storage.schema import metadata, schema_info
from fhir_server.core.storage.statistics import analyse_sqlite, vacuum_analyse_postgres

log = logging.getLogger(__name__)

#: Rows read and written at a time.
CHUNK = 10000


class CannotCopy(Exception):
    """The copy cannot start (the message says why)."""


@dataclass
class CopyReport:
    """Rows copied per table, and how long the copy took."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        total = sum(self.rows.values())
        tables = ", ".join(f"{name} {count}" for name, count in self.rows.items() if count)
        return f"copied {total} rows in {self.seconds:.0f} s ({tables})"


def copy_database(
    source_url: str, target_url: str, *, schemas: Sequence[MetaData] = (metadata,), progress: bool = True
) -> CopyReport:
    """Copy every row of the tables of ``schemas`` (the storage schema and those of the layers above, e.g.
    the measures' facts: :func:`fhir_server.components.database_schemas`) from the database at
    ``source_url`` into the empty one at ``target_url``; both are given this release's schema first."""
    if _same(source_url, target_url):
        raise CannotCopy("the source and the target are the same database")
    source = open_copy_end(source_url, schemas)
    try:
        target = open_copy_end(target_url, schemas)
    except CannotCopy:
        source.dispose()
        raise
    tables = [table for schema in schemas for table in schema.sorted_tables]
    try:
        refuse_occupied(target, tables)
        return _copy(source, target, tables, progress)
    finally:
        source.dispose()
        target.dispose()


def open_copy_end(url: str, schemas: Sequence[MetaData]) -> Database:
    """The database at ``url`` with the tables of ``schemas`` (created where missing, as a server does)."""
    try:
        db = open_database(url)
        with db.write.begin() as conn:
            for schema in schemas:
                schema.create_all(conn)
        return db
    except OperationalError as error:
        shown = make_url(normalise_url(url)).render_as_string(hide_password=True)
        reason = str(error.orig).strip()
        raise CannotCopy(f"cannot open {shown} ({reason}); a PostgreSQL target is created with createdb") from error


def _same(source_url: str, target_url: str) -> bool:
    return normalise_url(source_url) == normalise_url(target_url)


def refuse_occupied(db: Database, tables: list[Table]) -> None:
    """Refuse a target that already holds rows in any of ``tables`` (its schema version aside)."""
    with db.read.connect() as conn:
        occupied = [
            table.name
            for table in tables
            if table is not schema_info and conn.execute(select(1).select_from(table).limit(1)).first() is not None
        ]
    if occupied:
        raise CannotCopy(
            f"the target database is not empty (it has rows in {', '.join(occupied)}): copy into a new database"
        )


def _copy(source: Database, target: Database, tables: list[Table], progress: bool) -> CopyReport:
    started = time.monotonic()
    report = CopyReport()
    with snapshot(source) as reader:
        for table in tables:
            total = reader.execute(select(func.count()).select_from(table)).scalar_one()
            with tqdm(
                total=total, desc=table.name, unit="row", unit_scale=True, file=sys.stderr, disable=not progress
            ) as bar:
                report.rows[table.name] = copy_table(target, table, table_rows(reader, table), bar)
            log.info("copied %s: %s rows", table.name, report.rows[table.name])
    refresh_statistics(target)
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """A read transaction over the whole source: every table as of one moment."""
    with db.read.connect() as conn:
        reader = conn if db.is_sqlite else conn.execution_options(isolation_level="REPEATABLE READ")
        with reader.begin() as transaction:
            yield reader
            transaction.rollback()


def table_rows(reader: Connection, table: Table) -> Iterator[list[tuple]]:
    """The rows of ``table`` in storage order, a chunk at a time, as the driver gives them (plain DBAPI: a
    third of the cost of SQLAlchemy's row processing; SQLite's 0/1 booleans are valid PostgreSQL input,
    psycopg's ``bool`` valid SQLite input). PostgreSQL: a server-side cursor in the snapshot."""
    raw = reader.connection.driver_connection
    assert raw is not None
    sql = f"SELECT {', '.join(column.name for column in table.columns)} FROM {table.name}"
    cursor = raw.cursor() if reader.dialect.name == "sqlite" else raw.cursor(name=f"copy_{table.name}")
    try:
        cursor.execute(sql)
        while chunk := cursor.fetchmany(CHUNK):
            yield chunk
    finally:
        cursor.close()


def copy_table(target: Database, table: Table, chunks: Iterable[list[tuple]], bar: tqdm) -> int:
    """Fill ``table`` of ``target`` with ``chunks`` of rows (in the order of the table's columns); returns
    how many. PostgreSQL: in one transaction that empties it first, through ``COPY``, its indexes built
    after its rows, its sequence continued after them."""
    columns = [column.name for column in table.columns]
    dialect = dialect_for(target)
    copied = 0
    with target.write.begin() as conn:
        if table is schema_info:  # the target's own version record gives way to the source's rows
            conn.execute(delete(schema_info))
        postgres = not target.is_sqlite
        if postgres:
            conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            # emptied in the transaction that fills it: a cluster with wal_level = minimal then writes the
            # table's rows straight to its files, not through the write-ahead log as well
            conn.exec_driver_sql(f"TRUNCATE {table.name}")
            for index in table.indexes:
                index.drop(conn)
        cursor = conn.connection.cursor()
        head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
        for chunk in chunks:
            if postgres:
                dialect.copy_rows(cursor, table.name, columns, chunk)
            else:
                insert_values(dialect, cursor, head, chunk)
            copied += len(chunk)
            bar.update(len(chunk))
        if postgres:
            for index in table.indexes:
                bar.set_postfix_str(f"building {index.name}")
                index.create(conn)
            _continue_sequence(conn, table)
    return copied


def _continue_sequence(conn: Connection, table: Table) -> None:
    """A PostgreSQL serial column's sequence goes on after the largest copied value."""
    column = table.autoincrement_column
    if column is None:
        return
    conn.exec_driver_sql(
        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
        f"coalesce(max({column.name}), 1), max({column.name}) IS NOT NULL) FROM {table.name}"
    )


def refresh_statistics(target: Database) -> None:
    """The planner's statistics of the copied volume."""
    started = time.monotonic()
    if target.is_sqlite:
        with target.write.begin() as conn:
            analyse_sqlite(conn)
    else:
        vacuum_analyse_postgres(target)
    log.info("planner statistics of the copy refreshed in %.0f s", time.monotonic() - started)
