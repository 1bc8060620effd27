"""The caller's access is explicit, in process on real databases: storage used without an access context
raises (it never sees everything), the server's own work (``access.SYSTEM``) sees every resource, and a
restricted caller sees only the resources carrying one of its labels (and the public catalogue types)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import Context
from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.indexing.rows import plain_matches
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store
from tests.conftest import BACKENDS, database_url

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
ORG_A, ORG_B = access.org_label("910000001"), access.org_label("910000002")


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirService]:
    url = database_url(request.param, tmp_path, "db.sqlite3")
    db = open_database(url)
    yield FhirService(Store(db, build_search_registry()))
    db.dispose()


def patient(value: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": FNR, "value": value}]}


def written_by(service: FhirService, label: str, resource: dict) -> str:
    """Store ``resource`` as a caller whose writes carry ``label``; returns its id."""
    with access.acting_as(access.Access(labels=frozenset({label}), stamps=frozenset({label}))):
        return service.create(resource).stored.id


def without_access(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a fresh context (no access set, as in a new thread); what it raised, if anything."""
    try:
        Context().run(call)
    except BaseException as exc:
        return exc
    return None


def test_storage_without_an_access_context_raises(service: FhirService) -> None:
    rid = written_by(service, ORG_A, patient("1"))
    store = service.store
    matches = plain_matches(store.registry, "Patient", [("identifier", f"{FNR}|1")])
    assert matches is not None
    calls: dict[str, Callable[[], object]] = {
        "read": lambda: store.read("Patient", rid),
        "vread": lambda: store.vread("Patient", rid, "1"),
        "history": lambda: store.history("Patient", rid),
        "match": lambda: store.match_ids("Patient", matches),
        "search": lambda: service.search("Patient", [("identifier", f"{FNR}|1")]),
        "conditional match": lambda: service.conditional_matches(None, "Patient", f"identifier={FNR}|1"),
        "public type": lambda: store.read("Organization", "anything"),
        "create": lambda: service.create(patient("2")),
        "update": lambda: service.update("Patient", rid, {**patient("1"), "id": rid}),
    }
    for name, call in calls.items():
        raised = without_access(call)
        assert isinstance(raised, access.AccessNotSet), f"{name}: {raised!r}"
    with pytest.raises(access.AccessNotSet):
        access.enter(None)  # type: ignore[arg-type]  # "nobody" is not a way to say "everything"
    # nothing was written without access, and the stored resource is as it was
    assert [s.version_id for s in service.store.history("Patient")[0]] == [1]


def test_the_system_sees_everything(service: FhirService) -> None:
    ids = {written_by(service, ORG_A, patient("3")), written_by(service, ORG_B, patient("3"))}
    with access.acting_as(access.SYSTEM):
        assert {service.read("Patient", rid).id for rid in ids} == ids
        _, page = service.search("Patient", [("identifier", f"{FNR}|3")])
        assert {s.id for s in page.matches} == ids
        assert set(service.conditional_matches(None, "Patient", f"identifier={FNR}|3")) == ids
        assert {s.id for s in service.store.history("Patient")[0]} == ids


def test_a_restricted_caller_sees_only_what_carries_its_labels(service: FhirService) -> None:
    mine = written_by(service, ORG_A, patient("4"))
    theirs = written_by(service, ORG_B, patient("4"))
    catalogue = written_by(service, ORG_B, {"resourceType": "Organization", "name": "Helse Test"})
    with access.acting_as(access.Access(labels=frozenset({ORG_A}))):
        assert service.read("Patient", mine).id == mine
        with pytest.raises(FhirError) as refused:
            service.read("Patient", theirs)
        assert refused.value.status == 404  # as if it did not exist
        with pytest.raises(FhirError):
            service.store.vread("Patient", theirs, "1")
        _, page = service.search("Patient", [("identifier", f"{FNR}|4")])
        assert [s.id for s in page.matches] == [mine]
        assert service.conditional_matches(None, "Patient", f"identifier={FNR}|4") == [mine]
        assert {s.id for s in service.store.history("Patient")[0]} == {mine}
        assert service.read("Organization", catalogue).id == catalogue  # public types: every caller
