"""validate_identifiers: paths, masking and rule ids in Patients, Bundles, contained and references."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from fhir_server.core.validation.identifiers import validate_identifiers

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
TODAY = datetime.date(2026, 11, 22)
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"


def run(resource: dict, **kw: object) -> list:
    return validate_identifiers(resource, today=TODAY, **kw)


def test_valid_patient_has_no_issues() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": FNR, "value": "15038512363"},
            {"system": "http://example.org/mrn", "value": "12345678901"},  # unknown system: not checked
        ],
        "telecom": [{"system": "phone", "value": "12345678901"}],  # ContactPoint: not an identifier system
    }
    assert run(patient) == []


def test_patient_wrong_fnr_path_rule_and_masking() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://example.org/mrn", "value": "x"},
            {"system": FNR, "value": "15038512364"},
        ],
    }
    [issue] = run(patient)
    assert issue.expression == "Patient.identifier[1].value"
    assert issue.severity == "error" and issue.code == "value" and issue.rule == "no-fnr-checksum"
    assert "(k2)" in issue.diagnostics and "(k2)" in issue.diagnostics_nb
    assert "15038512364" not in issue.diagnostics + issue.diagnostics_nb
    assert "150385*****" in issue.diagnostics


def test_alias_system_is_checked() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hl7.no/fhir/NamingSystem/FNR", "value": "12345678901"}],
    }
    [issue] = run(patient)
    assert issue.rule == "no-fnr-checksum"


def test_bundle_entries_contained_and_references() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": FNR, "value": "15038512363"}]}},
            {
                "resource": {
                    "resourceType": "Organization",
                    "identifier": [
                        {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "915933149"},
                        {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "915933148"},
                    ],
                }
            },
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "contained": [
                        {
                            "resourceType": "Practitioner",
                            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "91448A9"}],
                        }
                    ],
                    "subject": {"type": "Patient", "identifier": {"system": FNR, "value": "12345678901"}},
                    "requester": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.2", "value": "0"}},
                }
            },
        ],
    }
    issues = run(bundle)
    found = {(i.expression, i.rule) for i in issues}
    assert found == {
        ("Bundle.entry[1].resource.identifier[1].value", "no-orgnr-checksum"),
        ("Bundle.entry[2].resource.contained[0].identifier[0].value", "no-hpr-format"),
        ("Bundle.entry[2].resource.subject.identifier.value", "no-fnr-checksum"),
        ("Bundle.entry[2].resource.requester.identifier.value", "no-her-format"),
    }
    # organisation numbers are public and may be shown; personal numbers never are
    org = next(i for i in issues if i.rule == "no-orgnr-checksum")
    assert "915933148" in org.diagnostics
    fnr = next(i for i in issues if i.rule == "no-fnr-checksum")
    assert "12345678901" not in fnr.diagnostics and "123456*****" in fnr.diagnostics


def test_synthetic_numbers_in_a_resource_depend_on_test_mode() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": FNR, "value": "05859511149"}]}
    [issue] = run(patient)
    assert issue.rule == "no-fnr-synthetic" and issue.code == "business-rule"
    assert run(patient, test_mode=True) == []


def test_hnr_literal_system_problem_is_a_warning() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "HNR", "value": "28427034782"}]}
    [issue] = run(patient)
    assert issue.severity == "warning" and issue.rule == "no-hnr-checksum"


def test_identifier_in_extension_and_primitive_extension_paths() -> None:
    patient = {
        "resourceType": "Patient",
        "extension": [{"url": "http://example.org/x", "valueIdentifier": {"system": FNR, "value": "1503851236"}}],
        "_birthDate": {
            "extension": [{"url": "http://example.org/y", "valueIdentifier": {"system": FNR, "value": "15038512373"}}]
        },
    }
    found = {(i.expression, i.rule) for i in run(patient)}
    assert found == {
        ("Patient.extension[0].valueIdentifier.value", "no-fnr-format"),
        ("Patient.birthDate.extension[0].valueIdentifier.value", "no-fnr-checksum"),
    }


def test_fnr_sent_under_a_public_number_system_is_masked() -> None:
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "15038512363"}],
    }
    [issue] = run(org)
    assert issue.rule == "no-orgnr-format"
    assert "15038512363" not in issue.diagnostics + issue.diagnostics_nb and "150385*****" in issue.diagnostics


def test_non_string_value_is_reported_masked() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": FNR, "value": 15038512363}]}
    [issue] = run(patient)
    assert issue.rule == "no-fnr-format" and "15038512363" not in issue.diagnostics


def test_helsenorge_example_placeholder_fnr_is_rejected() -> None:
    path = SHARED / "reference" / "helsenorge-fhir" / "ServiceRequest-hn-basis-serviceRequest-example.json"
    if not path.exists():
        pytest.skip(f"shared reference data not found at {path}")
    example = json.loads(path.read_text(encoding="utf-8"))
    [issue] = run(example)
    assert issue.expression == "ServiceRequest.subject.identifier.value"
    assert issue.rule == "no-fnr-checksum" and "check digit" in issue.diagnostics
