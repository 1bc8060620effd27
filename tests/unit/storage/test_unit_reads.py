"""Reads inside a write unit, in process on a real SQLite file: what the unit wrote is read back as its
latest version (also before anything is flushed), a delete reads as 410, and a restricted caller still
sees only what its labels allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store


@pytest.fixture
def service(tmp_path: Path) -> FhirService:
    return FhirService(Store(open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}"), build_search_registry()))


def patient(name: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": name}]}


def test_a_unit_reads_its_own_latest_writes(service: FhirService) -> None:
    earlier = service.create(patient("earlier")).stored.id

    def work(unit):  # type: ignore[no-untyped-def]
        seen = [unit.read("Patient", earlier).version_id]
        first = unit.put(patient("one"))[0]
        seen.append(unit.read("Patient", first.id).body)
        unit.put(dict(patient("two"), id=first.id))
        seen.append(unit.read("Patient", first.id).version_id)
        seen.append(b'"two"' in unit.read("Patient", first.id).body)
        unit.delete("Patient", first.id)
        with pytest.raises(FhirError) as gone:
            unit.read("Patient", first.id)
        seen.append(gone.value.status)
        return seen

    version, body, second, is_two, status = service.store.write(work)
    assert version == 1 and b'"one"' in body and second == 2 and is_two and status == 410


def test_a_restricted_caller_reads_inside_a_unit_only_what_it_may_see(service: FhirService) -> None:
    hidden = service.create(patient("hidden")).stored.id  # no labels: administrators only

    def work(unit):  # type: ignore[no-untyped-def]
        mine = unit.put(patient("mine"))[0]
        assert unit.read("Patient", mine.id).id == mine.id  # its own label, flushed first
        with pytest.raises(FhirError) as refused:
            unit.read("Patient", hidden)
        return refused.value.status

    label = "org:910000001"
    with access.acting_as(access.Access(labels=frozenset({label}), stamps=frozenset({label}))):
        assert service.store.write(work) == 404
