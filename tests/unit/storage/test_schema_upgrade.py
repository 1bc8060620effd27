"""A database of an earlier schema version is upgraded in place when the server opens it."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect

from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import SCHEMA_VERSION


def test_version_1_gains_the_owner_of_stored_searches(tmp_path):
    path = tmp_path / "db.sqlite3"
    open_database(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:  # make it a version 1 database: stored searches had no owner
        conn.execute("ALTER TABLE search_snapshots DROP COLUMN owner")
        conn.execute("UPDATE schema_info SET value = '1' WHERE key = 'schema_version'")
    db = open_database(f"sqlite:///{path}")
    try:
        assert "owner" in {c["name"] for c in inspect(db.read).get_columns("search_snapshots")}
        with sqlite3.connect(path) as conn:
            version = conn.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 2
    finally:
        db.dispose()
