"""The Volven CodeSystems/ValueSets and identifier NamingSystems in terminology/ are valid R4 resources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.namingsystem import NamingSystem
from fhir.resources.R4B.valueset import ValueSet

from fhir_server.core.validation.identifiers import ALIASES, SYSTEMS

TERMINOLOGY = Path(__file__).resolve().parents[3] / "terminology"
SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
VOLVEN = ["8306", "8455", "9148", "7309", "9147", "9060", "8451", "8624", "8628", "3403"]
NAMING = [
    "fodselsnummer",
    "d-nummer",
    "fh-nummer",
    "h-nummer",
    "hpr-nummer",
    "duf-nummer",
    "organisasjonsnummer",
    "resh-id",
    "her-id",
    "ako",
]
MODELS = {"CodeSystem": CodeSystem, "ValueSet": ValueSet, "NamingSystem": NamingSystem}
NS_URL = "http://hl7.org/fhir/5.0/StructureDefinition/extension-NamingSystem.url"

OUR_FILES = (
    [f"CodeSystem-volven-{n}.json" for n in VOLVEN]
    + [f"ValueSet-volven-{n}.json" for n in VOLVEN]
    + [f"NamingSystem-{name}.json" for name in NAMING]
)


def load(name: str) -> dict:
    return json.loads((TERMINOLOGY / name).read_text(encoding="utf-8"))


def ns_extension(resource: dict, suffix: str) -> str | None:
    url = NS_URL.replace(".url", suffix)
    return next(
        (e.get("valueUri") or e.get("valueString") for e in resource.get("extension", []) if e["url"] == url), None
    )


@pytest.mark.parametrize("name", OUR_FILES)
def test_file_is_one_valid_r4_resource_with_the_metadata(name: str) -> None:
    resource = load(name)
    kind = name.split("-", 1)[0]
    assert resource["resourceType"] == kind
    MODELS[kind].model_validate(resource)  # raises on a structural error
    assert name == f"{kind}-{resource['id']}.json"
    assert resource["status"] == "active"
    assert resource["name"] and resource["publisher"] and resource["description"]
    if kind == "NamingSystem":  # R4 has no url/version/title here: R5 cross-version extensions carry them
        assert ns_extension(resource, ".url") == f"https://fhir.referral-hub.no/NamingSystem/{resource['id']}"
        assert ns_extension(resource, ".version") and ns_extension(resource, ".title")
    else:
        assert resource["url"] and resource["version"] and resource["title"]


def test_model_validation_would_catch_a_broken_file() -> None:
    broken = load("CodeSystem-volven-8306.json") | {"status": ["active"]}
    with pytest.raises(ValueError):
        CodeSystem.model_validate(broken)
    with pytest.raises(ValueError):  # R4 NamingSystem has no 'url' element
        NamingSystem.model_validate(load("NamingSystem-fodselsnummer.json") | {"url": "http://x"})


@pytest.mark.parametrize("n", VOLVEN)
def test_codesystem_url_identifier_and_content(n: str) -> None:
    cs = load(f"CodeSystem-volven-{n}.json")
    assert cs["url"] == f"urn:oid:2.16.578.1.12.4.1.1.{n}"
    assert {"system": "urn:ietf:rfc:3986", "value": cs["url"]} in cs["identifier"]
    assert cs["valueSet"] == f"https://fhir.referral-hub.no/ValueSet/volven-{n}"
    codes = [c["code"] for c in cs.get("concept", [])]
    assert len(codes) == len(set(codes)), "duplicate codes"
    if cs["content"] == "not-present":
        assert not codes
    else:
        assert codes and all(c.get("display") for c in cs["concept"])
    if cs["content"] == "complete":
        assert cs["count"] == len(codes)


@pytest.mark.parametrize("n", VOLVEN)
def test_valueset_codes_exist_in_its_codesystem(n: str) -> None:
    cs = load(f"CodeSystem-volven-{n}.json")
    vs = load(f"ValueSet-volven-{n}.json")
    displays = {c["code"]: c["display"] for c in cs.get("concept", [])}
    [include] = vs["compose"]["include"]
    assert include["system"] == cs["url"]
    for concept in include.get("concept", []):
        assert concept["code"] in displays, f"{concept['code']} not in {cs['url']}"
        assert concept["display"] == displays[concept["code"]]
    if cs["content"] == "complete":
        assert [c["code"] for c in include["concept"]] == list(displays)
    else:  # a partial local copy must not narrow the value set
        assert "concept" not in include


def test_known_codes() -> None:
    def codes(n: str) -> dict[str, str]:
        return {c["code"]: c["display"] for c in load(f"CodeSystem-volven-{n}.json").get("concept", [])}

    assert set(codes("8306")) == {"N", "0", "3", "PK"}
    assert codes("9148")["4"] == "Henvisningen er avvist"
    assert codes("9147")["3"] == "Frist for nødvendig helsehjelp"
    assert codes("8628")["1"] == "RHF"
    assert codes("9060")["LE"] == "Lege"
    assert {"N", "M", "C"} <= set(codes("7309"))
    assert "10" in codes("8455")


def test_nhn_derived_lists_match_the_reference_copy() -> None:
    folder = SHARED / "reference" / "helsenorge-fhir"
    if not folder.is_dir():
        pytest.skip(f"shared reference data not found at {folder}")
    for n in ("9148", "9060", "8624", "8628"):
        ref = json.loads((folder / f"CodeSystem-no-kodeverk-{n}.codesystem.json").read_text(encoding="utf-8"))
        ours = load(f"CodeSystem-volven-{n}.json")
        assert [(c["code"], c["display"]) for c in ours["concept"]] == [
            (c["code"], c["display"]) for c in ref["concept"]
        ]


def test_namingsystems_agree_with_the_identifier_systems() -> None:
    for name in NAMING:
        ns = load(f"NamingSystem-{name}.json")
        [preferred] = [u for u in ns["uniqueId"] if u["preferred"]]
        system = f"urn:oid:{preferred['value']}" if preferred["type"] == "oid" else preferred["value"]
        assert system in SYSTEMS, f"{name}: {system} unknown to identifiers.SYSTEMS"
        for alias in (u["value"] for u in ns["uniqueId"] if not u["preferred"]):
            assert ALIASES[alias] == system
    assert load("NamingSystem-fodselsnummer.json")["uniqueId"][0]["value"] == "2.16.578.1.12.4.1.4.1"
    assert load("NamingSystem-organisasjonsnummer.json")["uniqueId"][0]["value"] == "2.16.578.1.12.4.1.4.101"
    assert load("NamingSystem-her-id.json")["uniqueId"][0]["value"] == "2.16.578.1.12.4.1.2"


def test_namingsystems_agree_with_the_no_basis_copies() -> None:
    folder = SHARED / "reference" / "no-basis" / "NamingSystem"
    if not folder.is_dir():
        pytest.skip(f"shared reference data not found at {folder}")
    pairs = {
        "fodselsnummer": "no-basis-fodselsnummer",
        "d-nummer": "no-basis-dnummer",
        "fh-nummer": "no-basis-felleshjelpenummer",
        "hpr-nummer": "no-basis-helsepersonellnummer",
        "duf-nummer": "no-basis-dufnummer",
    }
    for ours, theirs in pairs.items():
        xml = (folder / f"{theirs}.namingsystem.xml").read_text(encoding="utf-8")
        for unique in load(f"NamingSystem-{ours}.json")["uniqueId"]:
            assert f'<value value="{unique["value"]}"' in xml, f"{ours}: {unique['value']} not in {theirs}"
