"""The mapping data files: valid FHIR, complete for the Volven code lists they map, and consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.core.validation import validate_resource
from fhir_server.domain.referral.mapping import volven

REPO = Path(__file__).resolve().parents[3]
CONCEPT_MAPS = [
    "ConceptMap-volven-8306-to-fhir-priority.json",
    "ConceptMap-volven-8304-to-fhir-priority.json",
    "ConceptMap-volven-7309-to-fhir-request-status.json",
]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", CONCEPT_MAPS)
def test_concept_maps_are_valid_fhir(name: str) -> None:
    assert validate_resource(load(REPO / "mappings" / name)) == []


def test_every_8306_code_is_mapped_to_a_profile_priority() -> None:
    codes = {c["code"] for c in load(REPO / "terminology" / "CodeSystem-volven-8306.json")["concept"]}
    mapped = volven.priority_maps()[volven.VOLVEN_8306].codes
    assert set(mapped) == codes
    allowed = {
        c["code"]
        for inc in load(REPO / "profiles" / "ValueSet-referral-priority.json")["compose"]["include"]
        for c in inc["concept"]
    }
    assert {target for target, _ in mapped.values()} <= allowed
    assert volven.priority_for(volven.VOLVEN_8306, "X") is None


def test_7309_codes_and_actions_agree() -> None:
    codes = {c["code"] for c in load(REPO / "terminology" / "CodeSystem-volven-7309.json")["concept"]}
    status = volven.status_map().codes
    actions = volven.field_map()["servTypeActions"]
    assert set(status) <= codes and set(actions) == set(status)
    assert status["C"][0] == "revoked" and actions["C"] == "revoke"


def test_field_map_versions_name_their_namespaces() -> None:
    fmap = volven.field_map()
    prefixes = set(fmap["namespaces"])
    for version in fmap["versions"].values():
        for spec in version["fields"].values():
            used = {p.split(":")[0].lstrip("/[@$H") for p in spec["xpath"].split("/") if ":" in p}
            assert used <= prefixes, spec
