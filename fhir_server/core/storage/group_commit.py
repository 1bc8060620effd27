"""Group commit for SQLite: write transactions of several request threads share one commit.

SQLite has one writer at a time, and with ``synchronous=FULL`` every commit waits for the disk
(``fsync``, several milliseconds here). One commit per request would make that wait the limit of
every write. Instead, the threads of a process that want to write at the same moment take turns on
one database transaction: each runs its work inside its own ``SAVEPOINT`` (a failing work rolls back
only its own changes; the group's first work needs none: if it fails, nothing else is in the
transaction yet and all of it is rolled back), and the last of them commits for all. Nobody is
answered before the commit that holds its writes is on disk, so durability is what it was; only the
number of ``fsync`` calls goes down. A thread alone commits at once, as before.

Works run on the caller's own thread (its context variables, e.g. the caller's access, stay with it),
one at a time, in the order they get their turn; a work sees the writes of the works before it in the
same group, exactly as if they had committed just before (SQLite serialises writers anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection

if TYPE_CHECKING:
    from fhir_server.core.storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A group commits after this many works even when more threads are waiting.
MAX_GROUP = 16


class _Group:
    """One open database transaction shared by several works."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transaction = conn.begin()
        self.size = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.discard = False  # its only work failed: roll back instead of committing


class GroupCommit:
    """Runs write works of one process's threads in shared SQLite transactions."""

    def __init__(self, db: Database, max_group: int = MAX_GROUP) -> None:
        self.db = db
        self.max_group = max_group
        self._turn = threading.Lock()  # whose work runs on the group's connection now
        self._count_lock = threading.Lock()
        self._waiting = 0
        self._group: _Group | None = None
        #: Commits made, and works they carried (for tests and the curious).
        self.commits = 0
        self.works = 0

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in the current group (in a savepoint unless it is the group's first work);
        return once its writes are committed."""
        with self._count_lock:
            self._waiting += 1
        self._turn.acquire()
        with self._count_lock:
            self._waiting -= 1
        try:
            group = self._group or self._open()
        except BaseException:
            self._turn.release()
            raise
        group.size += 1
        first = group.size == 1  # alone in the transaction so far: a failure rolls all of it back
        failure: BaseException | None = None
        result: T | None = None
        try:
            if not first:
                group.conn.exec_driver_sql("SAVEPOINT group_work")
            result = work(group.conn)
            if not first:
                group.conn.exec_driver_sql("RELEASE group_work")
        except BaseException as exc:  # the work's own failure: only its changes are undone
            failure = exc
            try:
                if first:
                    group.discard = True
                else:
                    group.conn.exec_driver_sql("ROLLBACK TO group_work")
                    group.conn.exec_driver_sql("RELEASE group_work")
            except BaseException as rollback_error:  # the transaction itself is broken
                group.error = rollback_error
        if group.error is None and not group.discard and self._waiting and group.size < self.max_group:
            # another thread is about to take its turn: it (or a later one) commits for this work too
            self._turn.release()
            if failure is not None:
                raise failure
            group.done.wait()
        else:
            self._close(group)
            self._turn.release()
            if failure is not None:
                raise failure
        if group.error is not None:
            raise group.error
        return result  # type: ignore[return-value]

    def _open(self) -> _Group:
        if self.db.gate is not None:
            self.db.gate.acquire()
        try:
            conn = self.db.write.connect()
            try:
                group = self._group = _Group(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            if self.db.gate is not None:
                self.db.gate.release()
            raise
        return group

    def _close(self, group: _Group) -> None:
        """Commit (or, when broken, roll back) the group and wake every work waiting for it."""
        self._group = None
        try:
            if group.error is None and not group.discard:
                group.transaction.commit()
                self.commits += 1
                self.works += group.size
            else:
                group.transaction.rollback()
        except BaseException as exc:
            group.error = exc
            log.warning("a group commit of %s writes failed: %s", group.size, type(exc).__name__)
        finally:
            group.conn.close()
            if self.db.gate is not None:
                self.db.gate.release()
            group.done.set()
