"""``$everything`` over HTTP: a referral as one Bundle, a patient's record with R4 paging and filters."""

from __future__ import annotations

from tests.api.fhirhttp import Fhir
from tests.api.test_referral_intake import HN, HV, referral, submit, task_of
from tests.api.test_security import REGION_SCOPES


def _types(bundle: dict) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle.get("entry", [])]


def _stored(api: Fhir, unique: str) -> tuple[str, str, str]:
    submit(api, referral(unique, "4601"))  # Helse Vest
    task = task_of(api, unique)
    referral_ref = task["focus"]["reference"]
    return referral_ref, f"Task/{task['id']}", task["for"]["reference"]


def test_referral_everything_returns_the_whole_referral_set(fhir, unique):
    api = Fhir(fhir)
    referral_ref, task_ref, patient_ref = _stored(api, unique)
    r = api.get(f"{referral_ref}/$everything")
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"])
    first = bundle["entry"][0]
    assert first["resource"]["resourceType"] == "ServiceRequest" and first["search"]["mode"] == "match"
    refs = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    assert {referral_ref, task_ref, patient_ref} <= refs
    types = set(_types(bundle))
    assert {"Provenance", "Condition", "Organization"} <= types, types
    # what the referral brought: every resource its Bundle POSTed is in the set
    brought = {e["resource"]["resourceType"] for e in referral(unique, "4601")["entry"]}
    assert brought - {"Organization", "Practitioner", "PractitionerRole"} <= types | {"ServiceRequest"}


def test_referral_everything_keeps_to_what_the_caller_sees(fhir, unique):
    api = Fhir(fhir)
    referral_ref, _, _ = _stored(api, unique)
    vest = Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id="vest-everything"))
    nord = Fhir(fhir, fhir.token(REGION_SCOPES, HN, client_id="nord-everything"))
    seen = vest.get(f"{referral_ref}/$everything")
    assert seen.status_code == 200, seen.text
    assert "Task" in _types(seen.json())
    assert nord.get(f"{referral_ref}/$everything").status_code == 404


def test_patient_everything_filters_and_pages(fhir, unique):
    api = Fhir(fhir)
    referral_ref, task_ref, patient_ref = _stored(api, unique)
    whole = api.get(f"{patient_ref}/$everything?_count=1000").json()
    assert whole["total"] == len(whole["entry"])
    assert "AuditEvent" not in _types(whole)  # the audit trail of reading the record is not part of it
    refs = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in whole["entry"]}
    assert {patient_ref, referral_ref, task_ref} <= refs
    assert whole["entry"][0]["resource"]["resourceType"] == "Patient"
    only = api.get(f"{patient_ref}/$everything?_type=Task").json()
    assert _types(only) == ["Task"]
    assert api.get(f"{patient_ref}/$everything?_since=2999-01-01").json()["total"] == 1  # the patient only
    pages, url = [], f"{patient_ref}/$everything?_count=2"
    while url:
        page = api.get(url).json()
        pages.append(page)
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
    paged = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for p in pages for e in p["entry"]]
    assert len(pages) > 1 and sorted(paged) == sorted(refs) and len(paged) == len(set(paged))
    assert api.get(f"{patient_ref}/$everything?_count=x").status_code == 400


def test_everything_is_declared(fhir):
    statement = Fhir(fhir).get("metadata").json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for rtype in ("Patient", "ServiceRequest"):
        assert "everything" in [op["name"] for op in by_type[rtype].get("operation", [])]
