"""The audit trail's write-ahead journal: an AuditEvent is on disk before its request is answered.

Request threads append each event (one JSON line, its id already chosen) to this process's journal
file and fsync it before the response goes out; the audit writer stores the events in the database
later, in batches. When a batch is stored, the journal segment it came from is deleted. A process
killed in between (``kill -9``, a lost power supply) leaves its segments behind: the next server
process on this machine, for the same database, stores their events (skipping those already stored)
at start. The directory is per database (a hash of its URL), so a journal never lands in another
database's trail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from fhir_server.core import jsonio

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"


def journal_directory(root: Path, database_url: str) -> Path:
    """The journal directory of the database ``database_url`` under ``root``."""
    return root / hashlib.sha256(database_url.encode()).hexdigest()[:16]


class AuditJournal:
    """This process's journal: append (durably), seal a segment, drop a stored segment, replay the dead."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        #: fsync each event (survives a power loss); False: written to the OS only (survives ``kill -9``)
        self.fsync = fsync
        self.pid = os.getpid()
        self._segment = 0
        self._lock = threading.Lock()  # appends and the queue they feed
        self._sync_lock = threading.Lock()  # fsyncs and sealing: one fsync covers every line written before it
        self._written = 0
        self._synced = 0
        self._file = self._open()

    def _path(self, segment: int) -> Path:
        return self.directory / f"{self.pid}-{segment}{_SUFFIX}"

    def _open(self):  # type: ignore[no-untyped-def]
        return self._path(self._segment).open("ab", buffering=0)

    def append(self, event: dict, then: object = None) -> None:
        """Write ``event`` (and fsync it); ``then`` (a callable) runs under the append lock (queue the event).

        Threads answering at the same moment share fsyncs: a thread whose line an fsync begun after
        its write already covers does not sync again (group commit)."""
        line = jsonio.dumps(event) + b"\n"
        with self._lock:
            if os.getpid() != self.pid:  # a forked process gets a journal of its own
                self.pid, self._segment = os.getpid(), 0
                self._file = self._open()
            self._file.write(line)
            self._written += 1
            mine = self._written
            if callable(then):
                then()
        if self.fsync:
            with self._sync_lock:
                if self._synced < mine:
                    covered = self._written  # every line counted here was written before this fsync
                    os.fsync(self._file.fileno())
                    self._synced = covered

    def seal(self, drain: object) -> Path:
        """Close the current segment and start the next; ``drain`` (a callable) runs under the lock, so
        what it takes from the queue is exactly what the sealed segment holds. Returns the sealed file."""
        with self._sync_lock, self._lock:
            sealed = self._path(self._segment)
            if self.fsync:
                os.fsync(self._file.fileno())  # threads still waiting for their fsync find it done
                self._synced = self._written
            self._file.close()
            self._segment += 1
            self._file = self._open()
            if callable(drain):
                drain()
        return sealed

    def close(self) -> None:
        with self._lock:
            self._file.close()
            self._path(self._segment).unlink(missing_ok=True)

    def orphans(self) -> Iterator[tuple[Path, list[dict]]]:
        """Segments left by processes that are gone (also half-replayed ones), each claimed (renamed) by
        this process, with their events."""
        for path in sorted(self.directory.iterdir()):
            base, _, replayer = path.name.partition(_SUFFIX + ".replay-")
            owner = replayer or base.split("-", 1)[0]
            if not (path.name.endswith(_SUFFIX) or replayer) or not owner.isdigit():
                continue
            if int(owner) == self.pid or _alive(int(owner)):
                continue
            claimed = path.with_name(f"{base}{_SUFFIX}.replay-{self.pid}")
            try:
                path.rename(claimed)  # only one process claims a segment
            except OSError:
                continue
            yield claimed, list(_events(claimed))


def _events(path: Path) -> Iterator[dict]:
    for line in path.read_bytes().splitlines():
        try:
            event = jsonio.loads(line)
        except ValueError:  # a line torn by the crash was never acknowledged: nothing to store
            continue
        if isinstance(event, dict) and event.get("resourceType") == "AuditEvent" and event.get("id"):
            yield event


def _alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie, killed but not yet reaped, is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal check
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
