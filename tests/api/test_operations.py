"""Operations over HTTP: $validate, conformance resources served, pathway $suggest-pathway, $apply, $milestones."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.fhirhttp import Fhir, adult_birth_date, fnr, ids, patient

DATA = Path(__file__).resolve().parents[1] / "data"
HUB = "https://fhir.referral-hub.no/StructureDefinition/"


def referral_bundle() -> dict:
    return json.loads((DATA / "referral-transaction.json").read_text(encoding="utf-8"))


def test_validate_type_level_and_profile(fhir):
    api = Fhir(fhir)
    sr = referral_bundle()["entry"][5]["resource"]
    ok = api.post("ServiceRequest/$validate", sr)
    assert ok.status_code == 200
    assert all(i["severity"] not in ("error", "fatal") for i in ok.json()["issue"])
    broken = dict(sr, status="bogus")
    bad = api.post("ServiceRequest/$validate", broken)
    assert bad.status_code == 200
    assert any(i["severity"] == "error" and i["expression"] == ["ServiceRequest.status"] for i in bad.json()["issue"])
    # against the referral profile: a ServiceRequest that is not a referral (no category) fails it
    not_referral = {k: v for k, v in sr.items() if k != "category"}
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": not_referral},
            {"name": "profile", "valueCanonical": HUB + "hub-referral-servicerequest"},
        ],
    }
    verdict = api.post("ServiceRequest/$validate", params).json()
    errors = [i for i in verdict["issue"] if i["severity"] == "error"]
    assert errors and any("category" in x for i in errors for x in i.get("expression", []))
    unknown = api.post("ServiceRequest/$validate?profile=https://example.org/nope", sr).json()
    assert any(i["severity"] == "error" and "nope" in i["diagnostics"] for i in unknown["issue"])


def test_validate_identifier_check_digits_and_norwegian(fhir, unique):
    api = Fhir(fhir)
    body = patient(unique, identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "12345678901"}])
    r = api.post("Patient/$validate", body, headers={"Accept-Language": "nb"})
    issue = next(i for i in r.json()["issue"] if i["severity"] == "error")
    assert issue["expression"] == ["Patient.identifier[0].value"]
    assert "12345678901" not in json.dumps(r.json())
    stored = api.post("Patient", body)
    assert stored.status_code == 422


def test_validate_instance_and_delete_mode(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    r = api.get(f"Patient/{created['id']}/$validate")
    assert r.status_code == 200 and r.json()["issue"][0]["severity"] == "information"
    assert api.post(f"Patient/{created['id']}/$validate?mode=delete", None).status_code == 200
    assert api.get("Patient/$nope").status_code == 404


def test_conformance_resources_are_served(fhir):
    api = Fhir(fhir)
    sd = api.search(f"StructureDefinition?url={HUB}hub-referral-servicerequest")
    assert sd["total"] == 1
    resource = sd["entry"][0]["resource"]
    assert resource["snapshot"]["element"] and resource["differential"]["element"]
    assert api.search("StructureDefinition?name=HubReferralServiceRequest,hub-referral-servicerequest&status=active")
    assert api.search("PlanDefinition?status=active&_summary=count")["total"] >= 8
    assert api.search("CodeSystem?url=https://fhir.referral-hub.no/CodeSystem/kommunenummer-2024")["total"] == 1
    assert api.search("NamingSystem?_summary=count")["total"] >= 5
    assert api.search("ConceptMap?_summary=count")["total"] >= 3
    statement = api.get("metadata").json()
    service_request = next(r for r in statement["rest"][0]["resource"] if r["type"] == "ServiceRequest")
    assert HUB + "hub-referral-servicerequest" in service_request["supportedProfile"]
    assert {"validate", "suggest-pathway"} <= {o["name"] for o in service_request["operation"]}


def test_own_operation_definitions_in_metadata_resolve(fhir):
    """Every OperationDefinition the CapabilityStatement names under the project's canonical base is served,
    and says what the statement says (code, where it applies); HL7's own resolve at hl7.org."""
    api = Fhir(fhir)
    rest = api.get("metadata").json()["rest"][0]
    declared = [(None, op) for op in rest.get("operation", [])]
    declared += [(r["type"], op) for r in rest["resource"] for op in r.get("operation", [])]
    own = [(rtype, op) for rtype, op in declared if op["definition"].startswith("https://fhir.referral-hub.no/")]
    assert {op["name"] for _, op in own} == {"suggest-pathway", "milestones", "referral-form", "resend"}
    for rtype, op in own:
        found = api.search(f"OperationDefinition?url={op['definition']}")
        assert found["total"] == 1, op["definition"]
        definition = found["entry"][0]["resource"]
        assert definition["code"] == op["name"] and definition["status"] == "active"
        if rtype is None:
            assert definition["system"] is True
        else:
            assert rtype in definition["resource"] and (definition["type"] or definition["instance"])
        read = api.get(f"OperationDefinition/{definition['id']}")
        assert read.status_code == 200 and read.json()["url"] == op["definition"]


def _referral(api: Fhir, unique: str, code: str, birth: str) -> tuple[str, str]:
    bundle = referral_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = birth
    bundle["entry"][0]["resource"]["identifier"] = [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr(birth, unique)}
    ]
    sr = bundle["entry"][5]["resource"]
    sr["identifier"][0]["value"] = f"henv-{unique}"
    sr["authoredOn"] = "2026-04-01"
    sr["reasonCode"] = [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110", "code": code}]}]
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    result = r.json()
    locations = [e["response"]["location"].rsplit("/_history", 1)[0] for e in result["entry"]]
    patient_ref = next(x for x in locations if x.startswith("Patient/"))
    sr_ref = next(x for x in locations if x.startswith("ServiceRequest/"))
    return patient_ref, sr_ref


def test_suggest_pathway_over_http(fhir, unique):
    api = Fhir(fhir)
    _, sr_ref = _referral(api, unique, "F20.0", adult_birth_date(unique))
    result = api.get(f"{sr_ref}/$suggest-pathway").json()
    pathways = [p["valueCanonical"] for s in result["parameter"] for p in s["part"] if p["name"] == "pathway"]
    assert any("psykose" in p for p in pathways), pathways
    _, child_ref = _referral(api, unique + "b", "F50.0", "2010-06-01")
    result = api.get(f"{child_ref}/$suggest-pathway").json()
    pathways = [p["valueCanonical"] for s in result["parameter"] for p in s["part"] if p["name"] == "pathway"]
    assert any("spiseforstyrrelser" in p for p in pathways), pathways


def test_apply_creates_careplan_with_deadlines(fhir, unique):
    api = Fhir(fhir)
    patient_ref, sr_ref = _referral(api, unique, "F32.1", adult_birth_date(unique))
    plan = api.search("PlanDefinition?url=https://fhir.referral-hub.no/PlanDefinition/psykisk-helsevern-voksne")
    plan_id = ids(plan)[0]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": patient_ref},
            {"name": "referral", "valueString": sr_ref},
            {"name": "receivedDate", "valueDate": "2026-04-01"},
        ],
    }
    r = api.post(f"PlanDefinition/{plan_id}/$apply", params)
    assert r.status_code == 200, r.text
    careplan = r.json()
    assert careplan["resourceType"] == "CarePlan"
    assert careplan["subject"]["reference"] == patient_ref
    dues = {
        a["detail"]["code"]["coding"][0]["code"]: a["detail"].get("scheduledPeriod", {}).get("end")
        for a in careplan["activity"]
        if "detail" in a
    }
    assert "2026-04-20" in dues.values(), dues  # 10 working days after 1 April 2026 (Easter in between)
    params["parameter"].append({"name": "persist", "valueBoolean": True})
    hf = api.create(
        {
            "resourceType": "Organization",
            "name": f"DPS {unique}",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983065287"}],
        }
    )
    params["parameter"].append({"name": "organization", "valueString": f"Organization/{hf['id']}"})
    stored = api.post(f"PlanDefinition/{plan_id}/$apply?persist=true", params)
    assert stored.status_code == 201
    careplan_id = stored.json()["id"]
    summary = api.get(f"CarePlan/{careplan_id}/$milestones?date=2026-04-25").json()
    assert summary["resourceType"] == "Parameters"
    assert "overdue" in json.dumps(summary)
    # searchable: this organisation's CarePlans with a milestone overdue on 25 April
    overdue = f"CarePlan?open-milestone-due=lt2026-04-25&performer=Organization/{hf['id']}"
    assert ids(api.search(overdue)) == [careplan_id]
    assert ids(api.search(f"CarePlan?open-milestone-due=lt2026-04-15&performer=Organization/{hf['id']}")) == []
    # the assessment is done: nothing is overdue any more
    careplan = api.get(f"CarePlan/{careplan_id}").json()
    for activity in careplan["activity"]:
        detail = activity.get("detail", {})
        if detail.get("scheduledPeriod", {}).get("end") == "2026-04-20":
            detail["status"] = "completed"
    assert api.put(f"CarePlan/{careplan_id}", careplan).status_code == 200
    assert ids(api.search(overdue)) == []
