"""Planner statistics kept current, so the database chooses the index a search's shape was made for.

SQLite keeps no statistics unless told (``ANALYZE``); without them it can walk a whole index for a
lookup of twenty rows. Each SQLite server process runs a :class:`StatisticsKeeper`: at start and then
every :data:`INTERVAL_SECONDS` it samples every index (``PRAGMA analysis_limit``: about a thousand rows
an index, some tens of milliseconds however large the database) under the write lock, like any write.
PostgreSQL's autovacuum keeps its own; after a bulk load :func:`refresh` vacuums and analyses at once.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection

from fhir_server.core.polling import PollingWorker
from fhir_server.core.storage.db import Database
from fhir_server.core.storage.store import Store

log = logging.getLogger(__name__)

#: Seconds between two refreshes by a server process (SQLite).
INTERVAL_SECONDS = 600.0
#: Rows SQLite samples per index.
SAMPLE_ROWS = 1000


def refresh(store: Store) -> None:
    """Bring the planner's statistics up to date. SQLite: sampled ``ANALYZE`` under the write lock.
    PostgreSQL (after a bulk load): ``VACUUM (ANALYZE)``, which also marks the new rows all-visible, so
    index-only scans need not visit the table (a vacuum runs outside a transaction)."""
    started = time.perf_counter()
    if store.db.is_sqlite:
        store.write(lambda unit: analyse_sqlite(unit.conn))
    else:
        vacuum_analyse_postgres(store.db)
    log.info("planner statistics refreshed in %.0f ms", (time.perf_counter() - started) * 1000)


def analyse_sqlite(conn: Connection) -> None:
    """Sampled statistics of every index of a SQLite database (in the caller's write transaction)."""
    conn.exec_driver_sql(f"PRAGMA analysis_limit={SAMPLE_ROWS}")
    conn.exec_driver_sql("ANALYZE")


def vacuum_analyse_postgres(db: Database) -> None:
    """``VACUUM (ANALYZE)`` of a PostgreSQL database (outside any transaction)."""
    with db.write.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")


class StatisticsKeeper(PollingWorker):
    """Refreshes SQLite's statistics at start and every ``interval`` seconds."""

    thread_name = "statistics-keeper"

    def __init__(self, store: Store, interval: float = INTERVAL_SECONDS) -> None:
        super().__init__(interval)
        self.store = store

    def run_once(self) -> bool:
        refresh(self.store)
        return False  # then wait the interval
