"""SQLite write-ahead log checkpoints, on a real SQLite file: committing writers no longer copy the log
back into the database file (which held the write lock for every other writer); the background
checkpointer does, without blocking them, so the log stays short."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from fhir_server.components import build_search_registry
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store
from fhir_server.core.storage.wal_checkpoint import COMMIT_CHECKPOINT_PAGES, WalCheckpointer

WRITES = 250


def write_patients(store: Store, count: int) -> None:
    for i in range(count):
        patient = {"resourceType": "Patient", "name": [{"family": f"Nordmann{i}", "given": ["Kari", "Ola"]}]}
        store.write(lambda unit, patient=patient: unit.put(patient))


def log_pages(path: Path) -> float:
    """The write-ahead log file's size in pages: its high-water mark (a restarted log is written over
    from its start, so the file grows only while nobody copies the log back)."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return Path(f"{path}-wal").stat().st_size / page_size


def test_writers_do_not_checkpoint_and_the_background_thread_does(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = open_database(f"sqlite:///{path}", sqlite_synchronous="OFF")
    store = Store(db, build_search_registry())
    with db.write.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == COMMIT_CHECKPOINT_PAGES

    write_patients(store, WRITES)
    grown = log_pages(path)
    assert grown > 1500  # SQLite's default would have checkpointed (and restarted the log) at 1000 pages

    checkpointer = WalCheckpointer(str(path), interval=0.005)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints > 0
        write_patients(store, WRITES)  # the log restarts once copied back: the file grows no further
        assert log_pages(path) < grown * 1.25  # without the checkpointer: about twice as long
    finally:
        checkpointer.stop()
    with db.read.connect() as conn:  # nothing lost on the way
        assert conn.exec_driver_sql("SELECT count(*) FROM resources WHERE res_type = 'Patient'").scalar() == 2 * WRITES
    db.dispose()
