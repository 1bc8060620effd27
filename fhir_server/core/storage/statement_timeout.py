"""The statement timeout (issue 15, finding 7): a database statement running longer is stopped.

PostgreSQL: ``statement_timeout`` set on each new connection. SQLite: a progress handler that
interrupts a statement SQLAlchemy runs once it has run longer (statements on a raw cursor, the
bulk inserts of a write, are not limited). The HTTP edge answers a stopped statement with 503.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, event

#: SQLite calls the progress handler every this many virtual machine steps (a fraction of a millisecond).
_PROGRESS_STEPS = 20_000


def is_statement_timeout(error: BaseException) -> bool:
    """True when ``error`` (or the driver error it wraps) is a statement stopped by the timeout."""
    orig = getattr(error, "orig", error)
    if isinstance(orig, sqlite3.OperationalError):
        return str(orig) == "interrupted"
    return type(orig).__name__ == "QueryCanceled"


def limit_statements(engine: Engine, timeout_ms: int) -> None:
    """Stop statements of ``engine`` running longer than ``timeout_ms`` (0: no limit); before first use."""
    if timeout_ms <= 0:
        return
    if engine.dialect.name != "sqlite":

        @event.listens_for(engine, "connect")
        def _set(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {int(timeout_ms)}")
            dbapi_connection.commit()  # a SET inside a transaction rolled back later would not last

        return

    @event.listens_for(engine, "connect")
    def _handler(dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        deadline = record.info["deadline"] = [float("inf")]
        dbapi_connection.set_progress_handler(lambda: time.monotonic() > deadline[0], _PROGRESS_STEPS)

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, *_args) -> None:  # type: ignore[no-untyped-def]
        if not conn.info.get(_UNLIMITED):
            conn.connection.info["deadline"][0] = time.monotonic() + timeout_ms / 1000

    @event.listens_for(engine, "after_cursor_execute")
    def _stop(conn, *_args) -> None:  # type: ignore[no-untyped-def]
        conn.connection.info["deadline"][0] = float("inf")


_UNLIMITED = "statement_timeout_off"


@contextmanager
def without_limit(conn: Connection) -> Iterator[None]:
    """The statements ``conn`` runs in this block are not stopped by the timeout: the maintenance a store does
    when it opens a database (schema upgrades, building an index for the stored resources) takes as long as
    the data asks, not a request. On PostgreSQL for the rest of the transaction (``SET LOCAL``)."""
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        yield
        return
    conn.info[_UNLIMITED] = True
    try:
        yield
    finally:
        conn.info.pop(_UNLIMITED, None)
