"""validate_against_profiles: the verdict API behind $validate."""

from __future__ import annotations

from profiles_referral_fixtures import HUB, PATIENT, fresh
from profiles_testkit import rules

from fhir_server.core.validation.profile.validator import validate_against_profiles


def test_claims_and_requested_profiles(nobasis_validator):
    pat = fresh(PATIENT)
    assert validate_against_profiles(pat, validator=nobasis_validator) == []
    pat["meta"]["profile"] = []
    del pat["address"]
    assert validate_against_profiles(pat, validator=nobasis_validator) == []
    issues = validate_against_profiles(pat, [HUB + "hub-referral-patient"], validator=nobasis_validator)
    assert rules(issues) == ["hub-pat-2", "profile-min"]


def test_unknown_profile_is_an_error(nobasis_validator):
    issues = validate_against_profiles(fresh(PATIENT), ["http://example.org/unknown"], validator=nobasis_validator)
    assert [(i.severity, i.rule) for i in issues] == [("error", "profile-unknown")]
    assert issues[0].diagnostics == "Profile http://example.org/unknown is not known to this server"
    claimed = fresh(PATIENT)
    claimed["meta"]["profile"].append("http://example.org/unknown")
    assert rules(validate_against_profiles(claimed, validator=nobasis_validator)) == ["profile-unknown"]


def test_modes(nobasis_validator):
    bad = fresh(PATIENT)
    bad["identifier"] = []
    assert validate_against_profiles(bad, mode="delete", validator=nobasis_validator) == []
    assert validate_against_profiles(bad, mode="update", validator=nobasis_validator) != []
    assert rules(validate_against_profiles(bad, mode="patch", validator=nobasis_validator)) == ["validate-mode"]


def test_default_validator_knows_the_project_profiles():
    issues = validate_against_profiles({"resourceType": "Patient"}, [HUB + "hub-referral-patient"])
    assert "hub-pat-1" in rules(issues)
