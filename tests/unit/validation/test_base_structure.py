"""Structure layer (fhir.resources R4B), the resource-type allowlist, paths, and no exceptions escaping."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from fhir_server.core import jsonio
from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.base.structure import check_structure, loc_to_path, path_to_loc

BUNDLE_FILE = Path(__file__).resolve().parent / "data" / "referral-bundle.json"


def referral_bundle() -> dict:
    return jsonio.loads(BUNDLE_FILE.read_bytes())


def errors(resource: dict) -> list[tuple[str | None, str]]:
    return [(i.expression, i.code) for i in validate_resource(resource) if i.severity == "error"]


def test_referral_bundle_fixture_is_valid():
    assert validate_resource(referral_bundle()) == []


def test_referral_bundle_fixture_passes_fhir_resources_alone():
    assert check_structure(referral_bundle()) == []


def test_bundle_with_three_faults_in_three_entries_reports_all_three():
    bundle = referral_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "15.03.1985"
    bundle["entry"][2]["resource"]["foo"] = "bar"
    del bundle["entry"][5]["resource"]["status"]
    assert errors(bundle) == [
        ("Bundle.entry[0].resource.birthDate", "value"),
        ("Bundle.entry[2].resource.foo", "structure"),
        ("Bundle.entry[5].resource.status", "required"),
    ]


def test_all_missing_required_elements_reported_at_once():
    # fhir.resources alone reports only `subject` here
    found = errors({"resourceType": "ServiceRequest"})
    assert found == [
        ("ServiceRequest.intent", "required"),
        ("ServiceRequest.status", "required"),
        ("ServiceRequest.subject", "required"),
    ]


def test_unknown_type_in_bundle_is_an_issue_not_an_exception():
    bundle = referral_bundle()
    bundle["entry"][3]["resource"] = {"resourceType": "MedicinalProduct", "id": "x"}
    issues = validate_resource(bundle)
    assert [(i.expression, i.code) for i in issues] == [("Bundle.entry[3].resource.resourceType", "not-supported")]
    assert issues[0].diagnostics == (
        "Bundle.entry[3].resource.resourceType: 'MedicinalProduct' is not a resource type this server accepts"
    )


def test_unknown_type_does_not_hide_other_faults():
    bundle = referral_bundle()
    bundle["entry"][1]["resource"] = {"resourceType": "Foo"}
    bundle["entry"][6]["resource"]["onsetDateTime"] = "2026-08-01 10:00"
    assert errors(bundle) == [
        ("Bundle.entry[1].resource.resourceType", "not-supported"),
        ("Bundle.entry[6].resource.onsetDateTime", "value"),
    ]


def test_r4b_only_type_not_on_allowlist_is_refused():
    bundle = referral_bundle()
    bundle["entry"][1]["resource"] = {"resourceType": "SubscriptionTopic", "status": "draft", "url": "http://x.no/t"}
    assert errors(bundle) == [("Bundle.entry[1].resource.resourceType", "not-supported")]


def test_top_level_type_outside_allowlist():
    assert errors({"resourceType": "MedicinalProduct"}) == [("MedicinalProduct.resourceType", "not-supported")]
    assert errors({"resourceType": "Patient"}) == []


def test_missing_resource_type_top_and_nested():
    assert errors({"id": "x"}) == [("Resource", "required")]
    bundle = referral_bundle()
    del bundle["entry"][4]["resource"]["resourceType"]
    assert errors(bundle) == [("Bundle.entry[4].resource", "required")]


def test_contained_unknown_type():
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Nonsense", "id": "n1"}],
        "managingOrganization": {"reference": "#n1"},
    }
    found = errors(patient)
    assert ("Patient.contained[0].resourceType", "not-supported") in found


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": "text"}]},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": []}]},
        {"resourceType": "Bundle", "type": "transaction", "entry": "x"},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": 5}}]},
        {"resourceType": "Patient", "contained": [None, 3, "x"]},
        {"resourceType": "Patient", "extension": [{"url": None, "valueString": {"a": 1}}]},
        {"resourceType": "Patient", "name": [{"given": [[["deep"]]]}]},
        {"resourceType": "Patient", "_gender": [1], "gender": {"x": 1}},
        {"resourceType": ["Patient"]},
    ],
)
def test_malformed_input_never_raises(resource):
    issues = validate_resource(resource)
    assert issues and all(i.severity == "error" for i in issues)


def test_not_an_object_is_an_issue():
    assert errors([1, 2]) == [("", "structure")]  # type: ignore[arg-type]


def test_unknown_element_nested_path():
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "bogus": 1}]}
    assert errors(patient) == [("Patient.identifier[0].bogus", "structure")]


def test_same_path_reported_once_by_both_layers():
    # both layers flag Patient.foo and Patient.gender (array for max 1)
    patient = {"resourceType": "Patient", "foo": 1, "gender": ["male"]}
    found = errors(patient)
    assert found == [("Patient.foo", "structure"), ("Patient.gender", "structure")]


def test_choice_with_two_types_reported_once():
    found = errors({"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"})
    assert found == [("Patient.deceasedDateTime", "structure")]


def test_date_message_is_readable():
    issues = validate_resource({"resourceType": "Patient", "birthDate": "1985-13-45"})
    assert [(i.expression, i.rule) for i in issues] == [("Patient.birthDate", "format-date")]
    assert "'1985-13-45' is not a valid FHIR date" in issues[0].diagnostics
    assert "pydantic" not in issues[0].diagnostics and "http" not in issues[0].diagnostics


def test_loc_and_path_conversion_round_trip():
    loc = ("entry", 2, "resource", "contained", 0, "birthDate")
    path = loc_to_path("Bundle", loc)
    assert path == "Bundle.entry[2].resource.contained[0].birthDate"
    assert path_to_loc(path) == loc


def test_input_is_not_modified():
    bundle = referral_bundle()
    bundle["entry"][3]["resource"] = {"resourceType": "MedicinalProduct"}
    before = copy.deepcopy(bundle)
    validate_resource(bundle)
    assert bundle == before


def test_deep_nesting_is_an_issue_not_an_exception():
    ext: dict = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(2000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    issues = validate_resource({"resourceType": "Patient", "extension": [ext]})
    assert [(i.code, i.diagnostics) for i in issues] == [("structure", "the resource is nested too deeply")]


def test_warm_up_builds_schemas_without_errors():
    from fhir_server.core.validation import warm_up

    assert warm_up(frozenset({"Patient", "ServiceRequest"}), models=False) > 10


def test_allowlisted_type_without_definitions_is_refused_cleanly():
    from fhir_server.core.resource_types import KNOWN_TYPES

    allowed = KNOWN_TYPES | {"Account"}
    issues = validate_resource({"resourceType": "Account"}, allowed)
    assert ("Account.resourceType", "not-supported") in [(i.expression, i.code) for i in issues]
