"""SQLite's write-ahead log copied back into the database file by a background thread.

In WAL mode every commit appends pages to the log, and by default the commit that takes the log past
1000 pages also copies it back into the database file (a checkpoint: tens of milliseconds of work and
an ``fsync``). That commit holds the database's single write lock meanwhile, and every other writer of
every process waits for it. So write connections here checkpoint on commit only when the log is very
long (:data:`COMMIT_CHECKPOINT_PAGES`, a safety net for processes without this thread, e.g. ``load``),
and each server process runs a :class:`WalCheckpointer` that checkpoints in ``PASSIVE`` mode: it
copies what it can without waiting for, or blocking, any reader or writer. Two processes checkpointing
at once is harmless: one of them finds the checkpoint busy and tries again at its next tick.

The log starts again from its beginning when a writer finds it entirely copied back and no reader in
it. Under a sustained write load that moment can be rare (measured: the log reached 9000-16000 pages
between restarts), so the log stays below :data:`COMMIT_CHECKPOINT_PAGES`: the committing writer that
crosses it checkpoints (cheaply: the thread has already copied all but the last fraction of a second),
and the next writer restarts the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

#: Pages of log after which a committing write connection checkpoints by itself (SQLite's default: 1000).
COMMIT_CHECKPOINT_PAGES = 20000
#: Seconds between background checkpoints.
INTERVAL_SECONDS = 0.25


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite database file every ``interval`` seconds."""

    def __init__(self, path: str, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Checkpoints that found pages in the log (for tests and the curious).
        self.checkpoints = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One passive checkpoint: copy back what can be copied now."""
        busy, _, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if not busy and copied > 0:  # busy: another process's checkpoint ran
            self.checkpoints += 1

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint(conn)
                except sqlite3.Error as exc:  # busy or locked: the next tick tries again
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            conn.close()
