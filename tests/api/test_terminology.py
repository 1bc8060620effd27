"""Terminology operations over HTTP: $lookup, $expand (filter, count, offset), $validate-code, $translate."""

from __future__ import annotations

from tests.api.fhirhttp import Fhir

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
GENDER_CS = "http://hl7.org/fhir/administrative-gender"
KOMMUNE_2024 = "https://fhir.referral-hub.no/CodeSystem/kommunenummer-2024"


def params(body: dict) -> dict:
    return {p["name"]: p for p in body["parameter"]}


def test_lookup(fhir):
    api = Fhir(fhir)
    found = params(api.get(f"CodeSystem/$lookup?system={GENDER_CS}&code=female").json())
    assert found["display"]["valueString"] == "Female"
    oslo = params(api.get(f"CodeSystem/$lookup?system={KOMMUNE_2024}&code=0301").json())
    assert oslo["display"]["valueString"] == "Oslo"
    assert api.get(f"CodeSystem/$lookup?system={GENDER_CS}&code=mann").status_code == 404
    assert api.get("CodeSystem/$lookup?code=female").status_code == 400


def test_expand_with_filter_count_offset(fhir):
    api = Fhir(fhir)
    full = api.get(f"ValueSet/$expand?url={GENDER_VS}").json()["expansion"]
    assert full["total"] == 4 and {c["code"] for c in full["contains"]} == {"male", "female", "other", "unknown"}
    page = api.get(f"ValueSet/$expand?url={GENDER_VS}&count=2&offset=1").json()["expansion"]
    assert page["total"] == 4 and len(page["contains"]) == 2 and page["offset"] == 1
    filtered = api.get(f"ValueSet/$expand?url={GENDER_VS}&filter=fem").json()["expansion"]
    assert [c["code"] for c in filtered["contains"]] == ["female"]
    volven = api.get("ValueSet/$expand?url=urn:oid:2.16.578.1.12.4.1.1.8306").json()["expansion"]
    assert {"N", "0"} <= {c["code"] for c in volven["contains"]}
    assert api.get("ValueSet/$expand?url=https://example.org/none").status_code == 404
    assert api.get(f"ValueSet/$expand?url={GENDER_VS}&count=x").status_code == 400


def test_validate_code(fhir):
    api = Fhir(fhir)
    ok = params(api.get(f"ValueSet/$validate-code?url={GENDER_VS}&system={GENDER_CS}&code=male").json())
    assert ok["result"]["valueBoolean"] is True
    bad = params(api.get(f"ValueSet/$validate-code?url={GENDER_VS}&system={GENDER_CS}&code=mann").json())
    assert bad["result"]["valueBoolean"] is False and "mann" in bad["message"]["valueString"]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": GENDER_VS},
            {"name": "codeableConcept", "valueCodeableConcept": {"coding": [{"system": GENDER_CS, "code": "other"}]}},
        ],
    }
    assert params(api.post("ValueSet/$validate-code", body).json())["result"]["valueBoolean"] is True


def test_translate_pre2024_municipality(fhir):
    api = Fhir(fhir)
    result = api.get(
        "ConceptMap/$translate?system=https://fhir.referral-hub.no/CodeSystem/kommunenummer-2020&code=3005"
    ).json()
    assert params(result)["result"]["valueBoolean"] is True
    targets = [
        p["valueCoding"]["code"]
        for m in result["parameter"]
        if m["name"] == "match"
        for p in m["part"]
        if p["name"] == "concept"
    ]
    assert targets == ["3301"]
    missing = api.get(
        "ConceptMap/$translate?system=https://fhir.referral-hub.no/CodeSystem/kommunenummer-2020&code=9999"
    ).json()
    assert params(missing)["result"]["valueBoolean"] is False
