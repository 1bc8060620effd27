"""FHIR alias normalisation: identifier system aliases, pre-2024 kommunenummer, Volven priority codes."""

from __future__ import annotations

import copy

import pytest

from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.identifiers import identity_number_in
from fhir_server.domain.referral.mapping import normalise_referral
from fhir_server.domain.referral.mapping.fhir_aliases import MUNICIPALITY_CODE_EXT, ORIGINAL_CODING_EXT

KOMMUNE = "urn:oid:2.16.578.1.12.4.1.1.3402"
V8306 = "urn:oid:2.16.578.1.12.4.1.1.8306"


def patient(code: str = "4601", system: str = "http://hl7.no/fhir/NamingSystem/FNR") -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": "15038512363"}],
        "address": [
            {
                "city": "X",
                "_district": {
                    "extension": [
                        {
                            "url": MUNICIPALITY_CODE_EXT,
                            "valueCoding": {"system": KOMMUNE, "code": code, "display": "Old"},
                        }
                    ]
                },
            }
        ],
    }


def referral(**fields) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Henvisning"},
        **fields,
    }


def bundle(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for i, r in enumerate(resources)
        ],
    }


def test_identifier_alias_is_rewritten_and_reported() -> None:
    out, issues = normalise_referral(patient())
    assert out["identifier"][0]["system"] == "urn:oid:2.16.578.1.12.4.1.4.1"
    (issue,) = issues
    assert (issue.severity, issue.expression, issue.rule) == (
        "information",
        "Patient.identifier[0].system",
        "alias-identifier-system",
    )


def test_preferred_and_unknown_systems_are_left_alone() -> None:
    for system in ("urn:oid:2.16.578.1.12.4.1.4.1", "http://example.org/mrn"):
        out, issues = normalise_referral(patient(system=system))
        assert out["identifier"][0]["system"] == system and issues == []


def test_aliases_inside_bundles_and_references() -> None:
    sr = referral(
        priority="routine",
        performer=[{"identifier": {"system": "http://data.brreg.no/begrep/28155", "value": "983974724"}}],
    )
    out, issues = normalise_referral(bundle(patient(system="urn:oid:2.16.578.1.12.4.1.4.1"), sr))
    assert out["entry"][1]["resource"]["performer"][0]["identifier"]["system"] == "urn:oid:2.16.578.1.12.4.1.4.101"
    assert [i.expression for i in issues] == ["Bundle.entry[1].resource.performer[0].identifier.system"]


def test_pre2024_municipality_is_rewritten_keeping_the_original() -> None:
    out, issues = normalise_referral(patient("3005", system="urn:oid:2.16.578.1.12.4.1.4.1"))
    coding = out["address"][0]["_district"]["extension"][0]["valueCoding"]
    assert (coding["code"], coding["display"]) == ("3301", "Drammen")
    assert coding["extension"] == [
        {"url": ORIGINAL_CODING_EXT, "valueCoding": {"system": KOMMUNE, "code": "3005", "display": "Old"}}
    ]
    (issue,) = issues
    assert issue.expression == "Patient.address[0].district.extension[0].valueCoding.code"
    assert validate_resource(out) == []


def test_2024_municipality_is_untouched() -> None:
    original = patient("4601", system="urn:oid:2.16.578.1.12.4.1.4.1")
    out, issues = normalise_referral(original)
    assert out == original and issues == []


def test_split_municipality_is_kept_with_a_warning() -> None:
    out, issues = normalise_referral(patient("1507", system="urn:oid:2.16.578.1.12.4.1.4.1"))
    assert out["address"][0]["_district"]["extension"][0]["valueCoding"]["code"] == "1507"
    assert [(i.severity, i.rule) for i in issues] == [("warning", "pre2024-municipality")]


@pytest.mark.parametrize(("code", "priority"), [("N", "routine"), ("3", "urgent"), ("0", "stat"), ("PK", "urgent")])
def test_priority_from_order_detail(code: str, priority: str) -> None:
    sr = referral(orderDetail=[{"coding": [{"system": V8306, "code": code}]}])
    out, issues = normalise_referral(sr)
    assert out["priority"] == priority
    assert [(i.severity, i.expression) for i in issues] == [("information", "ServiceRequest.priority")]
    assert validate_resource(out) == []


def test_priority_from_an_extension_with_another_spelling_of_8306() -> None:
    sr = referral(
        extension=[
            {
                "url": "http://example.org/hastegrad",
                "valueCodeableConcept": {
                    "coding": [{"system": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-8306", "code": "0"}]
                },
            }
        ]
    )
    out, _ = normalise_referral(sr)
    assert out["priority"] == "stat"


def test_existing_priority_is_kept_but_a_disagreement_is_warned() -> None:
    sr = referral(priority="routine", orderDetail=[{"coding": [{"system": V8306, "code": "0"}]}])
    out, issues = normalise_referral(sr)
    assert out["priority"] == "routine"
    assert [i.severity for i in issues] == ["warning"]
    _, agreeing = normalise_referral(referral(priority="stat", orderDetail=sr["orderDetail"]))
    assert agreeing == []


def test_unknown_volven_priority_code_is_warned_and_not_guessed() -> None:
    sr = referral(orderDetail=[{"coding": [{"system": V8306, "code": "Z"}]}])
    out, issues = normalise_referral(sr)
    assert "priority" not in out
    assert [(i.severity, i.expression) for i in issues] == [("warning", "ServiceRequest.orderDetail[0].coding[0].code")]


def test_volven_code_in_the_priority_element_is_rewritten() -> None:
    out, issues = normalise_referral(referral(priority="PK"))
    assert out["priority"] == "urgent" and [i.rule for i in issues] == ["volven-priority"]


def test_input_is_not_mutated_and_no_issue_shows_a_personal_number() -> None:
    original = bundle(patient("3005"), referral(orderDetail=[{"coding": [{"system": V8306, "code": "3"}]}]))
    before = copy.deepcopy(original)
    _, issues = normalise_referral(original)
    assert original == before
    assert len(issues) == 3
    for issue in issues:
        text = f"{issue.diagnostics} {issue.diagnostics_nb} {issue.expression}"
        assert "15038512363" not in text and not identity_number_in(text)
