"""The project's own profiles (profiles/*.json): the referral resources, valid and invalid."""

from __future__ import annotations

import json
import time

import pytest
from profiles_referral_fixtures import (
    HER,
    HPR,
    HUB,
    ORGANIZATION,
    PATIENT,
    PRACTITIONER,
    SERVICE_REQUEST,
    TASK,
    fresh,
    referral_bundle,
)
from profiles_testkit import errors, rules

from fhir_server.core.conformance.packages import PROFILES_DIR, ConformanceRegistry, load_project_profiles
from fhir_server.core.validation.profile.validator import ProfileValidator

SUBMITTED = {
    "hub-referral-servicerequest",
    "hub-referral-patient",
    "hub-referral-practitioner",
    "hub-referral-organization",
    "hub-pathway-plandefinition",
    "hub-pathway-careplan",
    "hub-routing-task",
}


def test_every_project_profile_is_present_with_snapshot_and_differential():
    names = {p.stem.removeprefix("StructureDefinition-") for p in PROFILES_DIR.glob("StructureDefinition-hub-*.json")}
    assert names == SUBMITTED
    for path in PROFILES_DIR.glob("StructureDefinition-*.json"):
        sd = json.loads(path.read_text("utf-8"))
        assert sd["fhirVersion"] == "4.0.1"
        assert sd["snapshot"]["element"] and sd["differential"]["element"], path.name


def test_project_canonicals_use_the_project_base_or_keep_helsenorge_urls():
    for path in PROFILES_DIR.glob("StructureDefinition-*.json"):
        url = json.loads(path.read_text("utf-8"))["url"]
        assert url.startswith(("https://fhir.referral-hub.no/StructureDefinition/", "http://helsenorge.no/fhir/")), url


def test_the_valid_referral_bundle_has_no_issues(nobasis_validator):
    assert nobasis_validator.validate(referral_bundle()) == []


def test_each_referral_resource_is_valid_on_its_own(nobasis_validator):
    for resource in (PATIENT, PRACTITIONER, ORGANIZATION, SERVICE_REQUEST, TASK):
        assert nobasis_validator.validate(fresh(resource)) == [], resource["resourceType"]


def test_profiles_work_without_no_basis_loaded():
    """The stored snapshots are self-contained; no-basis only adds its extension and datatype definitions."""
    reg = ConformanceRegistry()
    load_project_profiles(reg)
    issues = ProfileValidator(reg).validate(referral_bundle())
    assert errors(issues) == []
    assert {i.rule for i in issues} <= {"ext-unknown", "profile-unknown"}


# -- Patient --------------------------------------------------------------------------------------


def test_patient_needs_a_norwegian_person_identifier(nobasis_validator):
    pat = fresh(PATIENT)
    pat["identifier"] = [{"system": "http://example.org/local-id", "value": "42"}]
    issues = nobasis_validator.validate(pat)
    assert rules(issues) == ["hub-pat-1"]
    for system in ("urn:oid:2.16.578.1.12.4.1.4.2", "urn:oid:2.16.578.1.12.4.1.4.3"):
        pat["identifier"] = [{"system": system, "value": "41038512345"}]
        assert nobasis_validator.validate(pat) == []


def test_patient_h_number_follows_the_no_basis_hnr_slice(nobasis_validator):
    pat = fresh(PATIENT)
    hnr = {
        "type": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8327", "code": "HNR"}]},
        "system": "HNR",
        "value": "28427034781",
        "assigner": {"display": "Haukeland universitetssjukehus"},
    }
    pat["identifier"] = [hnr]
    assert nobasis_validator.validate(pat) == []
    del hnr["assigner"]
    issues = nobasis_validator.validate(pat)
    assert rules(issues) == ["profile-min"]
    assert issues[0].expression == "Patient.identifier[0].assigner"


def test_patient_needs_an_address_with_municipality_code(nobasis_validator):
    pat = fresh(PATIENT)
    del pat["address"][0]["_district"]
    assert rules(nobasis_validator.validate(pat)) == ["hub-pat-2"]
    del pat["address"]
    assert rules(nobasis_validator.validate(pat)) == ["hub-pat-2", "profile-min"]


def test_municipality_code_extension_is_checked_against_its_definition(nobasis_validator):
    pat = fresh(PATIENT)
    pat["address"][0]["_district"]["extension"][0] = {
        "url": "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode",
        "valueString": "4601",
    }
    issues = nobasis_validator.validate(pat)
    assert "profile-type" in rules(issues)
    assert "Patient.address[0].district.extension[0].valueString" in {i.expression for i in issues}


# -- Practitioner and Organization ----------------------------------------------------------------


def test_practitioner_needs_hpr(nobasis_validator):
    prac = fresh(PRACTITIONER)
    prac["identifier"] = [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15038512363"}]
    issues = nobasis_validator.validate(prac)
    assert rules(issues) == ["slice-min"]
    assert "'HPR'" in issues[0].diagnostics
    prac["identifier"].append({"system": HPR, "value": "9144889"})
    assert nobasis_validator.validate(prac) == []


def test_organization_needs_enh_resh_or_her(nobasis_validator):
    org = fresh(ORGANIZATION)
    org["identifier"] = [{"system": "http://example.org/internal", "value": "1"}]
    assert rules(nobasis_validator.validate(org)) == ["hub-org-1"]
    for system in ("urn:oid:2.16.578.1.12.4.1.4.101", "urn:oid:2.16.578.1.12.4.1.4.102", HER):
        org["identifier"] = [{"system": system, "value": "983974724"}]
        assert nobasis_validator.validate(org) == [], system


def test_organization_her_slice_max_one(nobasis_validator):
    org = fresh(ORGANIZATION)
    org["identifier"] += [{"system": HER, "value": "999"}]
    assert rules(nobasis_validator.validate(org)) == ["slice-max"]


# -- ServiceRequest -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda sr: sr.update(intent="plan"), ["profile-fixed"]),
        (lambda sr: sr.update(priority="asap"), ["binding-required"]),
        (lambda sr: sr.pop("priority"), ["profile-min"]),
        (lambda sr: sr.pop("authoredOn"), ["profile-min"]),
        (lambda sr: sr.pop("requester"), ["profile-min"]),
        (lambda sr: sr.pop("identifier"), ["profile-min"]),
        (lambda sr: sr["identifier"][0].pop("system"), ["profile-min"]),
        (
            lambda sr: sr.update(category=[{"coding": [{"system": "http://snomed.info/sct", "code": "306206005"}]}]),
            ["slice-min"],
        ),
        (
            lambda sr: sr.update(reasonCode=[{"coding": [{"system": "http://snomed.info/sct", "code": "35489007"}]}]),
            ["hub-sr-1"],
        ),
        (lambda sr: sr.update(reasonCode=[{"text": "depresjon"}]), ["hub-sr-1", "profile-min"]),
        (lambda sr: sr.update(subject={"reference": "Group/1"}), ["ref-target-type"]),
        (
            lambda sr: sr["extension"].append(
                {"url": "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato", "valueDateTime": "2026-11-21"}
            ),
            ["slice-max"],
        ),
        (
            lambda sr: sr["extension"].__setitem__(
                0, {"url": "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato", "valueString": "i går"}
            ),
            ["profile-type"],
        ),
    ],
)
def test_service_request_rules(nobasis_validator, change, expected):
    sr = fresh(SERVICE_REQUEST)
    assert nobasis_validator.validate(sr) == []
    change(sr)
    assert rules(nobasis_validator.validate(sr)) == expected


def test_icpc2_reason_and_all_priorities_are_accepted(nobasis_validator):
    sr = fresh(SERVICE_REQUEST)
    sr["reasonCode"] = [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7170", "code": "P76"}]}]
    for priority in ("routine", "urgent", "stat"):
        sr["priority"] = priority
        assert nobasis_validator.validate(sr) == [], priority


def test_referral_subject_must_conform_to_the_referral_patient_profile(nobasis_validator):
    bundle = referral_bundle()
    patient = bundle["entry"][0]["resource"]
    patient["identifier"] = [{"system": "http://example.org/local-id", "value": "42"}]
    issues = nobasis_validator.validate(bundle)
    # the ServiceRequest then does not conform either, so the routing Task's focus is reported too
    assert rules(issues) == ["hub-pat-1", "ref-target-profile", "ref-target-profile"]
    assert {i.expression for i in issues} == {
        "Bundle.entry[0].resource",
        "Bundle.entry[6].resource.subject",
        "Bundle.entry[7].resource.focus",
    }


# -- Task, CarePlan, PlanDefinition ---------------------------------------------------------------


def test_routing_task_rules(nobasis_validator):
    task = fresh(TASK)
    task["code"]["coding"][0]["code"] = "approve"
    task["owner"] = {"reference": "Patient/pat-1"}
    task.pop("focus")
    task["intent"] = "plan"
    issues = nobasis_validator.validate(task)
    assert rules(issues) == ["profile-fixed", "profile-min", "profile-pattern", "ref-target-type"]


def test_pathway_plan_definition_and_care_plan(nobasis_validator):
    pd = {
        "resourceType": "PlanDefinition",
        "meta": {"profile": [HUB + "hub-pathway-plandefinition"]},
        "url": "https://fhir.referral-hub.no/PlanDefinition/phv-voksne",
        "name": "PhvVoksne",
        "title": "Psykiske lidelser - voksne",
        "status": "active",
        "action": [{"title": "Klinisk beslutning"}],
    }
    assert nobasis_validator.validate(pd) == []
    bad = dict(pd, action=[{"description": "no title"}])
    del bad["title"]
    assert rules(nobasis_validator.validate(bad)) == ["profile-min", "profile-min"]
    cp = {
        "resourceType": "CarePlan",
        "meta": {"profile": [HUB + "hub-pathway-careplan"]},
        "instantiatesCanonical": [pd["url"]],
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/pat-1"},
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
    }
    assert nobasis_validator.validate(cp) == []
    assert rules(nobasis_validator.validate(dict(cp, intent="order", basedOn=[{"reference": "CarePlan/x"}]))) == [
        "profile-fixed",
        "ref-target-type",
    ]
    no_pathway = dict(cp)
    del no_pathway["instantiatesCanonical"]
    assert rules(nobasis_validator.validate(no_pathway)) == ["profile-min"]


def test_referral_bundle_validation_is_cheap(nobasis_validator):
    """Budget ~1-2 ms per 8-entry referral Bundle on the profiles (asserted loosely: the CI box is noisy)."""
    bundle = referral_bundle()
    nobasis_validator.validate(bundle)
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        nobasis_validator.validate(bundle)
    per_bundle_ms = (time.perf_counter() - start) / runs * 1000
    assert per_bundle_ms < 15, per_bundle_ms


def test_no_basis_address_datatype_profile_is_applied(nobasis_validator):
    """Patient.address is typed Address(no-basis-Address): its slices apply, down to the district primitive."""
    pat = fresh(PATIENT)
    municipality = pat["address"][0]["_district"]["extension"][0]
    assert nobasis_validator.validate(pat) == []
    pat["address"][0]["_district"]["extension"].append(dict(municipality))
    issues = nobasis_validator.validate(pat)
    assert [(i.rule, i.expression) for i in issues] == [("slice-max", "Patient.address[0].district.extension")]
    assert "no-basis-Address" in issues[0].diagnostics
