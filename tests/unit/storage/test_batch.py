"""``Store.batch()``, in process on real databases: many writes commit as one transaction, a failing write
undoes only itself, the batch's reads see its writes while other connections see nothing before the
commit, and an error in the block rolls everything back; ``FhirService.update_many`` stores the valid
resources of a list and answers the others with their refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import resources
from fhir_server.core.storage.store import Store
from fhir_server.core.validation import validate_resource
from tests.conftest import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = database_url(request.param, tmp_path, "db.sqlite3")
    store = Store(open_database(url), build_search_registry())
    with access.acting_as(access.SYSTEM):
        yield FhirService(store, [validate_resource])
    store.db.dispose()


def patient(pid: str, **extra: object) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid}], **extra}


def committed(service: FhirService) -> int:
    """Patients other connections see."""
    with service.store.db.read.connect() as conn:
        return conn.execute(select(func.count()).where(resources.c.res_type == "Patient")).scalar_one()


def test_a_batch_commits_its_writes_together_and_a_failed_write_undoes_only_itself(service: FhirService) -> None:
    with service.store.batch() as batch:
        service.update("Patient", "a", patient("a"))
        with pytest.raises(FhirError):
            service.update("Patient", "b", patient("b", gender="mann"))  # refused by validation: nothing written

        def half_then_fail(unit):  # type: ignore[no-untyped-def]
            unit.put(patient("c"))
            raise FhirError.single(409, "conflict", "the work fails after a write")

        with pytest.raises(FhirError):
            service.store.write(half_then_fail)

        def database_error(unit):  # type: ignore[no-untyped-def]
            unit.put(patient("e"))
            unit.run("INSERT INTO resources (res_type) VALUES (NULL)", ())  # refused by the database itself

        # the driver's own error; PostgreSQL's aborted transaction is taken back to the savepoint too
        with pytest.raises(Exception, match=r"(?i)null"):
            service.store.write(database_error)
        service.update("Patient", "d", patient("d"))
        assert service.read("Patient", "a").version_id == 1  # the batch reads its own writes
        assert service.conditional_matches(None, "Patient", "name=d") == ["d"]
        with pytest.raises(FhirError):
            service.read("Patient", "c")  # undone with its savepoint
        with pytest.raises(FhirError):
            service.read("Patient", "e")
        assert committed(service) == 0  # nothing committed yet
        assert batch.written == [("Patient", "a"), ("Patient", "d")]
    assert committed(service) == 2


def test_an_error_in_the_block_rolls_the_whole_batch_back(service: FhirService) -> None:
    with pytest.raises(RuntimeError), service.store.batch():
        service.update("Patient", "a", patient("a"))
        raise RuntimeError("the import stops")
    assert committed(service) == 0


def test_update_many_stores_the_valid_ones_and_answers_the_others(service: FhirService) -> None:
    answers = service.update_many([patient("a"), patient("b", gender="mann"), {"resourceType": "Patient"}])
    assert [type(a).__name__ for a in answers] == ["WriteResult", "FhirError", "WriteResult"]
    refused = answers[1]
    assert isinstance(refused, FhirError) and refused.issues[0].expression == "Patient.gender"
    assert committed(service) == 2
    assert service.read("Patient", "a").version_id == 1
