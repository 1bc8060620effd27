"""Reference targets: Type/id against targetProfile, #id against contained, urn:uuid, Reference.type."""

from __future__ import annotations

import pytest

from fhir_server.core.validation import validate_resource


def found(resource: dict) -> list[tuple[str | None, str, str | None]]:
    return [(i.expression, i.code, i.rule) for i in validate_resource(resource)]


def service_request(subject: dict) -> dict:
    return {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subject}


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/123",
        "Patient/123/_history/2",
        "https://fhir.example.no/fhir/Patient/123",
        "http://fhir.example.no/fhir/Patient/abc/_history/1",
        "urn:uuid:3f1c2a9e-6b1d-4c55-9a0e-1b2c3d4e5f01",
        "urn:oid:2.16.578.1.12.4.1.4.1",
        "Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|15038512363",
        "Group/g1",
    ],
)
def test_allowed_reference_forms(reference):
    assert found(service_request({"reference": reference})) == []


@pytest.mark.parametrize(
    "reference",
    [
        "Organization/1",
        "https://fhir.example.no/fhir/Practitioner/1",
        "Practitioner/1/_history/3",
        "Organization?identifier=x",
    ],
)
def test_wrong_target_type(reference):
    assert found(service_request({"reference": reference})) == [
        ("ServiceRequest.subject.reference", "invalid", "reference-target")
    ]


def test_wrong_target_message():
    issues = validate_resource(service_request({"reference": "Organization/1"}))
    assert issues[0].diagnostics == (
        "ServiceRequest.subject.reference: refers to a Organization, but this element may only refer to "
        "Patient, Group, Location, Device"
    )


def test_malformed_relative_reference():
    assert found(service_request({"reference": "just-text"})) == [
        ("ServiceRequest.subject.reference", "invalid", "reference-format")
    ]
    assert found(service_request({"reference": "Nonsense/1"})) == [
        ("ServiceRequest.subject.reference", "invalid", "reference-format")
    ]


def test_any_resource_target_accepts_all_types():
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "focus": {"reference": "Medication/1"}}
    assert found(task) == []


def test_reference_type_must_agree():
    assert found(service_request({"reference": "Patient/1", "type": "Patient"})) == []
    assert found(service_request({"reference": "Patient/1", "type": "Group"})) == [
        ("ServiceRequest.subject.type", "invalid", "reference-type")
    ]
    assert found(service_request({"identifier": {"value": "1"}, "type": "Organization"})) == [
        ("ServiceRequest.subject.type", "invalid", "reference-target")
    ]
    assert found(service_request({"identifier": {"value": "1"}, "type": "Patient"})) == []


def test_contained_reference_ok_and_ref_1():
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "Legekontoret"}],
        "managingOrganization": {"reference": "#org1"},
    }
    assert found(patient) == []
    patient["managingOrganization"] = {"reference": "#org2"}
    found_issues = found(patient)
    assert ("Patient.managingOrganization.reference", "invalid", "ref-1") in found_issues


def test_contained_reference_wrong_type():
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Practitioner", "id": "p1"}],
        "managingOrganization": {"reference": "#p1"},
    }
    assert found(patient) == [("Patient.managingOrganization.reference", "invalid", "reference-target")]
