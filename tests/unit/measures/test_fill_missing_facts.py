"""A database stored before the measures gets its facts from the stored resources, once."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from fhir_server.components import build_search_registry
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store
from fhir_server.domain.measures import ensure_fact_table, fill_missing_facts
from fhir_server.domain.measures.facts import referral_facts

REFERRAL = {
    "resourceType": "ServiceRequest",
    "id": "sr1",
    "status": "active",
    "intent": "order",
    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
    "subject": {"reference": "Patient/p1"},
    "extension": [
        {
            "url": "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato",
            "valueDateTime": "2026-03-02T09:00:00Z",
        }
    ],
}
TASK = {
    "resourceType": "Task",
    "id": "t1",
    "status": "requested",
    "intent": "order",
    "identifier": [{"system": "https://fhir.referral-hub.no/NamingSystem/routing-task", "value": "x"}],
    "focus": {"reference": "ServiceRequest/sr1"},
    "owner": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983658725"}},
}


def test_facts_are_built_from_stored_referrals_once(tmp_path: Path):
    db = open_database(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    store = Store(db, build_search_registry())  # no measures hook: a database from before them
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "2010-01-01"}
    store.write(lambda unit: [unit.put(dict(r)) for r in (patient, REFERRAL, TASK)])
    ensure_fact_table(db)
    assert fill_missing_facts(store) == 2
    with db.read.connect() as conn:
        row = conn.execute(select(referral_facts)).one()
    assert (row.referral_id, row.region, row.sex, row.age_group, row.patient_referrals) == (
        "sr1",
        "983658725",
        "female",
        "0-17",
        1,
    )
    assert fill_missing_facts(store) == 0  # the table has facts now: nothing is read again
    db.dispose()
