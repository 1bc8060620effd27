"""The pathway files: valid FHIR R4 (fhir.resources R4B models), complete, and loadable by the catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.domain.pathways.catalog import (
    DEFAULT_FOLDER,
    EXT_DEADLINE_WORKING_DAYS,
    MILESTONE_SYSTEM,
    PathwayCatalog,
    PathwayCatalogError,
    iter_milestones,
)

FILES = sorted(DEFAULT_FOLDER.glob("*.json"))
PLAN_FILES = [f for f in FILES if f.name.startswith("PlanDefinition-")]
EXPECTED_PLANS = {
    "psykisk-helsevern-voksne",
    "psykisk-helsevern-barn-og-unge",
    "tsb",
    "psykoselidelser",
    "tvangslidelse-ocd",
    "spiseforstyrrelser-barn-og-unge",
    "gravide-og-rusmidler",
    "ordinaer-henvisning",
}
CATALOG = PathwayCatalog.load()


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_validates_with_r4_models(path: Path) -> None:
    resource = _load(path)
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    assert path.name == f"{resource['resourceType']}-{resource['id']}.json"


def test_the_r4_model_rejects_a_broken_plan() -> None:
    resource = _load(PLAN_FILES[0])
    resource["action"][0]["timingDuration"] = "7 days"  # a Duration must be an object
    with pytest.raises(ValueError):
        get_fhir_model_class("PlanDefinition").model_validate(resource)


def test_catalog_has_the_seven_pathways_and_the_ordinary_referral() -> None:
    assert {p["id"] for p in CATALOG.plans} == EXPECTED_PLANS
    assert CATALOG.plans[-1]["id"] == "ordinaer-henvisning"  # fallback is evaluated and listed last


@pytest.mark.parametrize("path", PLAN_FILES, ids=lambda p: p.name)
def test_plan_definition_metadata(path: Path) -> None:
    plan = _load(path)
    assert plan["type"]["coding"][0]["code"] == "clinical-protocol"
    assert plan["status"] == "active"
    assert plan["url"] == f"https://fhir.referral-hub.no/PlanDefinition/{plan['id']}"
    assert plan["version"] and plan["identifier"] and plan["name"] and plan["title"] and plan["description"]
    assert plan["jurisdiction"][0]["coding"][0] == {"system": "urn:iso:std:iso:3166", "code": "NO", "display": "Norway"}
    condition = plan["action"][0]["condition"][0]
    assert condition["kind"] == "applicability"
    assert condition["expression"]["language"] == "text/fhirpath"


@pytest.mark.parametrize("path", PLAN_FILES, ids=lambda p: p.name)
def test_milestones_use_known_codes_and_activity_definitions(path: Path) -> None:
    plan = _load(path)
    milestone_codes = {c["code"] for c in CATALOG.code_systems[MILESTONE_SYSTEM]["concept"]}
    milestones = list(iter_milestones(plan))
    assert milestones[0]["id"] == "referral-received" and "relatedAction" not in milestones[0]
    for action in milestones:
        coding = action["code"][0]["coding"][0]
        assert coding["system"] == MILESTONE_SYSTEM and coding["code"] in milestone_codes
        assert CATALOG.activity_definition(action["definitionCanonical"]) is not None
        for child in action.get("action", []):  # clinical-decision outcomes
            system = child["code"][0]["coding"][0]["system"]
            assert child["code"][0]["coding"][0]["code"] in {c["code"] for c in CATALOG.code_systems[system]["concept"]}


@pytest.mark.parametrize("path", PLAN_FILES, ids=lambda p: p.name)
def test_only_the_assessment_has_the_working_day_deadline(path: Path) -> None:
    plan = _load(path)
    with_deadline = {
        a["id"]: e["valueInteger"]
        for a in iter_milestones(plan)
        for e in a.get("extension", [])
        if e["url"] == EXT_DEADLINE_WORKING_DAYS
    }
    assert with_deadline == {"referral-assessed": 10}


def test_age_and_gender_use_context() -> None:
    contexts = {p["id"]: p.get("useContext", []) for p in CATALOG.plans}
    assert contexts["psykisk-helsevern-voksne"][0]["valueRange"]["low"]["value"] == 18
    assert contexts["psykisk-helsevern-barn-og-unge"][0]["valueRange"]["high"]["value"] == 17
    assert contexts["spiseforstyrrelser-barn-og-unge"][0]["valueRange"]["high"]["value"] == 17
    assert contexts["gravide-og-rusmidler"][0]["valueCodeableConcept"]["coding"][0]["code"] == "female"
    assert contexts["psykoselidelser"] == []


def test_national_type_codes_only_where_known() -> None:
    national = {
        p["id"]: c["code"]
        for p in CATALOG.plans
        for c in p["action"][0]["code"][0]["coding"]
        if c["system"] == "urn:oid:2.16.578.1.12.4.1.1.9321"
    }
    assert national == {"psykisk-helsevern-voksne": "D11", "psykisk-helsevern-barn-og-unge": "D12", "tsb": "D01"}


def test_plan_lookup_by_url_and_version() -> None:
    url = "https://fhir.referral-hub.no/PlanDefinition/tsb"
    assert CATALOG.plan(url)["id"] == "tsb"
    assert CATALOG.plan(f"{url}|0.1.0")["id"] == "tsb"
    with pytest.raises(KeyError):
        CATALOG.plan(f"{url}|9.9.9")


def _broken_copy(tmp_path: Path, edit) -> Path:
    for f in FILES:
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / "PlanDefinition-tsb.json"
    plan = _load(target)
    edit(plan)
    target.write_text(json.dumps(plan), encoding="utf-8")
    return tmp_path


def test_load_rejects_unknown_related_action(tmp_path: Path) -> None:
    def edit(plan: dict) -> None:
        plan["action"][0]["action"][1]["relatedAction"][0]["actionId"] = "nowhere"

    with pytest.raises(PathwayCatalogError) as err:
        PathwayCatalog.load(_broken_copy(tmp_path, edit))
    assert err.value.issues[0].expression == "PlanDefinition.action[0].action[1].relatedAction[0].actionId"


def test_load_rejects_bad_fhirpath(tmp_path: Path) -> None:
    def edit(plan: dict) -> None:
        plan["action"][0]["condition"][0]["expression"]["expression"] = "%icd10.where("

    with pytest.raises(PathwayCatalogError) as err:
        PathwayCatalog.load(_broken_copy(tmp_path, edit))
    assert err.value.issues[0].expression == "PlanDefinition.action[0].condition[0].expression.expression"


def test_load_rejects_unknown_variable(tmp_path: Path) -> None:
    def edit(plan: dict) -> None:
        plan["action"][0]["condition"][0]["expression"]["expression"] = "%diagnosis.exists()"

    with pytest.raises(PathwayCatalogError, match="undefined environment variable"):
        PathwayCatalog.load(_broken_copy(tmp_path, edit))


def test_load_rejects_unknown_activity_definition(tmp_path: Path) -> None:
    def edit(plan: dict) -> None:
        plan["action"][0]["action"][2]["definitionCanonical"] = "https://example.org/ActivityDefinition/x"

    with pytest.raises(PathwayCatalogError, match="not in the catalog"):
        PathwayCatalog.load(_broken_copy(tmp_path, edit))
