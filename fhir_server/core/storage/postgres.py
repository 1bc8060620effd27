"""PostgreSQL: the engine, and the store's PostgreSQL dialect.

Writers run concurrently: the current row of a resource is locked with ``SELECT ... FOR UPDATE``, and
conditional operations take a transaction-scoped advisory lock on their condition. Many-row inserts
stream through ``COPY``; the other statements of a flush go in one pipeline (one round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Connection, Engine, create_engine, func, select

if TYPE_CHECKING:
    from fhir_server.core.storage.db import Database

T = TypeVar("T")

#: From this many rows on, inserts go through COPY (fewer: one pipelined multi-row INSERT is quicker).
COPY_THRESHOLD = 100
#: The advisory lock under which one of several starting server processes creates the schema.
SCHEMA_LOCK = 4242001


def postgres_engine(url: str) -> Engine:
    """The engine (reads and writes share it)."""
    # no ping before each checkout (a round trip per transaction): a connection the server dropped
    # fails on first use, SQLAlchemy then renews the pool, and Store.write retries the work.
    # psycopg prepares a statement run five times on a connection, and PostgreSQL then plans it once for
    # any values (a generic plan): a search's plan depends on its values (measured: the regional pull went
    # from 20 ms to 560 ms after its fifth run), so every execution is planned with its own values.
    options = {"options": "-c plan_cache_mode=force_custom_plan"}
    return create_engine(url, pool_size=8, max_overflow=8, connect_args=options)


def lock_schema(conn: Connection) -> None:
    """Several server processes may start at once: let one create the schema."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")


class PostgresDialect:
    """The store's PostgreSQL parts (see :class:`fhir_server.core.storage.dialect.Dialect`)."""

    mark = "%s"
    row_lock = " FOR UPDATE"
    plans_by_hand = False
    copy_threshold = COPY_THRESHOLD

    def __init__(self, db: Database) -> None:
        self.db = db

    def run_write(self, work: Callable[[Connection], T]) -> T:
        with self.db.write.begin() as conn:
            return work(conn)

    def lock_conditional(self, conn: Connection, resource_type: str, query: str) -> None:
        """A transaction-scoped advisory lock on the condition's text (as in HAPI FHIR): identical
        conditional creates leave exactly one resource; different conditions do not wait for each other."""
        key = f"cond:{resource_type}?{urlencode(sorted(parse_qsl(query, keep_blank_values=True)))}"
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))

    def pipeline(self, cursor: Any) -> Any:
        return cursor.connection.pipeline()

    def copy_rows(self, cursor: Any, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """COPY streams the rows in one statement, several times cheaper than INSERTs."""
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def open_reader(self, raw_connection: Any) -> None:
        """Autocommit: a lone ``SELECT`` holds no snapshot or lock between requests."""
        raw_connection.driver_connection.autocommit = True
