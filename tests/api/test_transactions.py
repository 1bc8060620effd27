"""Batch and transaction Bundles: all-or-nothing, urn:uuid and conditional references, responses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.fhirhttp import Fhir, adult_birth_date, fnr, ids, patient, response_locations

DATA = Path(__file__).resolve().parents[1] / "data"


def referral_transaction(unique: str) -> dict:
    bundle = json.loads((DATA / "referral-transaction.json").read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        entry["resource"].setdefault("meta", {})["tag"] = [{"system": "urn:test", "code": unique}]
        if entry["resource"]["resourceType"] == "ServiceRequest":
            entry["resource"]["identifier"][0]["value"] = f"henv-{unique}"
        if entry["resource"]["resourceType"] == "Patient":
            birth = adult_birth_date(unique)
            entry["resource"]["birthDate"] = birth
            entry["resource"]["identifier"][0]["value"] = fnr(birth, unique)
    return bundle


def test_referral_transaction_resolves_urn_uuid(fhir, unique):
    api = Fhir(fhir)
    r = api.post("", referral_transaction(unique))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    # a referral: one response entry per request entry (R4), the routing Task and its Provenance named on
    # the referral's entry; practitioners and organisations already known by their national identifiers
    # are reused (200), the referral itself is new (201)
    assert len(statuses) == 8 and set(statuses) <= {"201 Created", "200 OK"}
    assert statuses[0] == statuses[5] == "201 Created"
    locations = {loc.split("/")[0]: loc for loc in response_locations(result)}
    assert {"Task", "Provenance"} <= set(locations)
    sr = api.search(f"ServiceRequest?_tag=urn:test|{unique}&_include=ServiceRequest:subject")
    service_request = sr["entry"][0]["resource"]
    patient_id = locations["Patient"].split("/")[1]
    assert service_request["subject"]["reference"] == f"Patient/{patient_id}"
    assert ids(sr, "include") == [patient_id]


def test_transaction_is_all_or_nothing(fhir, unique):
    api = Fhir(fhir)
    bundle = referral_transaction(unique)
    bundle["entry"][0]["resource"]["birthDate"] = "15.03.1985"
    bundle["entry"][5]["resource"]["status"] = "bogus"
    r = api.post("", bundle)
    assert r.status_code in (400, 422)
    expressions = {x for issue in r.json()["issue"] for x in issue.get("expression", [])}
    assert "Bundle.entry[0].resource.birthDate" in expressions
    assert "Bundle.entry[5].resource.status" in expressions
    assert api.search(f"Patient?_tag=urn:test|{unique}")["total"] == 0
    # a failure in the database phase (a stale If-Match) also rolls everything back
    created = api.create(patient(unique))
    good = referral_transaction(unique)
    good["entry"].append(
        {
            "resource": dict(created, gender="female"),
            "request": {"method": "PUT", "url": f"Patient/{created['id']}", "ifMatch": 'W/"7"'},
        }
    )
    r = api.post("", good)
    assert r.status_code == 412
    assert api.search(f"ServiceRequest?_tag=urn:test|{unique}")["total"] == 0


def conditional_patient_and_condition(unique: str, full_url: str) -> list[dict]:
    """A conditional create of a Patient (by an MRN) and a Condition referring to it by its fullUrl."""
    return [
        {
            "fullUrl": full_url,
            "resource": patient(unique, identifier=[{"system": "urn:test:mrn", "value": unique}]),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:test:mrn|{unique}"},
        },
        condition_entry(unique, full_url, "depresjon"),
    ]


def condition_entry(unique: str, subject: str, text: str) -> dict:
    condition = {
        "resourceType": "Condition",
        "meta": {"tag": [{"system": "urn:test", "code": unique}]},
        "subject": {"reference": subject},
        "code": {"text": text},
    }
    return {"resource": condition, "request": {"method": "POST", "url": "Condition"}}


def test_conditional_create_and_reference_in_transaction(fhir, unique):
    api = Fhir(fhir)
    existing = api.create(patient(unique, identifier=[{"system": "urn:test:mrn", "value": unique}]))
    entries = conditional_patient_and_condition(unique, "urn:uuid:11111111-1111-4111-8111-111111111111")
    entries.append(condition_entry(unique, f"Patient?identifier=urn:test:mrn|{unique}", "angst"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    conditions = api.search(f"Condition?_tag=urn:test|{unique}")
    assert {e["resource"]["subject"]["reference"] for e in conditions["entry"]} == {f"Patient/{existing['id']}"}
    # the search index agrees: its rows were computed before the write lock with the id the Patient
    # would have had if created, and computed again once the condition matched the existing one
    assert api.search(f"Condition?subject=Patient/{existing['id']}&_tag=urn:test|{unique}")["total"] == 2
    assert api.search(f"Condition?subject:Patient.identifier=urn:test:mrn|{unique}")["total"] == 2


def test_conditional_create_that_creates_is_referenced_and_indexed_by_its_new_id(fhir, unique):
    api = Fhir(fhir)
    entries = conditional_patient_and_condition(unique, "urn:uuid:22222222-2222-4222-8222-222222222222")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    created = r.json()["entry"][0]
    assert created["response"]["status"] == "201 Created"
    patient_ref = created["response"]["location"].split("/_history")[0]
    found = api.search(f"Condition?subject={patient_ref}&_tag=urn:test|{unique}")
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["subject"]["reference"] == patient_ref


def test_transaction_unresolvable_reference_is_refused(fhir, unique):
    api = Fhir(fhir)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "urn:uuid:99999999-9999-4999-8999-999999999999"},
                    "code": {"text": "x"},
                },
                "request": {"method": "POST", "url": "Condition"},
            }
        ],
    }
    r = api.post("", bundle)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]


def test_batch_reports_each_entry(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(unique), "request": {"method": "POST", "url": "Patient"}},
            {"resource": dict(patient(unique), gender="mann"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{created['id']}"}},
            {"request": {"method": "GET", "url": f"Patient?_tag=urn:test|{unique}"}},
            {"request": {"method": "DELETE", "url": f"Patient/{created['id']}"}},
        ],
    }
    r = api.post("", bundle)
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] in ("400", "422")
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.gender"]
    assert entries[2]["resource"]["id"] == created["id"]
    assert entries[3]["resource"]["total"] == 2
    assert entries[4]["response"]["status"] == "204 No Content"


def test_bundle_with_unknown_resource_type_is_400_not_500(fhir):
    api = Fhir(fhir)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "MedicinalProduct"},
                "request": {"method": "POST", "url": "MedicinalProduct"},
            },
            {"resource": {"resourceType": "Foo", "x": 1}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = api.post("", bundle)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert len(r.json()["issue"]) >= 2
