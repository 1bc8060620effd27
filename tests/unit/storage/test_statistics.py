"""Planner statistics are kept: the keeper of a SQLite server process samples every index when it starts
(and then now and then); on PostgreSQL a refresh analyses the tables at once (after a bulk load)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.storage import access, statistics
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store
from tests.conftest import POSTGRES_URL, fresh_postgres_database


def stored(url: str) -> FhirService:
    service = FhirService(Store(open_database(url), build_search_registry()))
    with access.acting_as(access.SYSTEM):
        for n in range(5):
            service.create({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": str(n)}]})
    return service


def test_a_sqlite_server_process_samples_its_indexes_when_it_starts(tmp_path: Path) -> None:
    service = stored(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    keeper = statistics.StatisticsKeeper(service.store, interval=3600)
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        rows = []
        while time.monotonic() < deadline and not rows:
            time.sleep(0.05)
            with service.store.db.read.connect() as conn:
                has_table = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
                if has_table:
                    rows = conn.execute(text("SELECT idx FROM sqlite_stat1 WHERE tbl = 'idx_token'")).all()
        assert {"ix_idx_token_0", "ix_idx_token_owner"} <= {r[0] for r in rows}
    finally:
        keeper.stop()
        service.store.db.dispose()


def test_postgresql_tables_are_vacuumed_and_analysed_on_a_refresh() -> None:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
    service = stored(fresh_postgres_database(POSTGRES_URL))
    try:
        statistics.refresh(service.store)
        with service.store.db.read.connect() as conn:
            analysed, vacuumed = conn.execute(
                text("SELECT last_analyze, last_vacuum FROM pg_stat_user_tables WHERE relname = 'idx_token'")
            ).one()
        assert analysed is not None and vacuumed is not None  # vacuumed too: index-only scans after a load
    finally:
        service.store.db.dispose()


def test_postgresql_plans_every_search_with_its_own_values() -> None:
    """psycopg prepares a statement run five times and PostgreSQL would then reuse one generic plan for
    any values; a search's best plan depends on its values (the regional pull: 20 ms → 560 ms)."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
    db = open_database(fresh_postgres_database(POSTGRES_URL))
    try:
        with db.read.connect() as conn:
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        db.dispose()
