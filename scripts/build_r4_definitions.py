"""Generate the R4 (4.0.1) definition subset the server needs, as data.

Source: the npm package ``hl7.fhir.r4.examples@4.0.1`` (HL7, CC0), which carries the full core
definition set. The script keeps what the server's resource types need:

* StructureDefinitions of the allowlisted resources and of every data type (snapshot only,
  trimmed to the fields validation, search and ``_summary`` use);
* SearchParameters whose base is an allowlisted type, ``Resource`` or ``DomainResource``;
* ValueSets behind required bindings of those StructureDefinitions, and the CodeSystems they include.

Run:  python scripts/build_r4_definitions.py [--package-dir DIR]
Without ``--package-dir`` it runs ``npm pack`` in a temporary folder (npm must be reachable).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.core.resource_types import KNOWN_TYPES  # noqa: E402

#: Types not served here whose definitions validation still needs: profiles of the HL7 Norway base
#: package (no-basis) are built on them, and its examples use them.
VALIDATION_ONLY_TYPES = frozenset(
    {"Procedure", "AllergyIntolerance", "Medication", "MedicationStatement", "Person", "Substance", "Composition"}
)

OUT = ROOT / "fhir_server" / "core" / "conformance" / "definitions" / "r4"
PACKAGE = "hl7.fhir.r4.examples@4.0.1"
ELEMENT_KEYS = (
    "id",
    "path",
    "short",
    "definition",
    "sliceName",
    "min",
    "max",
    "base",
    "type",
    "contentReference",
    "binding",
    "constraint",
    "isModifier",
    "isModifierReason",
    "isSummary",
)
SD_KEYS = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "status",
    "kind",
    "abstract",
    "type",
    "baseDefinition",
    "derivation",
    "fhirVersion",
)
DROP_NARRATIVE = ("text",)


def fetch_package(workdir: Path) -> Path:
    """Download and unpack the npm package; returns its ``package/`` folder."""
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True, capture_output=True)
    tgz = next(workdir.glob("*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package"


def load_all(package_dir: Path, prefix: str) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(package_dir.glob(f"{prefix}-*.json"))]


def trim_element(element: dict) -> dict:
    out = {k: element[k] for k in ELEMENT_KEYS if k in element}
    if "binding" in out:
        out["binding"] = {k: v for k, v in out["binding"].items() if k in ("strength", "valueSet", "description")}
    if "constraint" in out:
        out["constraint"] = [
            {k: c[k] for k in ("key", "severity", "human", "expression") if k in c} for c in out["constraint"]
        ]
    return out


def select_structure_definitions(all_sds: list[dict]) -> list[dict]:
    wanted = set(KNOWN_TYPES) | VALIDATION_ONLY_TYPES | {"Resource", "DomainResource"}
    chosen = []
    for sd in all_sds:
        kind, derivation = sd.get("kind"), sd.get("derivation")
        if "snapshot" not in sd or kind not in ("primitive-type", "complex-type", "resource"):
            continue
        if kind == "resource" and (derivation != "specialization" or sd["type"] not in wanted):
            continue
        if kind == "complex-type" and derivation != "specialization" and sd["type"] == "Extension":
            continue  # extension definitions are not data types
        trimmed = {k: sd[k] for k in SD_KEYS if k in sd}
        trimmed["snapshot"] = {"element": [trim_element(e) for e in sd["snapshot"]["element"]]}
        chosen.append(trimmed)
    return chosen


def select_search_parameters(all_sps: list[dict]) -> list[dict]:
    wanted = set(KNOWN_TYPES) | {"Resource", "DomainResource"}
    chosen = []
    for sp in all_sps:
        bases = [b for b in sp.get("base", []) if b in wanted]
        if not bases:
            continue
        sp = {k: v for k, v in sp.items() if k not in DROP_NARRATIVE}
        sp["base"] = bases
        if "target" in sp:
            sp["target"] = [t for t in sp["target"] if t in wanted] or sp["target"]
        chosen.append(sp)
    return chosen


def required_value_sets(sds: list[dict]) -> set[str]:
    urls = set()
    for sd in sds:
        for element in sd["snapshot"]["element"]:
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                urls.add(binding["valueSet"].split("|")[0])
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, help="an unpacked hl7.fhir.r4.examples package/ folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = args.package_dir or fetch_package(Path(tmp))
        sds = select_structure_definitions(load_all(package_dir, "StructureDefinition"))
        sps = select_search_parameters(load_all(package_dir, "SearchParameter"))
        vs_urls = required_value_sets(sds)
        value_sets = [
            {k: v for k, v in vs.items() if k not in DROP_NARRATIVE}
            for vs in load_all(package_dir, "ValueSet")
            if vs.get("url") in vs_urls
        ]
        cs_urls = {
            inc["system"] for vs in value_sets for inc in vs.get("compose", {}).get("include", []) if "system" in inc
        }
        code_systems = [
            {k: v for k, v in cs.items() if k not in DROP_NARRATIVE}
            for cs in load_all(package_dir, "CodeSystem")
            if cs.get("url") in cs_urls
        ]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, items in (
        ("structure-definitions", sds),
        ("search-parameters", sps),
        ("value-sets", value_sets),
        ("code-systems", code_systems),
    ):
        items.sort(key=lambda r: r.get("url", r.get("id", "")))
        text = json.dumps(items, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        (OUT / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        print(f"{name}: {len(items)} resources, {len(text) // 1024} KiB")
    missing = vs_urls - {vs["url"] for vs in value_sets}
    if missing:
        print(f"required value sets not in the package (external): {sorted(missing)}")


if __name__ == "__main__":
    main()
