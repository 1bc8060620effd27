"""The geography and catchment data files: shape, counts, consistency, and agreement with the reference data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.organization import Organization
from stdnum.no import orgnr as stdnum_orgnr

from fhir_server.domain.routing.tables import ORGNR_SYSTEM, RoutingTables

REPO = Path(__file__).resolve().parents[3]
TERMINOLOGY = REPO / "terminology"
MAPPINGS = REPO / "mappings"
GEO = REPO / ".." / "shared" / "reference" / "geo"
OWN_FILES = [
    TERMINOLOGY / "CodeSystem-kommunenummer-2024.json",
    TERMINOLOGY / "CodeSystem-fylkesnummer-2024.json",
    TERMINOLOGY / "ConceptMap-kommunenummer-pre2024-to-2024.json",
    TERMINOLOGY / "ConceptMap-kommunenummer-2013-2019-to-2024.json",
    MAPPINGS / "ConceptMap-fylke-to-rhf.json",
    MAPPINGS / "ConceptMap-oslo-bydel-to-hf-phv.json",
    MAPPINGS / "ConceptMap-kommune-to-hf-phv.json",
    MAPPINGS / "ConceptMap-kommune-to-hf-tsb.json",
    *sorted([*MAPPINGS.glob("Organization-rhf-*.json"), *MAPPINGS.glob("Organization-hf-*.json")]),
]
#: Municipalities per county, 2024 (project notes pathways-and-routing.md §3.3).
PER_COUNTY = {
    "03": 1,
    "11": 23,
    "15": 27,
    "18": 41,
    "31": 12,
    "32": 21,
    "33": 18,
    "34": 46,
    "39": 6,
    "40": 17,
    "42": 25,
    "46": 43,
    "50": 38,
    "55": 21,
    "56": 18,
}
RHF_ORGNR = {
    "Helse Sør-Øst RHF": "991324968",
    "Helse Vest RHF": "983658725",
    "Helse Midt-Norge RHF": "983658776",
    "Helse Nord RHF": "883658752",
}
MODELS = {"CodeSystem": CodeSystem, "ConceptMap": ConceptMap, "Organization": Organization}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def need_geo() -> None:
    if not (GEO / "kommuner-2024-derived.csv").is_file():
        pytest.skip(f"reference data not present at {GEO.resolve()} (the shared folder beside the repository)")


def read_csv(name: str) -> list[dict[str, str]]:
    with (GEO / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: p.name)
def test_every_file_is_a_valid_r4_resource_with_own_canonical(path: Path) -> None:
    resource = load(path)
    MODELS[resource["resourceType"]].model_validate(resource)
    if "url" in resource:
        assert resource["url"].startswith("https://fhir.referral-hub.no/")
        assert "project" in resource["description"]


def test_invalid_resource_is_refused_by_the_model_check() -> None:
    broken = load(TERMINOLOGY / "CodeSystem-fylkesnummer-2024.json")
    broken["content"] = ["complete"]
    with pytest.raises(ValueError):
        CodeSystem.model_validate(broken)


def test_kommune_codesystem_has_357_municipalities_with_their_county() -> None:
    cs = load(TERMINOLOGY / "CodeSystem-kommunenummer-2024.json")
    counties = {c["code"] for c in load(TERMINOLOGY / "CodeSystem-fylkesnummer-2024.json")["concept"]}
    assert cs["count"] == len(cs["concept"]) == 357
    per_county: Counter[str] = Counter()
    for concept in cs["concept"]:
        (fylke,) = [p["valueCode"] for p in concept["property"] if p["code"] == "fylke"]
        assert len(concept["code"]) == 4 and concept["code"].isdigit()
        assert fylke == concept["code"][:2] and fylke in counties
        per_county[fylke] += 1
    assert dict(per_county) == PER_COUNTY
    assert len(counties) == 15


def test_rhf_organizations_carry_the_documented_organisation_numbers() -> None:
    found = {}
    for path in MAPPINGS.glob("Organization-rhf-*.json"):
        org = load(path)
        (ident,) = org["identifier"]
        assert ident["system"] == ORGNR_SYSTEM == "urn:oid:2.16.578.1.12.4.1.4.101"
        found[org["name"]] = ident["value"]
    assert found == RHF_ORGNR


def test_every_organisation_number_passes_mod11() -> None:
    regional = [*MAPPINGS.glob("Organization-rhf-*.json"), *MAPPINGS.glob("Organization-hf-*.json")]
    numbers = [load(p)["identifier"][0]["value"] for p in regional]
    assert len(numbers) == 4 + 21
    assert all(stdnum_orgnr.is_valid(n) for n in numbers)
    assert not stdnum_orgnr.is_valid("983658777")  # the check itself can fail


def test_tables_load_and_are_consistent() -> None:
    tables = RoutingTables.load(TERMINOLOGY, MAPPINGS)
    assert len(tables.municipalities) == 357
    assert set(tables.county_rhf) == set(PER_COUNTY)
    for line in ("phv", "tsb"):
        assert set(tables.catchment[line]) == set(tables.municipalities)
    for old, new in tables.pre2024.items():
        assert old not in tables.municipalities
        assert new and all(code in tables.municipalities for code in new)
    hfs = [o for o in tables.organizations.values() if o.kind == "hf"]
    assert len(hfs) == 21 and all(o.rhf_orgnr in RHF_ORGNR.values() for o in hfs)


def test_inconsistent_tables_are_refused(tmp_path: Path) -> None:
    terminology, mappings = tmp_path / "terminology", tmp_path / "mappings"
    terminology.mkdir()
    mappings.mkdir()
    for path in [*OWN_FILES, TERMINOLOGY / "CodeSystem-triage-reason.json"]:
        target = (terminology if path.parent == TERMINOLOGY else mappings) / path.name
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (mappings / "Organization-rhf-helse-vest.json").unlink()
    with pytest.raises(ValueError, match="983658725"):
        RoutingTables.load(terminology, mappings)


def test_routing_tables_agree_with_the_reference_csv() -> None:
    need_geo()
    tables = RoutingTables.load(TERMINOLOGY, MAPPINGS)
    rows = read_csv("kommune-2024-til-hf-phv-tsb-derived.csv")
    assert len(rows) == 357
    for row in rows:
        code = row["kommunenummer_2024"]
        assert tables.rhf_of_municipality(code) == row["rhf_orgnr"], code
        for line in ("phv", "tsb"):
            assert [t.orgnr for t in tables.catchment[line][code]] == row[f"{line}_hf_orgnr"].split("|"), code
        if row["kommunenummer_2020"] != code:
            assert code in tables.pre2024[row["kommunenummer_2020"]]
    names = {r["kommunenummer"]: r["kommunenavn"] for r in read_csv("kommuner-2024-derived.csv")}
    assert {c: m.name for c, m in tables.municipalities.items()} == names


def test_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    need_geo()
    script = REPO / "scripts" / "build_geography.py"
    subprocess.run(
        [sys.executable, str(script), "--geo", str(GEO), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for path in OWN_FILES:
        folder = "terminology" if path.parent == TERMINOLOGY else "mappings"
        generated = tmp_path / folder / path.name
        assert generated.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path.name
    assert len(list((tmp_path / "mappings").glob("Organization-*.json"))) == 25
