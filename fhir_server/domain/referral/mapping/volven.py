"""The mapping data: Volven ConceptMaps (priority, message status) and the XML field map, loaded once.

Files (all in ``mappings/``): ``ConceptMap-volven-8306-to-fhir-priority.json`` (Henvisning v2.0),
``ConceptMap-volven-8304-to-fhir-priority.json`` (v1.x), ``ConceptMap-volven-7309-to-fhir-request-status.json``
and ``henvisning-xml-fieldmap.json``. Pre-2024 municipality numbers come from the routing tables
(``terminology/ConceptMap-kommunenummer-pre2024-to-2024.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fhir_server.core import jsonio
from fhir_server.data import data_folder
from fhir_server.domain.routing.tables import default_tables

MAPPINGS_DIR = data_folder("mappings")

VOLVEN_8306 = "urn:oid:2.16.578.1.12.4.1.1.8306"
VOLVEN_8304 = "urn:oid:2.16.578.1.12.4.1.1.8304"
VOLVEN_7309 = "urn:oid:2.16.578.1.12.4.1.1.7309"
VOLVEN_8455 = "urn:oid:2.16.578.1.12.4.1.1.8455"
VOLVEN_8480 = "urn:oid:2.16.578.1.12.4.1.1.8480"
VOLVEN_9060 = "urn:oid:2.16.578.1.12.4.1.1.9060"
KOMMUNE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.3402"
BYDEL_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.3403"
ICD10_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7110"
ICPC2_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7170"
PRIORITY_SYSTEM = "http://hl7.org/fhir/request-priority"

#: Other spellings of the Volven priority code systems seen in Norwegian FHIR artefacts (notes §4 "Canonical URIs").
PRIORITY_SYSTEM_ALIASES: dict[str, str] = {
    f"{prefix}{n}{suffix}": f"urn:oid:2.16.578.1.12.4.1.1.{n}"
    for n in ("8306", "8304")
    for prefix, suffix in (
        ("http://helsedir.no/fhir/CodeSystem/no-kodeverk-", ""),
        ("http://ehelse.no/fhir/CodeSystem/no-kodeverk-", ""),
        ("http://helsenorge.no/fhir/CodeSystem/no-kodeverk-", ".codesystem"),
        ("http://helsenorge.no/fhir/CodeSystem/no-kodeverk-", ""),
        ("urn:oid:2.16.578.1.12.4.1.1.", ""),
    )
}


@dataclass(frozen=True)
class CodeMap:
    """One ConceptMap group as a dict: source code -> (target code, equivalence)."""

    url: str
    source: str
    target: str
    codes: dict[str, tuple[str, str]]

    def lookup(self, code: str | None) -> str | None:
        hit = self.codes.get(code or "")
        return hit[0] if hit else None


def _read(name: str) -> dict:
    return jsonio.loads((MAPPINGS_DIR / name).read_text(encoding="utf-8"))


def _code_map(name: str) -> CodeMap:
    resource = _read(name)
    group = resource["group"][0]
    codes = {e["code"]: (e["target"][0]["code"], e["target"][0]["equivalence"]) for e in group["element"]}
    return CodeMap(resource["url"], group["source"], group["target"], codes)


@cache
def priority_maps() -> dict[str, CodeMap]:
    """Volven priority code system (8306, 8304) -> its map to request-priority."""
    maps = (
        _code_map("ConceptMap-volven-8306-to-fhir-priority.json"),
        _code_map("ConceptMap-volven-8304-to-fhir-priority.json"),
    )
    return {m.source: m for m in maps}


@cache
def status_map() -> CodeMap:
    """Volven 7309 (ServType) -> ServiceRequest.status."""
    return _code_map("ConceptMap-volven-7309-to-fhir-request-status.json")


@cache
def field_map() -> dict:
    """The XML field map (``mappings/henvisning-xml-fieldmap.json``)."""
    return _read("henvisning-xml-fieldmap.json")


def priority_for(system: str | None, code: str | None) -> str | None:
    """request-priority code for a Volven 8306/8304 code (system aliases accepted), or None if unmapped."""
    canonical = PRIORITY_SYSTEM_ALIASES.get(system or "")
    cmap = priority_maps().get(canonical or "")
    return cmap.lookup(code) if cmap else None


def canonical_priority_system(system: str | None) -> str | None:
    """``urn:oid:…8306``/``…8304`` for any known spelling of those code systems, else None."""
    return PRIORITY_SYSTEM_ALIASES.get(system or "")


@cache
def pre2024_municipalities() -> dict[str, tuple[str, ...]]:
    """Pre-2024 kommunenummer -> 2024 number(s), from the routing tables (terminology/ ConceptMap)."""
    return dict(default_tables().pre2024)
