"""Conditional-create locking and dropped connections on PostgreSQL, in process: a create waits only for
a concurrent create with the same condition (then finds its resource), never for other conditions, and
a condition that already matches takes no lock at all (SQLite serialises every write transaction
anyway); connections the server closed are replaced without a failed request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextvars import copy_context

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store, WriteUnit
from tests.conftest import POSTGRES_URL, fresh_postgres_database

SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"


@pytest.fixture
def service() -> Iterator[FhirService]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
    db = open_database(fresh_postgres_database(POSTGRES_URL))
    yield FhirService(Store(db, build_search_registry()))
    db.dispose()


def practitioner(value: str) -> dict:
    return {"resourceType": "Practitioner", "identifier": [{"system": SYSTEM, "value": value}]}


def create(service: FhirService, value: str) -> str:
    result = service.create(practitioner(value), if_none_exist=f"identifier={SYSTEM}|{value}")
    return result.stored.id


def test_only_the_same_condition_waits(service: FhirService) -> None:
    holding, release = threading.Event(), threading.Event()
    first_id: list[str] = []

    def slow_create(unit: WriteUnit) -> None:
        assert service.conditional_create_matches(unit, "Practitioner", f"identifier={SYSTEM}|1000") == []
        first_id.append(unit.put(practitioner("1000"), fresh_id=True)[0].id)
        holding.set()
        release.wait(20)  # holds the condition's lock until commit

    first = threading.Thread(target=copy_context().run, args=(service.store.write, slow_create))
    first.start()
    assert holding.wait(20)
    other = threading.Thread(target=copy_context().run, args=(create, service, "2000"))
    same_result: list[str] = []
    same = threading.Thread(target=copy_context().run, args=(lambda: same_result.append(create(service, "1000")),))
    other.start()
    same.start()
    other.join(20)
    assert not other.is_alive()  # a different condition did not wait for the open transaction
    same.join(1)
    assert same.is_alive()  # the same condition waits for it ...
    release.set()
    first.join(20)
    same.join(20)
    assert same_result == first_id  # ... and then finds its resource instead of creating a second


def test_a_matching_condition_takes_no_lock(service: FhirService) -> None:
    known = create(service, "3000")
    holding, release = threading.Event(), threading.Event()

    def hold_lock(unit: WriteUnit) -> None:
        unit.lock_conditional("Practitioner", f"identifier={SYSTEM}|3000")
        holding.set()
        release.wait(20)

    holder = threading.Thread(target=copy_context().run, args=(service.store.write, hold_lock))
    holder.start()
    assert holding.wait(20)
    try:
        result: list[str] = []
        resend = threading.Thread(target=copy_context().run, args=(lambda: result.append(create(service, "3000")),))
        resend.start()
        resend.join(20)
        assert result == [known]  # answered from the existing match while the lock was held elsewhere
    finally:
        release.set()
        holder.join(20)


def test_writes_and_reads_survive_the_database_closing_every_connection(service: FhirService) -> None:
    """No ping before each use: a pooled connection the server closed fails once, and is replaced."""
    import psycopg

    known = create(service, "4000")
    service.read("Practitioner", known)  # the read connection of this thread exists now
    database = service.store.db.write.url.database
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:  # type: ignore[arg-type]
        closed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    assert closed and closed[0] >= 1
    assert service.read("Practitioner", known).id == known
    assert create(service, "5000") != known
