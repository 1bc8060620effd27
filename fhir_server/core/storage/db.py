"""Opening a database (SQLite or PostgreSQL), and automatic schema creation and upgrade.

The engines, and how each database serialises its writers, are in :mod:`fhir_server.core.storage.sqlite`
(``BEGIN IMMEDIATE``, the write gate, group commit) and :mod:`fhir_server.core.storage.postgres` (row
locks, advisory locks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.engine import make_url

from fhir_server.core.storage.postgres import lock_schema, postgres_engine
from fhir_server.core.storage.schema import SCHEMA_VERSION, metadata, schema_info
from fhir_server.core.storage.sqlite import WriteGate, sqlite_engine
from fhir_server.core.storage.statement_timeout import limit_statements, without_limit

log = logging.getLogger(__name__)


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


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and use the psycopg 3 driver for it."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def open_database(url: str, *, sqlite_synchronous: str = "FULL", statement_timeout_ms: int = 0) -> Database:
    """Open (and create or upgrade the schema of) the database at ``url``; statements running longer than
    ``statement_timeout_ms`` are stopped (0: no limit; :mod:`~fhir_server.core.storage.statement_timeout`)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        file_path = path if path and path != ":memory:" else None
        db = Database(
            url,
            read=sqlite_engine(url, immediate=False, synchronous=sqlite_synchronous),
            write=sqlite_engine(url, immediate=True, synchronous=sqlite_synchronous),
            gate=WriteGate(file_path),
            sqlite_path=file_path,
        )
    else:
        engine = postgres_engine(url)
        db = Database(url, read=engine, write=engine)
    for each in {db.read, db.write}:
        limit_statements(each, statement_timeout_ms)
    ensure_schema(db)
    return db


def ensure_schema(db: Database) -> None:
    """Create missing tables and record the schema version; refuse a database from a newer release."""
    with db.write.begin() as conn, without_limit(conn):  # creating or upgrading takes what the data asks
        if db.dialect == "postgresql":
            lock_schema(conn)
        metadata.create_all(conn)
        row = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "schema_version")).first()
        if row is None:
            conn.execute(insert(schema_info).values(key="schema_version", value=str(SCHEMA_VERSION)))
            log.info("created database schema version %s", SCHEMA_VERSION)
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"the database has schema version {row[0]}, newer than this server's {SCHEMA_VERSION}")
        elif int(row[0]) < SCHEMA_VERSION:
            _upgrade(conn, int(row[0]))


#: schema version → the statements that bring the previous version to it
_UPGRADES: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE search_snapshots ADD COLUMN owner TEXT",),  # stored searches belong to their caller
    # keyset paging: no stored result lists; stored searches (transient) made anew with their consistency point
    # and index rows kept in id order within a value, so a search walks them a page at a time (made anew)
    3: (
        "DROP TABLE IF EXISTS search_results",
        "DROP TABLE IF EXISTS search_snapshots",
        *(
            f"DROP INDEX IF EXISTS {name}"
            for name in (
                *("ix_idx_token_0", "ix_idx_reference_0", "ix_idx_date_0", "ix_idx_date_1", "ix_idx_uri_0"),
                *(f"ix_idx_{kind}_owner" for kind in ("token", "reference", "string", "date", "number", "uri")),
            )
        ),
    ),
    # combo indexes: the table is new (created below); its rows are built from the stored index rows when a
    # store opens the database with the combos its data defines (core/storage/combo_index.py)
    4: (),
}


def _upgrade(conn, from_version: int) -> None:  # type: ignore[no-untyped-def]
    """Apply schema upgrades in order."""
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        log.info("upgrading database schema to version %s", version)
        for statement in _UPGRADES.get(version, ()):
            conn.execute(text(statement))
    metadata.create_all(conn)  # tables an upgrade dropped to make anew
    for table in metadata.sorted_tables:  # and indexes (create_all makes those of new tables only)
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    conn.execute(schema_info.update().where(schema_info.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
