"""The statement timeout (issue 15, finding 7) stops a long statement on SQLite and PostgreSQL, and the
connection serves the next statement; the HTTP edge answers such a stop with 503 (``api/errors.py``)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.statement_timeout import is_statement_timeout, without_limit
from tests.conftest import POSTGRES_URL, fresh_postgres_database

#: Counts to a billion: minutes of work for either database.
SLOW = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'timeout.sqlite3'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL")
    return fresh_postgres_database(POSTGRES_URL)


def test_a_long_statement_is_stopped_and_the_connection_goes_on(database_url):
    db = open_database(database_url, statement_timeout_ms=200)
    try:
        for engine in {db.read, db.write}:
            with pytest.raises(OperationalError) as stopped, engine.connect() as conn:
                conn.execute(text(SLOW)).scalar()
            assert is_statement_timeout(stopped.value)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


def test_other_errors_are_not_timeouts():
    assert not is_statement_timeout(ValueError("interrupted"))


#: Counts to three million: over the limits below on either database, seconds at most.
LONGER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c"


def test_maintenance_at_open_runs_without_the_limit_and_the_limit_applies_after(database_url):
    # a new database gets its schema however short the limit (creating it is maintenance, not a request)
    db = open_database(database_url, statement_timeout_ms=1)
    try:
        with db.write.begin() as conn, without_limit(conn):  # as a schema upgrade or a combo build at open
            assert conn.execute(text(LONGER)).scalar() == 3000000
        with pytest.raises(OperationalError) as stopped, db.write.begin() as conn:
            conn.execute(text(LONGER)).scalar()
        assert is_statement_timeout(stopped.value)
    finally:
        db.dispose()
