"""The pregnancy codes are data (pathways/ValueSet-pregnancy-*.json): the shipped lists decide as the
former code did, and a code added to a list changes the outcome."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from fhir_server.data import data_folder
from fhir_server.domain.pathways.catalog import PathwayCatalog, PathwayCatalogError
from fhir_server.domain.pathways.code_lists import CodeList, CodeListError
from fhir_server.domain.pathways.suggest import ICD10_SYSTEMS, ICPC2_SYSTEMS, pregnancy, suggest_pathways

CATALOG = PathwayCatalog.load()
ICD10 = "urn:oid:2.16.578.1.12.4.1.1.7110"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ADULT = {"resourceType": "Patient", "birthDate": "1996-03-10"}
#: The rule as the code stated it before it became data (ICD-10 Z33-Z35, O10-O48 by prefix).
FORMER_ICD10 = re.compile(r"^(Z3[345]|O(1[0-9]|2[0-9]|3[0-9]|4[0-8]))")


def condition(code: str, system: str = ICD10) -> dict:
    return {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}}


def status_observation(value: str, code: str = "82810-3") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": value}]},
    }


ICD10_SAMPLES = [f"{letter}{n:02d}{tail}" for letter in "OZF" for n in range(100) for tail in ("", ".5", "1")]


@pytest.mark.parametrize("system", sorted(ICD10_SYSTEMS))
def test_icd10_as_before_under_every_accepted_system(system: str) -> None:
    for code in ICD10_SAMPLES:
        expected = bool(FORMER_ICD10.match(code.replace(".", "")))
        assert pregnancy({}, [condition(code, system)], CATALOG) is expected, (system, code)


@pytest.mark.parametrize("system", sorted(ICPC2_SYSTEMS))
def test_icpc2_as_before_under_every_accepted_system(system: str) -> None:
    for n in range(1, 100):
        code = f"W{n:02d}"
        assert pregnancy({}, [condition(code, system)], CATALOG) is (code in {"W78", "W79", "W84"}), code


def test_snomed_and_the_status_observation_as_before() -> None:
    assert pregnancy({}, [condition("77386006", SNOMED)], CATALOG) is True
    assert pregnancy({}, [condition("77386007", SNOMED)], CATALOG) is False
    # the first status Observation outweighs the codes, wherever it stands
    assert pregnancy({}, [condition("Z33"), status_observation("60001007")], CATALOG) is False
    assert pregnancy({}, [status_observation("60001007"), condition("Z33")], CATALOG) is False
    assert pregnancy({}, [status_observation("77386006")], CATALOG) is True
    assert pregnancy({}, [status_observation("77386006", code="11449-6")], CATALOG) is False


def copy_with(tmp_path: Path, value_set_id: str, include: dict) -> PathwayCatalog:
    """A catalog from a copy of pathways/ with ``include`` added to one pregnancy value set."""
    folder = tmp_path / "pathways"
    shutil.copytree(data_folder("pathways"), folder)
    path = folder / f"ValueSet-{value_set_id}.json"
    value_set = json.loads(path.read_text(encoding="utf-8"))
    value_set["compose"]["include"].append(include)
    path.write_text(json.dumps(value_set), encoding="utf-8")
    return PathwayCatalog.load(folder)


def test_a_code_added_to_the_diagnoses_changes_the_suggestion(tmp_path: Path) -> None:
    catalog = copy_with(tmp_path, "pregnancy-diagnoses", {"system": ICD10, "concept": [{"code": "O80"}]})
    referral = {"resourceType": "ServiceRequest", "authoredOn": "2026-04-01", "reasonCode": []}
    conditions = [condition("F10.2"), condition("O80")]

    def suggested(cat: PathwayCatalog) -> list[str]:
        return [s.url.rsplit("/", 1)[1] for s in suggest_pathways(referral, ADULT, conditions, cat)]

    assert suggested(CATALOG) == ["tsb"]
    assert suggested(catalog) == ["gravide-og-rusmidler"]
    # the alias systems follow: the Helsenorge ICD-10 system, the same code
    assert pregnancy({}, [condition("O80", sorted(ICD10_SYSTEMS)[0])], catalog) is True


def test_an_is_a_root_added_to_the_diagnoses_takes_the_codes_below_it(tmp_path: Path) -> None:
    added = {"system": ICD10, "filter": [{"property": "concept", "op": "is-a", "value": "O99"}]}
    catalog = copy_with(tmp_path, "pregnancy-diagnoses", added)
    assert pregnancy({}, [condition("O99.4")], catalog) is True
    assert pregnancy({}, [condition("O99.4")], CATALOG) is False


def test_a_value_added_to_the_pregnant_status_changes_the_observations_reading(tmp_path: Path) -> None:
    added = {"system": SNOMED, "concept": [{"code": "72892002"}]}
    catalog = copy_with(tmp_path, "pregnancy-status-pregnant", added)
    assert pregnancy({}, [status_observation("72892002")], catalog) is True
    assert pregnancy({}, [status_observation("72892002")], CATALOG) is False


def test_a_value_set_the_reader_cannot_evaluate_refuses_the_catalog(tmp_path: Path) -> None:
    unsupported = {"system": ICD10, "filter": [{"property": "concept", "op": "regex", "value": "O8.*"}]}
    with pytest.raises(PathwayCatalogError, match="only 'concept is-a <code>' is read"):
        copy_with(tmp_path, "pregnancy-diagnoses", unsupported)
    with pytest.raises(CodeListError):
        CodeList.from_value_set({"url": "x", "compose": {"include": [{"valueSet": ["y"]}]}})


def test_a_missing_pregnancy_list_refuses_the_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "pathways"
    shutil.copytree(data_folder("pathways"), folder)
    (folder / "ValueSet-pregnancy-status-not-pregnant.json").unlink()
    with pytest.raises(PathwayCatalogError, match="pregnancy-status-not-pregnant is missing"):
        PathwayCatalog.load(folder)
