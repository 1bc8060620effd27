"""The resource types a region's push carries are data (mappings/ValueSet-region-push-resource-types.json):
the same seven types as before, read once; in process on a real SQLite store, the outbox row's payload
carries the stored resources of those types and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import outbox
from fhir_server.core.storage.store import Store
from fhir_server.data import data_folder
from fhir_server.domain.delivery.outbox import PUSHED_TYPES, enqueue_deliveries, pushed_resource_types

FORMER = {"Patient", "Practitioner", "PractitionerRole", "Organization", "ServiceRequest", "Condition", "Task"}
DATA_FILE = data_folder("mappings") / "ValueSet-region-push-resource-types.json"


def test_the_data_names_the_same_types_as_before() -> None:
    assert PUSHED_TYPES == FORMER


def edited(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    value_set = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    edit(value_set["compose"]["include"][0])
    path = tmp_path / DATA_FILE.name
    path.write_text(json.dumps(value_set), encoding="utf-8")
    return path


def test_the_list_is_read_from_the_file(tmp_path: Path) -> None:
    path = edited(tmp_path, lambda include: include["concept"].append({"code": "Provenance"}))
    assert pushed_resource_types(path) == FORMER | {"Provenance"}
    with pytest.raises(ValueError, match="only concepts"):
        pushed_resource_types(edited(tmp_path, lambda include: include.update(system="http://example.org/types")))


@pytest.fixture
def service(tmp_path: Path) -> FhirService:
    return FhirService(Store(open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}"), build_search_registry()))


def test_the_push_carries_the_listed_types_only(service: FhirService) -> None:
    region = service.create({"resourceType": "Organization", "name": "Region"}).stored.id
    service.create(
        {
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {"code": "hl7-fhir-rest"},
            "payloadType": [{"text": "referral"}],
            "managingOrganization": {"reference": f"Organization/{region}"},
            "address": "http://region.example/fhir",
        }
    )
    written = [
        {"resourceType": "Patient"},
        {"resourceType": "Practitioner"},
        {"resourceType": "PractitionerRole"},
        {"resourceType": "Organization"},
        {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"display": "p"}},
        {"resourceType": "Condition", "subject": {"display": "p"}},
        {"resourceType": "Task", "status": "requested", "intent": "order"},
        {"resourceType": "Provenance", "target": [{"display": "t"}], "recorded": "2026-06-16T00:30:00+02:00"},
        {"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"}},
    ]

    def work(unit):  # type: ignore[no-untyped-def]
        stored = [unit.put(resource)[0] for resource in written]
        return enqueue_deliveries(unit, service, f"Organization/{region}", stored, "create", ("urn:test", "henv-1"))

    assert service.store.write(work) == 1
    (row,) = service.store.fast.rows(f"SELECT payload FROM {outbox.name}", ())
    payload = jsonio.loads(row[0])
    pushed = [entry["request"]["url"].split("/")[0] for entry in payload["entry"]]
    assert pushed == [r["resourceType"] for r in written if r["resourceType"] in FORMER]
