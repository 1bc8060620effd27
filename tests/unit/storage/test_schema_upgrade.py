"""A database of an earlier schema version is upgraded in place when the server opens it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import SCHEMA_VERSION, schema_info
from tests.conftest import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_version_1_gains_owned_stored_searches_with_a_consistency_point_and_no_result_lists(
    backend: str, tmp_path: Path
) -> None:
    url = database_url(backend, tmp_path, "db.sqlite3")
    db = open_database(url)
    with db.write.begin() as conn:  # make it a version 1 database: stored searches had no owner
        conn.execute(text("ALTER TABLE search_snapshots DROP COLUMN owner"))
        conn.execute(text("ALTER TABLE search_snapshots DROP COLUMN as_of_seq"))
        conn.execute(text("CREATE TABLE search_results (snapshot_id VARCHAR(36), position INTEGER)"))
        conn.execute(schema_info.update().where(schema_info.c.key == "schema_version").values(value="1"))
    db.dispose()
    db = open_database(url)
    try:
        assert {"owner", "as_of_seq"} <= {c["name"] for c in inspect(db.read).get_columns("search_snapshots")}
        assert "search_results" not in inspect(db.read).get_table_names()
        with db.read.begin() as conn:
            version = conn.execute(select(schema_info.c.value).where(schema_info.c.key == "schema_version")).scalar()
        assert int(version) == SCHEMA_VERSION == 4
    finally:
        db.dispose()
