"""Small defects found from outside (issue 14, item 7), each shown over HTTP on both databases."""

from __future__ import annotations

import base64
import time

import requests

from tests.api.fhirhttp import JSON, Fhir, ids, patient
from tests.api.test_operations import _referral

XML = "application/fhir+xml"
NOT_LOADED = "urn:oid:2.16.578.1.12.4.1.1.8451"  # a Volven code system no-basis ships with content not-present
PSYKISK_HELSEVERN = "https://fhir.referral-hub.no/PlanDefinition/psykisk-helsevern-voksne"


def params(body: dict) -> dict:
    return {p["name"]: p for p in body["parameter"]}


def test_every_audit_event_is_valid_r4(fhir, unique):
    """sev-1: an entity has a name or a query, not both; every event the server writes validates."""
    api = Fhir(fhir)
    created = api.create(patient(unique))
    api.get(f"Patient/{created['id']}")
    api.search(f"Patient?_tag=urn:test|{unique}&_count=1")
    api.get(f"Patient/{created['id']}/$validate?mode=create")  # an operation with a query string
    api.get("ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender&count=1")
    api.post("Patient/$validate?mode=create", patient(unique))
    assert api.get(f"Patient/nope-{unique}").status_code == 404  # a refusal
    assert requests.get(f"{fhir.base}/Patient?_tag={unique}", timeout=30).status_code == 401  # no token
    _referral(api, unique, "F32.1", "1985-03-15")  # a referral transaction
    expand_query = "url=http://hl7.org/fhir/ValueSet/administrative-gender&count=1"
    deadline = time.monotonic() + 20
    while True:  # events are written in batches from a background thread; wait for this test's own
        bundle = api.search("AuditEvent?_sort=-_lastUpdated&_count=200")
        events = [e["resource"] for e in bundle.get("entry", [])]
        subtypes = {s["code"] for e in events for s in e["subtype"]}
        with_query = [e for e in events for x in e.get("entity", []) if x.get("name") and x.get("detail")]
        queries = [
            base64.b64decode(d["valueBase64Binary"]).decode() for e in with_query for d in e["entity"][0]["detail"]
        ]
        if expand_query in queries and "transaction" in subtypes and any(e["outcome"] == "4" for e in events):
            break
        assert time.monotonic() < deadline, f"not every kind of event arrived: {subtypes}, {queries[:10]}"
        time.sleep(0.3)
    both = [x for e in events for x in e.get("entity", []) if "name" in x and "query" in x]
    assert both == []
    assert with_query, "an operation called with a query string keeps its query as a detail"
    assert any(x.get("query") for e in events for x in e.get("entity", [])), "a search keeps its query"
    for event in events:
        verdict = api.post("AuditEvent/$validate", event).json()
        errors = [i for i in verdict["issue"] if i["severity"] in ("error", "fatal")]
        assert errors == [], (event, errors)


def test_decimals_round_trip_exactly_through_xml(fhir, unique):
    api = Fhir(fhir)
    text = (
        '{"resourceType":"Observation","meta":{"tag":[{"system":"urn:test","code":"' + unique + '"}]},'
        '"status":"final","code":{"text":"vekt"},"valueQuantity":{"value":72.50,"unit":"kg"},'
        '"component":[{"code":{"text":"puls"},"valueQuantity":{"value":100,"unit":"/min"}}]}'
    )
    r = requests.post(f"{fhir.base}/Observation", data=text, headers={"Content-Type": JSON, **fhir.auth}, timeout=30)
    assert r.status_code == 201, r.text
    as_xml = requests.get(f"{fhir.base}/Observation/{r.json()['id']}", headers={"Accept": XML, **fhir.auth}, timeout=30)
    assert b'<value value="72.50"/>' in as_xml.content and b'<value value="100"/>' in as_xml.content, as_xml.text
    # and back: the XML as sent, stored, read as JSON with the same literals
    sent = requests.post(
        f"{fhir.base}/Observation", data=as_xml.content, headers={"Content-Type": XML, **fhir.auth}, timeout=30
    )
    assert sent.status_code == 201, sent.text
    as_json = api.get(f"Observation/{sent.json()['id']}").content
    assert b'"value":72.50' in as_json and b'"value":100,' in as_json, as_json
    found = requests.get(
        f"{fhir.base}/Observation?_tag=urn:test|{unique}", headers={"Accept": XML, **fhir.auth}, timeout=30
    )
    assert found.content.count(b'<value value="72.50"/>') == 2 and b'<total value="2"/>' in found.content


def test_boolean_parameters_from_query_or_parameters_body(fhir, unique):
    api = Fhir(fhir)
    patient_ref, sr_ref = _referral(api, unique, "F32.1", "1985-03-15")
    plan_id = ids(api.search(f"PlanDefinition?url={PSYKISK_HELSEVERN}"))[0]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueReference": {"reference": patient_ref}},
            {"name": "referral", "valueReference": {"reference": sr_ref}},
            {"name": "persist", "valueBoolean": True},
        ],
    }
    stored = api.post(f"PlanDefinition/{plan_id}/$apply", body)
    assert stored.status_code == 201, stored.text
    assert api.get(f"CarePlan/{stored.json()['id']}").status_code == 200
    body["parameter"][2] = {"name": "persist", "valueBoolean": False}
    assert api.post(f"PlanDefinition/{plan_id}/$apply", body).status_code == 200
    assert api.post(f"PlanDefinition/{plan_id}/$apply?persist=false", body).status_code == 200
    body["parameter"][2] = {"name": "persist", "valueString": "ja"}
    bad = api.post(f"PlanDefinition/{plan_id}/$apply", body)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["persist"]
    # the same reading for $suggest-pathway's pregnant
    pregnant = {"resourceType": "Parameters", "parameter": [{"name": "pregnant", "valueBoolean": True}]}
    assert api.post(f"{sr_ref}/$suggest-pathway", pregnant).status_code == 200
    assert api.get(f"{sr_ref}/$suggest-pathway?pregnant=false").status_code == 200
    wrong = api.get(f"{sr_ref}/$suggest-pathway?pregnant=yes")
    assert wrong.status_code == 400 and wrong.json()["issue"][0]["expression"] == ["pregnant"]


def test_terminology_says_when_a_code_system_is_not_loaded(fhir):
    api = Fhir(fhir)
    expanded = api.get(f"ValueSet/$expand?url={NOT_LOADED}")
    assert 400 <= expanded.status_code < 500, expanded.text
    issue = expanded.json()["issue"][0]
    assert issue["code"] == "not-found" and NOT_LOADED in issue["diagnostics"]
    verdict = params(api.get(f"ValueSet/$validate-code?url={NOT_LOADED}&code=1").json())
    assert verdict["result"]["valueBoolean"] is False
    assert NOT_LOADED in verdict["message"]["valueString"] and "not in the value set" not in str(verdict)
    assert [i["code"] for i in verdict["issues"]["resource"]["issue"]] == ["not-found"]
    # a value set over a code system the server does not know at all
    loinc = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "valueSet",
                "resource": {
                    "resourceType": "ValueSet",
                    "status": "active",
                    "compose": {"include": [{"system": "http://loinc.org"}]},
                },
            },
            {"name": "system", "valueUri": "http://loinc.org"},
            {"name": "code", "valueCode": "8867-4"},
        ],
    }
    verdict = params(api.post("ValueSet/$validate-code", loinc).json())
    assert verdict["result"]["valueBoolean"] is False and "http://loinc.org" in verdict["message"]["valueString"]
    assert verdict["x-caused-by-unknown-system"]["valueCanonical"] == "http://loinc.org"
    refused = api.post("ValueSet/$expand", {"resourceType": "Parameters", "parameter": loinc["parameter"][:1]})
    assert refused.status_code == 422 and "http://loinc.org" in refused.json()["issue"][0]["diagnostics"]


def test_capability_statement_has_no_empty_values(fhir):
    """R4 (ele-1, JSON rules): no empty arrays, objects or strings anywhere in /metadata."""
    statement = requests.get(f"{fhir.base}/metadata", timeout=30).json()
    empty: list[str] = []

    def walk(node: object, path: str) -> None:
        if node in ([], {}, ""):
            empty.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            walk(child, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")

    walk(statement, "CapabilityStatement")
    assert empty == []
    # the types without reference search parameters still declare what they can
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "ServiceRequest:subject" in resources["ServiceRequest"]["searchInclude"]
