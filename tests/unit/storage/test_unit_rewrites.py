"""A resource written more than once inside one write unit (in process, both databases).

The unit sends its inserts once, at the end: a resource it created and then updated, or updated twice, or
created and deleted, must end as its last version, with exactly that version's index rows; one updated that
was stored before keeps its version history; and a unit that writes many resources reads none of its pending
rows back from the database to answer "what is current".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store, WriteUnit
from tests.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirService]:
    url = database_url(request.param, tmp_path, "db.sqlite3")
    db = open_database(url)
    with access.acting_as(access.SYSTEM):
        yield FhirService(Store(db, build_search_registry()))
    db.dispose()


def patient(pid: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def found(service: FhirService, family: str) -> list[str]:
    return service.conditional_matches(None, "Patient", f"family={family}")


def test_created_then_updated_in_one_unit_ends_as_its_last_version(service: FhirService) -> None:
    def work(unit: WriteUnit) -> None:
        unit.put(patient("a", "First"))
        unit.put(patient("a", "Second"))
        unit.put(patient("a", "Third"))
        unit.put(patient("b", "Other"))

    service.store.write(work)
    stored = service.read("Patient", "a")
    assert stored.version_id == 3 and b"Third" in (stored.body or b"")
    assert [v.version_id for v in service.store.history("Patient", "a")[0]] == [3, 2, 1]
    assert found(service, "Third") == ["a"]
    assert found(service, "First") == [] and found(service, "Second") == []  # no stale index rows
    assert found(service, "Other") == ["b"]


def test_updated_twice_in_one_unit_after_it_was_stored(service: FhirService) -> None:
    service.store.write(lambda unit: unit.put(patient("a", "Stored")))

    def work(unit: WriteUnit) -> None:
        unit.put(patient("a", "Again"))
        unit.put(patient("a", "Last"))

    service.store.write(work)
    assert service.read("Patient", "a").version_id == 3
    assert found(service, "Last") == ["a"]
    assert found(service, "Stored") == [] and found(service, "Again") == []


def test_created_then_deleted_in_one_unit(service: FhirService) -> None:
    def work(unit: WriteUnit) -> None:
        unit.put(patient("a", "Brief"))
        assert unit.delete("Patient", "a") is not None

    service.store.write(work)
    with pytest.raises(FhirError) as gone:
        service.read("Patient", "a")
    assert gone.value.status == 410
    assert found(service, "Brief") == []
