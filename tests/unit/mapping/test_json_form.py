"""The JSON referral form: schema errors with field paths, and the mapping to a valid transaction Bundle."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.identifiers import identity_number_in
from fhir_server.domain.referral.mapping import form_to_bundle
from fhir_server.domain.referral.mapping.json_form import ReferralFormSchema
from fhir_server.domain.referral.mapping.model import REFERRAL_ID_SYSTEM
from fhir_server.domain.routing.decision import default_tables, route

EXAMPLE = Path(__file__).resolve().parents[3] / "mappings" / "examples" / "referral-form-example.json"
FNR, DNR = "urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2"


@pytest.fixture
def form() -> dict:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def resources(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def paths(data: dict) -> dict[str, str]:
    return {i.expression: i.diagnostics for i in form_to_bundle(data).issues}


def test_example_maps_to_a_valid_bundle_that_routes(form: dict) -> None:
    mapped = form_to_bundle(form)
    assert mapped.issues == []
    assert (mapped.action, mapped.message_type, mapped.source_format) == ("create", "new", "form")
    assert mapped.referral_identifier == (REFERRAL_ID_SYSTEM, "ehr-2026-000123")
    assert validate_resource(mapped.bundle) == []
    (patient,) = resources(mapped.bundle, "Patient")
    assert patient["identifier"] == [{"system": FNR, "value": "15038512363"}]
    (sr,) = resources(mapped.bundle, "ServiceRequest")
    assert (sr["priority"], sr["authoredOn"]) == ("urgent", "2026-11-20T10:15:00+01:00")
    assert [c["coding"][0]["code"] for c in sr["reasonCode"]] == ["F32.1", "P76"]
    assert sr["performer"][0]["identifier"] == {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983974724"}
    assert len(resources(mapped.bundle, "Condition")) == 2
    (observation,) = resources(mapped.bundle, "Observation")
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "60001007"  # not pregnant
    decision = route(patient, sr, default_tables(), service_line="phv")
    assert (decision.rhf_orgnr, decision.hf_orgnr) == ("983658725", "983974724")


def test_example_conforms_to_the_project_profiles(form: dict) -> None:
    from fhir_server.core.validation.profile.validator import validate_against_profiles

    profiles = {
        "Patient": "hub-referral-patient",
        "Practitioner": "hub-referral-practitioner",
        "Organization": "hub-referral-organization",
        "ServiceRequest": "hub-referral-servicerequest",
    }
    for entry in form_to_bundle(form).bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in profiles:
            url = "https://fhir.referral-hub.no/StructureDefinition/" + profiles[resource["resourceType"]]
            errors = [i for i in validate_against_profiles(resource, [url]) if i.severity in ("error", "fatal")]
            assert errors == [], (resource["resourceType"], errors)


def test_d_number_and_no_receiver(form: dict) -> None:
    del form["patient"]["fnr"], form["receiver"], form["pregnant"]
    form["patient"]["dnr"] = "49079023425"
    mapped = form_to_bundle(form)
    assert mapped.issues == []
    (patient,) = resources(mapped.bundle, "Patient")
    assert patient["identifier"][0]["system"] == DNR
    (sr,) = resources(mapped.bundle, "ServiceRequest")
    assert "performer" not in sr and resources(mapped.bundle, "Observation") == []


def test_both_or_neither_person_number_is_an_error(form: dict) -> None:
    form["patient"]["dnr"] = "49079023425"
    assert "patient.fnr" in paths(form)
    del form["patient"]["dnr"], form["patient"]["fnr"]
    assert "patient.fnr" in paths(form)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda f: f["patient"].update(fnr="1503851236"), "patient.fnr"),
        (lambda f: f["patient"]["address"].pop("kommunenummer"), "patient.address.kommunenummer"),
        (lambda f: f["patient"]["address"].update(kommunenummer="46011"), "patient.address.kommunenummer"),
        (lambda f: f.update(priority="N"), "priority"),
        (lambda f: f["diagnoses"][1].update(system="snomed"), "diagnoses[1].system"),
        (lambda f: f.update(diagnoses=[]), "diagnoses"),
        (lambda f: f.pop("reason"), "reason"),
        (lambda f: f.update(date="20.11.2026"), "date"),
        (lambda f: f["referrer"].update(hpr="91448-89"), "referrer.hpr"),
        (lambda f: f["referrer"]["organisation"].pop("herId"), "referrer.organisation.orgnr"),
        (lambda f: f.update(colour="blue"), "colour"),
    ],
)
def test_schema_errors_name_the_field(form: dict, change, path: str) -> None:
    change(form)
    mapped = form_to_bundle(form)
    assert mapped.bundle == {} and mapped.action is None
    assert path in {i.expression for i in mapped.issues}
    assert all(i.severity == "error" for i in mapped.issues)


def test_the_schema_accepts_the_example(form: dict) -> None:
    assert ReferralFormSchema().validate(form) == {}
    form["priority"] = "soon"
    assert "priority" in ReferralFormSchema().validate(form)


def test_check_digit_error_is_at_the_field_and_masked(form: dict) -> None:
    form["patient"]["fnr"] = "15038512364"
    (issue,) = form_to_bundle(form).issues
    assert (issue.expression, issue.rule) == ("patient.fnr", "no-fnr-checksum")
    assert "15038512364" not in issue.diagnostics + (issue.diagnostics_nb or "")


def test_no_issue_text_contains_a_whole_fodselsnummer(form: dict) -> None:
    bad = copy.deepcopy(form)
    bad["patient"]["dnr"] = "15038512363"  # both numbers, and a fødselsnummer given as D-nummer
    bad["patient"]["fnr"] = "1503851236X"
    for data in (bad, {**form, "patient": {**form["patient"], "fnr": "15038512364"}}):
        for issue in form_to_bundle(data).issues:
            text = f"{issue.diagnostics} {issue.diagnostics_nb} {issue.expression}"
            assert "15038512363" not in text and "15038512364" not in text
            assert not identity_number_in(text)


def test_not_an_object() -> None:
    assert form_to_bundle([]).issues[0].code == "structure"  # type: ignore[arg-type]
