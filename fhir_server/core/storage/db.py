"""Database engines for SQLite and PostgreSQL, and automatic schema creation and upgrade.

Writes are serialised where they must be:

* SQLite: every write transaction starts with ``BEGIN IMMEDIATE``, which takes the database's
  write lock up front, so a check-then-write (conditional create, If-Match) cannot interleave
  with another writer, across threads and across gunicorn worker processes. WAL mode keeps
  readers running meanwhile. Writers queue at the :class:`WriteGate`, and the threads of one
  process share commits (:mod:`fhir_server.core.group_commit`).
* PostgreSQL: rows are locked with ``SELECT ... FOR UPDATE`` and conditional operations take a
  transaction-scoped advisory lock (see :mod:`fhir_server.core.store`).
"""

from __future__ import annotations

import fcntl
import logging
import threading
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url

from fhir_server.core.storage.schema import SCHEMA_VERSION, metadata, schema_info
from fhir_server.core.storage.statement_timeout import limit_statements

log = logging.getLogger(__name__)


class WriteGate:
    """Queues SQLite writers without polling: a thread lock inside the process, ``flock`` across processes.

    SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another connection holds
    the write lock, which wrecks latency when many requests write at once. Writers wait here instead,
    and are woken the moment the previous writer finishes.
    """

    def __init__(self, path: str | None) -> None:
        self.thread_lock = threading.Lock()
        self.lock_path = f"{path}.writelock" if path else None
        self._handle: BinaryIO | None = None

    def acquire(self) -> None:
        """Wait for the write turn of this thread's process, then of this process among all."""
        self.thread_lock.acquire()
        if self.lock_path is None:
            return
        try:
            handle = open(self.lock_path, "a+b")  # noqa: SIM115 (closed in release)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:
            self.thread_lock.release()
            raise
        self._handle = handle

    def release(self) -> None:
        """Give the write turn back (may be called from another thread than the one that acquired it)."""
        handle, self._handle = self._handle, None
        try:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
        finally:
            self.thread_lock.release()


@dataclass
class Database:
    """A read engine and a write engine over the same database (identical on PostgreSQL)."""

    url: str
    read: Engine
    write: Engine
    gate: WriteGate | None = None
    #: The SQLite database file (None for PostgreSQL and in-memory SQLite).
    sqlite_path: str | None = None

    @property
    def dialect(self) -> str:
        return self.write.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def dispose(self) -> None:
        self.read.dispose()
        if self.write is not self.read:
            self.write.dispose()


def _normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and use the psycopg 3 driver for it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, *, immediate: bool, synchronous: str) -> Engine:
    from fhir_server.core.storage.wal_checkpoint import COMMIT_CHECKPOINT_PAGES

    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
        cursor.execute("PRAGMA temp_store=MEMORY")
        if immediate:  # writers leave checkpoints to the background (fhir_server.core.wal_checkpoint)
            cursor.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def open_database(url: str, *, sqlite_synchronous: str = "FULL", statement_timeout_ms: int = 0) -> Database:
    """Open (and create or upgrade the schema of) the database at ``url``; statements running longer than
    ``statement_timeout_ms`` are stopped (0: no limit; :mod:`~fhir_server.core.storage.statement_timeout`)."""
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        file_path = path if path and path != ":memory:" else None
        db = Database(
            url,
            read=_sqlite_engine(url, immediate=False, synchronous=sqlite_synchronous),
            write=_sqlite_engine(url, immediate=True, synchronous=sqlite_synchronous),
            gate=WriteGate(file_path),
            sqlite_path=file_path,
        )
    else:
        # no ping before each checkout (a round trip per transaction): a connection the server dropped
        # fails on first use, SQLAlchemy then renews the pool, and Store.write retries the work
        engine = create_engine(url, pool_size=8, max_overflow=8)
        db = Database(url, read=engine, write=engine)
    for each in {db.read, db.write}:
        limit_statements(each, statement_timeout_ms)
    ensure_schema(db)
    return db


def ensure_schema(db: Database) -> None:
    """Create missing tables and record the schema version; refuse a database from a newer release."""
    with db.write.begin() as conn:
        if db.dialect == "postgresql":
            # several server processes may start at once: let one create the schema
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        metadata.create_all(conn)
        row = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "schema_version")).first()
        if row is None:
            conn.execute(insert(schema_info).values(key="schema_version", value=str(SCHEMA_VERSION)))
            log.info("created database schema version %s", SCHEMA_VERSION)
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"the database has schema version {row[0]}, newer than this server's {SCHEMA_VERSION}")
        elif int(row[0]) < SCHEMA_VERSION:
            _upgrade(conn, int(row[0]))


def _upgrade(conn, from_version: int) -> None:  # type: ignore[no-untyped-def]
    """Apply schema upgrades in order (none yet beyond version 1)."""
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        log.info("upgrading database schema to version %s", version)
    conn.execute(schema_info.update().where(schema_info.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
