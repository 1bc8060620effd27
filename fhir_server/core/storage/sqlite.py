"""SQLite: engines, the write gate, and the store's SQLite dialect.

SQLite has one writer at a time. Every write transaction starts with ``BEGIN IMMEDIATE``, which takes
the database's write lock up front, so a check-then-write (conditional create, If-Match) cannot
interleave with another writer, across threads and across gunicorn worker processes; WAL mode keeps
readers running meanwhile. Writers queue at the :class:`WriteGate`, the threads of one process share
commits (:mod:`fhir_server.core.storage.group_commit`), and a background thread copies the write-ahead
log back (:mod:`fhir_server.core.storage.wal_checkpoint`). With the write lock held, rows need no
locks of their own and conditional operations need no lock besides it.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from fhir_server.core.storage.group_commit import GroupCommit
from fhir_server.core.storage.wal_checkpoint import COMMIT_CHECKPOINT_PAGES

if TYPE_CHECKING:
    from fhir_server.core.storage.db import Database

T = TypeVar("T")


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


def sqlite_engine(url: str, *, immediate: bool, synchronous: str) -> Engine:
    """An engine whose connections run in WAL mode; ``immediate``: transactions take the write lock."""
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 16 MiB page cache per connection (a process pools up to 9: the OS caches the file for all of them);
        # 64 MiB took a server process past 500 MB at 100 000 referrals
        cursor.execute("PRAGMA cache_size=-16384")
        cursor.execute("PRAGMA temp_store=MEMORY")
        if immediate:  # writers leave checkpoints to the background (wal_checkpoint.py)
            cursor.execute(f"PRAGMA wal_autocheckpoint={COMMIT_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SqliteDialect:
    """The store's SQLite parts (see :class:`fhir_server.core.storage.dialect.Dialect`)."""

    mark = "?"
    row_lock = ""  # the writer holds the database's write lock
    plans_by_hand = True
    copy_threshold = None

    def __init__(self, db: Database) -> None:
        #: Concurrent writers of this process share commits (see group_commit.py).
        self.group_commit = GroupCommit(db)

    def run_write(self, work: Callable[[Connection], T]) -> T:
        return self.group_commit.run(work)

    def lock_conditional(self, conn: Connection, resource_type: str, query: str) -> None:
        """Nothing to do: the write transaction already holds the database's write lock."""

    def pipeline(self, cursor: Any) -> Any:
        return nullcontext()

    def copy_rows(self, cursor: Any, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        raise NotImplementedError("SQLite inserts go through multi-row INSERT statements")

    def open_reader(self, raw_connection: Any) -> None:
        """Nothing to do: the read engine's connections run without a transaction until ``BEGIN``."""
