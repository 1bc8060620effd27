"""Deferred search index rows (AuditEvents), in process on real databases: an event stored with its
index deferred is readable at once, absent from index tables until the backlog is worked off, and a
search of AuditEvent (or one that reaches AuditEvent) works the backlog off first, so it never misses one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.storage import index_backlog
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import idx_token
from fhir_server.core.storage.schema import index_backlog as backlog_table
from fhir_server.core.storage.store import Store
from tests.conftest import BACKENDS, database_url


def event(code: str) -> dict:
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": code}],
        "action": "R",
        "recorded": "2026-11-23T10:00:00+00:00",
        "outcome": "0",
        "agent": [{"who": {"display": "a client"}, "requestor": True}],
        "source": {"observer": {"display": "test"}},
    }


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirService]:
    url = database_url(request.param, tmp_path, "db.sqlite3")
    db = open_database(url)
    yield FhirService(Store(db, build_search_registry()))
    db.dispose()


def store_deferred(service: FhirService, codes: list[str]) -> list[str]:
    def work(unit):  # type: ignore[no-untyped-def]
        return [unit.put(event(code), defer_index=True)[0].id for code in codes]

    return service.store.write(work)


def token_rows(service: FhirService) -> int:
    with service.store.reading() as conn:
        return conn.execute(select(func.count()).where(idx_token.c.res_type == "AuditEvent")).scalar_one()


def subtypes_found(service: FhirService, code: str) -> set[str]:
    _, page = service.search("AuditEvent", [("subtype", code), ("_count", "1000")])
    return {stored.id for stored in page.matches}


def test_deferred_event_is_readable_at_once_and_indexed_only_later(service: FhirService) -> None:
    [event_id] = store_deferred(service, ["read"])
    assert service.read("AuditEvent", event_id).body is not None
    assert token_rows(service) == 0
    assert index_backlog.has_backlog(service.store, "AuditEvent")
    assert index_backlog.catch_up(service.store, "AuditEvent") == 1
    assert token_rows(service) > 0
    assert not index_backlog.has_backlog(service.store, "AuditEvent")
    assert index_backlog.catch_up(service.store, "AuditEvent") == 0


def test_search_works_the_backlog_off_first_across_batches(service: FhirService) -> None:
    many = index_backlog.BATCH + 7  # more than one batch
    reads = store_deferred(service, ["read"] * many)
    searches = store_deferred(service, ["search-type"] * 3)
    assert subtypes_found(service, "search-type") == set(searches)
    assert subtypes_found(service, "read") == set(reads)
    with service.store.reading() as conn:
        assert conn.execute(select(func.count()).select_from(backlog_table)).scalar_one() == 0


def test_a_search_that_reaches_audit_events_catches_up_and_others_do_not(service: FhirService) -> None:
    store_deferred(service, ["read"])
    service.search("Patient", [("name", "x")])
    assert index_backlog.has_backlog(service.store, "AuditEvent")  # no reason to pay for it
    service.search("Patient", [("_revinclude", "AuditEvent:patient")])
    assert not index_backlog.has_backlog(service.store, "AuditEvent")


def test_limited_catch_up_leaves_the_rest_for_later(service: FhirService) -> None:
    store_deferred(service, ["read"] * (index_backlog.BATCH + 3))
    assert index_backlog.catch_up(service.store, "AuditEvent", limit=1) == index_backlog.BATCH
    assert index_backlog.has_backlog(service.store, "AuditEvent")
    assert index_backlog.catch_up(service.store, "AuditEvent") == 3


def subtype_rows(service: FhirService, event_id: str) -> list[str]:
    with service.store.reading() as conn:
        return sorted(
            conn.execute(
                select(idx_token.c.code).where(
                    idx_token.c.res_type == "AuditEvent", idx_token.c.res_id == event_id, idx_token.c.param == "subtype"
                )
            ).scalars()
        )


def test_rows_computed_before_the_write_follow_a_version_stored_meanwhile(service: FhirService) -> None:
    """Rows are computed from a plain read, outside the write lock: an event updated between that read
    and the write was indexed when the update was put, and keeps exactly those rows."""
    [event_id] = store_deferred(service, ["read"])
    prepared = index_backlog._prepare_batch(service.store, "AuditEvent", 10)
    changed = event("update") | {"id": event_id}
    service.store.write(lambda unit: unit.put(changed, resource_id=event_id))  # a new version, indexed at once
    assert service.store.write(lambda unit: index_backlog._store_batch(unit, "AuditEvent", prepared)) == 1
    assert subtype_rows(service, event_id) == ["update"]  # once, and from the stored version
    assert not index_backlog.has_backlog(service.store, "AuditEvent")


def test_a_batch_another_process_indexed_meanwhile_is_not_indexed_twice(service: FhirService) -> None:
    [event_id] = store_deferred(service, ["read"])
    prepared = index_backlog._prepare_batch(service.store, "AuditEvent", 10)
    assert index_backlog.catch_up(service.store, "AuditEvent") == 1  # the other process, first
    assert service.store.write(lambda unit: index_backlog._store_batch(unit, "AuditEvent", prepared)) == 0
    assert subtype_rows(service, event_id) == ["read"]
