"""The published no-basis 2.2.2 and Helsenorge artefacts (from ../shared/reference): loading, examples, defects."""

from __future__ import annotations

import json

import pytest
from conftest import HELSENORGE, NO_BASIS, need
from profiles_testkit import errors, rules

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.conformance.packages import ConformanceRegistry, Suppressions, xml_to_json
from fhir_server.core.validation.profile.snapshot import generate_snapshot
from fhir_server.core.validation.profile.validator import ProfileValidator

NB = "http://hl7.no/fhir/StructureDefinition/"


def examples() -> list:
    if not NO_BASIS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{NO_BASIS} is absent"))]
    return sorted((NO_BASIS / "Examples").glob("*.xml"), key=lambda p: p.name)


def test_no_basis_loads_without_problems():
    reg = ConformanceRegistry()
    problems = reg.load_folder(need(NO_BASIS))
    # the IG listing is not a FHIR resource; everything else loads
    assert [p.source.rsplit("/", 1)[-1] for p in problems] == ["no-basis-fhir-ig-list.json"]
    assert len(reg.urls("StructureDefinition")) == 35
    assert reg.resolve(NB + "no-basis-Patient")["version"] == "2.0.10"
    assert reg.resolve(NB + "no-basis-Patient|2.0.10") is not None
    assert reg.resolve("urn:oid:2.16.578.1.12.4.1.4.4")["resourceType"] == "NamingSystem"


def test_snapshots_generate_for_every_profile_whose_base_is_known(nobasis_registry):
    for sd in nobasis_registry.all("StructureDefinition"):
        if not sd["url"].startswith(NB):
            continue
        base_type = sd["type"]
        if sd["baseDefinition"].startswith("http://hl7.org/") and r4().type(base_type) is None:
            continue  # the R4 subset of this server has no AllergyIntolerance, Medication, Person ...
        elements = generate_snapshot(sd, nobasis_registry)
        assert elements[0]["path"] == base_type


def test_no_basis_patient_snapshot_has_the_identifier_slices(nobasis_registry):
    elements = {
        e["id"]: e for e in generate_snapshot(nobasis_registry.resolve(NB + "no-basis-Patient"), nobasis_registry)
    }
    assert elements["Patient.identifier:FNR.system"]["fixedUri"] == "urn:oid:2.16.578.1.12.4.1.4.1"
    assert elements["Patient.identifier:HNR.assigner"]["min"] == 1
    assert elements["Patient.identifier"]["slicing"]["discriminator"] == [{"type": "value", "path": "system"}]


@pytest.mark.parametrize("path", examples(), ids=lambda p: getattr(p, "name", "absent"))
def test_no_basis_examples_validate_against_their_claimed_profiles(path, nobasis_validator):
    resource = xml_to_json(path.read_bytes())
    claims = (resource.get("meta") or {}).get("profile", [])
    issues = nobasis_validator.validate(resource)
    if resource["resourceType"] == "Procedure" and r4().type("Procedure") is None:
        # Known limit: the server's R4 subset has no core Procedure, so no-basis-Procedure cannot be expanded.
        # (AppointmentResponse is not in the subset either, but its published file carries a snapshot.)
        assert rules(errors(issues)) == ["profile-broken"]
        return
    assert errors(issues) == [], (claims, [i.diagnostics for i in errors(issues)])
    # the only warnings: the core patient-citizenship extension, which is not in the R4 subset
    assert {i.rule for i in issues} <= {"ext-unknown"}


def test_masked_fnr_example_is_not_a_profile_error(nobasis_validator):
    """Espen's masked fødselsnummer (210377xxxxx) is a defect of the example for the check-digit rule.

    It is not a profile error: the engine must not flag it (the identifier helper's rule does).
    """
    path = need(NO_BASIS) / "Examples" / "no-basis-Patient-Espen-Eksempel.xml"
    resource = xml_to_json(path.read_bytes())
    assert "xxxxx" in resource["identifier"][0]["value"]
    assert errors(nobasis_validator.validate(resource)) == []


def test_appointment_response_inv_1_is_tolerated_only_through_the_suppression():
    path = need(NO_BASIS) / "Examples" / "no-basis-AppointmentResponse-example.xml"
    resource = xml_to_json(path.read_bytes())
    strict = ConformanceRegistry(suppressions=Suppressions())
    strict.load_folder(NO_BASIS)
    assert "inv-1" in rules(ProfileValidator(strict).validate(resource))
    tolerant = ConformanceRegistry()
    tolerant.load_folder(NO_BASIS)
    validator = ProfileValidator(tolerant)
    assert "inv-1" not in rules(validator.validate(resource))
    url = NB + "no-basis-AppointmentResponse"
    assert any("suppressed" in s for s in validator.compiled(url).skipped)


def test_geonorge_binding_is_tolerated_only_through_the_suppression():
    path = need(NO_BASIS) / "Examples" / "no-basis-Patient-Jannice-Søreng.xml"
    resource = xml_to_json(path.read_bytes())
    strict = ConformanceRegistry(suppressions=Suppressions())
    strict.load_folder(NO_BASIS)
    assert "binding-unknown-vs" in rules(ProfileValidator(strict).validate(resource))
    tolerant = ConformanceRegistry()
    tolerant.load_folder(NO_BASIS)
    assert "binding-unknown-vs" not in rules(ProfileValidator(tolerant).validate(resource))


def test_urn_uid_typo_is_tolerated_only_through_the_suppression():
    source = {
        "url": NB + "no-basis-sourceofinformation",
        "extension": [
            {
                "url": "source",
                "valueCodeableConcept": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7498", "code": "1"}]},
            }
        ],
    }
    allergy = {"resourceType": "AllergyIntolerance", "extension": [source]}
    strict = ConformanceRegistry(suppressions=Suppressions())
    strict.load_folder(need(NO_BASIS))
    # strict: the urn:uid fixed value, and the published context type 'extension' (also suppressed)
    assert rules(ProfileValidator(strict).validate(allergy)) == ["ext-context", "profile-fixed"]
    tolerant = ConformanceRegistry()
    tolerant.load_folder(NO_BASIS)
    assert ProfileValidator(tolerant).validate(allergy) == []
    wrong = json.loads(json.dumps(allergy).replace("7498", "7497"))
    assert rules(ProfileValidator(tolerant).validate(wrong)) == ["profile-fixed"]


def test_hnr_literal_system_is_listed_for_base_validation():
    assert ConformanceRegistry().suppressions.non_uri_systems() == frozenset({"HNR"})


@pytest.fixture(scope="module")
def helsenorge_validator() -> ProfileValidator:
    reg = ConformanceRegistry()
    reg.load_folder(need(HELSENORGE))
    return ProfileValidator(reg)


def helsenorge_example() -> dict:
    return json.loads((need(HELSENORGE) / "ServiceRequest-hn-basis-serviceRequest-example.json").read_text("utf-8"))


def test_helsenorge_service_request_example_validates(helsenorge_validator):
    # its placeholder fødselsnummer 12345678901 is the identifier check-digit rule's business, not the profile's
    assert helsenorge_validator.validate(helsenorge_example()) == []


def test_helsenorge_profile_rules_catch_a_bad_request(helsenorge_validator):
    sr = helsenorge_example()
    sr["priority"] = "asap"
    sr["subject"]["reference"] = "Patient/1"
    sr["subject"]["identifier"]["system"] = "urn:oid:2.16.578.1.12.4.1.4.4"
    sr["status"] = "draft"
    issues = helsenorge_validator.validate(sr)
    assert rules(issues) == ["PriorityUrgentOrRoutineOrStat", "ValidSubjectSystemURL", "profile-max", "profile-pattern"]
    assert {i.expression for i in issues} == {
        "ServiceRequest.priority",
        "ServiceRequest.subject.identifier.system",
        "ServiceRequest.subject.reference",
        "ServiceRequest.status",
    }
