"""Snapshot generation from a differential, and the stored snapshots of profiles/ against a fresh generation."""

from __future__ import annotations

import json

import pytest
from conftest import NO_BASIS
from profiles_testkit import el, profile

from fhir_server.core.conformance.packages import PROFILES_DIR, ConformanceRegistry
from fhir_server.core.validation.profile.snapshot import SnapshotError, generate_snapshot, strip_documentation


def ids(elements: list[dict]) -> list[str]:
    return [e["id"] for e in elements]


def test_slices_and_unfolded_types_are_placed_in_order(registry):
    sd = profile(
        "s",
        "Patient",
        el("Patient.identifier", slicing={"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}),
        el("Patient.identifier:a", min=1),
        el("Patient.identifier:a.system", fixedUri="urn:a"),
        el("Patient.identifier:b"),
        el("Patient.identifier:b.system", fixedUri="urn:b"),
    )
    elements = generate_snapshot(sd, registry)
    order = ids(elements)
    i = order.index("Patient.identifier")
    assert order[i + 1] == "Patient.identifier:a"
    assert "Patient.identifier:a.system" in order and "Patient.identifier:b.system" in order
    assert order.index("Patient.identifier:a.system") < order.index("Patient.identifier:b")
    after = [x for x in order[order.index("Patient.identifier:b.system") :] if not x.startswith("Patient.identifier")]
    assert after[0] == "Patient.active"  # the whole identifier group (slices included) comes before the next element
    by_id = {e["id"]: e for e in elements}
    assert by_id["Patient.identifier:a"]["min"] == 1 and by_id["Patient.identifier:b"]["min"] == 0
    assert by_id["Patient.identifier:a"]["sliceName"] == "a" and "slicing" not in by_id["Patient.identifier:a"]
    assert by_id["Patient.identifier:b.system"]["fixedUri"] == "urn:b"
    assert by_id["Patient.identifier:b.system"]["path"] == "Patient.identifier.system"


def test_choice_renames_restrict_the_type(registry):
    sd = profile("ext", "Extension", el("Extension.valueCoding", min=1))
    value = next(e for e in generate_snapshot(sd, registry) if e["id"] == "Extension.value[x]")
    assert value["type"] == [{"code": "Coding"}] and value["min"] == 1
    sd2 = profile("ext2", "Extension", el("Extension.value[x]:valueString"))
    value2 = next(e for e in generate_snapshot(sd2, registry) if e["id"] == "Extension.value[x]")
    assert value2["type"] == [{"code": "string"}]


def test_extension_definition_gets_its_url_fixed(registry):
    sd = profile("ext3", "Extension", el("Extension.value[x]", type=[{"code": "boolean"}]))
    url = next(e for e in generate_snapshot(sd, registry) if e["id"] == "Extension.url")
    assert url["fixedUri"] == sd["url"]


def test_constraints_are_appended_with_their_source(registry):
    sd = profile(
        "c",
        "Patient",
        el(
            "Patient.name",
            constraint=[{"key": "x-1", "severity": "error", "human": "h", "expression": "family.exists()"}],
        ),
    )
    name = next(e for e in generate_snapshot(sd, registry) if e["id"] == "Patient.name")
    x1 = next(c for c in name["constraint"] if c["key"] == "x-1")
    assert x1["source"] == sd["url"]
    assert any(c["key"] == "ele-1" for c in name["constraint"])


def test_errors_name_the_problem(registry):
    with pytest.raises(SnapshotError, match="not in the base"):
        generate_snapshot(profile("bad", "Patient", el("Patient.nonsense", min=1)), registry)
    with pytest.raises(SnapshotError, match="is not known"):
        generate_snapshot(profile("bad2", "Patient", base="http://example.org/none"), registry)
    with pytest.raises(SnapshotError, match="min 2 is above max 1"):
        generate_snapshot(profile("bad3", "Patient", el("Patient.gender", min=2)), registry)


def test_profile_on_profile_uses_the_generated_base_snapshot(registry):
    base = profile("base", "Patient", el("Patient.birthDate", min=1))
    derived = profile("derived", "Patient", el("Patient.gender", min=1), base=base["url"])
    registry.add(base)
    by_id = {e["id"]: e for e in generate_snapshot(derived, registry)}
    assert by_id["Patient.birthDate"]["min"] == 1 and by_id["Patient.gender"]["min"] == 1


def test_stored_project_snapshots_match_a_fresh_generation():
    reg = ConformanceRegistry()
    if NO_BASIS.is_dir():
        reg.load_folder(NO_BASIS)
    reg.load_folder(PROFILES_DIR)
    checked = 0
    for path in sorted(PROFILES_DIR.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text("utf-8"))
        if sd["baseDefinition"].startswith("http://hl7.no/") and not NO_BASIS.is_dir():
            continue  # needs the no-basis copy in ../shared
        fresh = strip_documentation(generate_snapshot(sd, reg))
        assert sd["snapshot"]["element"] == fresh, f"{path.name}: run scripts/build_profile_snapshots.py"
        checked += 1
    assert checked >= 9
