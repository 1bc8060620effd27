"""Prepared SQL text on raw DBAPI connections: the hot read paths, past SQLAlchemy's statement machinery."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

if TYPE_CHECKING:
    from fhir_server.core.storage.db import Database
    from fhir_server.core.storage.dialect import Dialect


class FastReads:
    """Read by id on a dedicated raw DBAPI connection per thread: the hot path of a FHIR server.

    A single ``SELECT`` by primary key needs no explicit transaction; going past SQLAlchemy's
    statement machinery here makes a read about 20 times cheaper. The connection runs in
    autocommit mode, so it never holds a snapshot or a lock between requests.
    """

    def __init__(self, db: Database, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect
        mark = dialect.mark
        self.sql = (
            "SELECT res_type, res_id, version_id, last_updated, deleted, body FROM resources "
            f"WHERE res_type = {mark} AND res_id = {mark}"
        )
        self.local = threading.local()

    def _cursor(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.db.read.raw_connection()
            self.dialect.open_reader(conn)
            self.local.conn = conn
        return conn.cursor()

    def row(self, resource_type: str, resource_id: str) -> tuple | None:
        rows = self.rows(self.sql, (resource_type, resource_id))
        return rows[0] if rows else None

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """All rows of one prepared ``SELECT`` (no transaction around it: one statement is one snapshot).

        A connection the database server closed (a restart) is replaced, and the statement tried once more.
        """
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
                cursor.execute(sql, params)
                return cursor.fetchall()
            except self.db.read.dialect.dbapi.OperationalError:  # type: ignore[union-attr]
                self.local.conn = None
                if attempt == 2:
                    raise
            except Exception:
                self.local.conn = None  # a broken connection: open a new one next time
                raise
        raise AssertionError("unreachable")


def execute_sql(conn: Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """Prepared SQL text that returns no rows, on the DBAPI connection under ``conn`` (inside its transaction):
    the write path's hot statements, without SQLAlchemy's per-statement work."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def fetch_all(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """Prepared SQL text on the DBAPI connection under ``conn`` (inside its transaction, if any)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        rows: list[tuple] = list(cursor.fetchall())
        return rows
    finally:
        cursor.close()
