"""The project's names, named once: its base URL, its canonical URLs and the identifier systems the code uses.

* :data:`BASE` is the canonical base of every resource the project defines (profiles, extensions, code
  systems, naming systems, operations, pathways); the builders below make its canonical URLs. The code
  claims these URLs (e.g. the intake's ``meta.profile``), so they are fixed, not a setting.
* The national identifier systems (fødselsnummer, D-nummer, FH-nummer, H-nummer, DUF-nummer, HPR,
  organisasjonsnummer, RESH-id, HER-id, AKO) are not restated here: each comes from its NamingSystem file
  in the shipped ``terminology/`` folder (``NamingSystem-<name>.json``), read once at import. The
  preferred ``uniqueId`` is the system the code writes and checks (``urn:oid:…``; the H-number's is the
  literal ``HNR`` that no-basis fixes); the other ``uniqueId`` values are aliases read as the same system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fhir_server.data import data_folder

#: The canonical base of the project's own conformance resources.
BASE = "https://fhir.referral-hub.no"


def canonical(resource_type: str, name: str) -> str:
    """The canonical URL of the project's ``resource_type`` called ``name``."""
    return f"{BASE}/{resource_type}/{name}"


def structure_definition(name: str) -> str:
    """A profile's or an extension's canonical URL."""
    return canonical("StructureDefinition", name)


def code_system(name: str) -> str:
    return canonical("CodeSystem", name)


def value_set(name: str) -> str:
    return canonical("ValueSet", name)


def naming_system(name: str) -> str:
    """The project's own identifier systems (e.g. ``henvisning-id``, ``routing-task``)."""
    return canonical("NamingSystem", name)


def operation_definition(name: str) -> str:
    return canonical("OperationDefinition", name)


def plan_definition(name: str) -> str:
    return canonical("PlanDefinition", name)


@dataclass(frozen=True, slots=True)
class NationalSystem:
    """One national identifier system, as its NamingSystem file names it."""

    #: The file's name part: ``terminology/NamingSystem-<file>.json``.
    file: str
    #: The preferred uniqueId as an ``Identifier.system`` (an OID as ``urn:oid:…``).
    system: str
    #: The other uniqueIds (e.g. ``http://hl7.no/fhir/NamingSystem/FNR``), read as the same system.
    aliases: tuple[str, ...]


def _as_system(unique_id: dict) -> str:
    value = unique_id["value"]
    return f"urn:oid:{value}" if unique_id.get("type") == "oid" and not value.startswith("urn:") else value


def read_national_system(file: str) -> NationalSystem:
    """The system of ``terminology/NamingSystem-<file>.json`` (shipped data); raises if it has none preferred."""
    resource = json.loads((data_folder("terminology") / f"NamingSystem-{file}.json").read_bytes())
    unique_ids = resource.get("uniqueId", [])
    preferred = [u for u in unique_ids if u.get("preferred")]
    if len(preferred) != 1:
        raise ValueError(f"NamingSystem-{file}.json: expected one preferred uniqueId, found {len(preferred)}")
    others = tuple(_as_system(u) for u in unique_ids if not u.get("preferred"))
    return NationalSystem(file, _as_system(preferred[0]), others)


#: Every national identifier system the code uses, by its NamingSystem file's name.
NATIONAL_SYSTEMS: dict[str, NationalSystem] = {
    file: read_national_system(file)
    for file in (
        "fodselsnummer",
        "d-nummer",
        "fh-nummer",
        "h-nummer",
        "duf-nummer",
        "hpr-nummer",
        "organisasjonsnummer",
        "resh-id",
        "her-id",
        "ako",
    )
}

FNR_SYSTEM = NATIONAL_SYSTEMS["fodselsnummer"].system
DNR_SYSTEM = NATIONAL_SYSTEMS["d-nummer"].system
FHN_SYSTEM = NATIONAL_SYSTEMS["fh-nummer"].system
HNR_SYSTEM = NATIONAL_SYSTEMS["h-nummer"].system
DUF_SYSTEM = NATIONAL_SYSTEMS["duf-nummer"].system
HPR_SYSTEM = NATIONAL_SYSTEMS["hpr-nummer"].system
ORGNR_SYSTEM = NATIONAL_SYSTEMS["organisasjonsnummer"].system
RESH_SYSTEM = NATIONAL_SYSTEMS["resh-id"].system
HER_SYSTEM = NATIONAL_SYSTEMS["her-id"].system
AKO_SYSTEM = NATIONAL_SYSTEMS["ako"].system

#: Alias system -> the preferred system it stands for.
SYSTEM_ALIASES: dict[str, str] = {
    alias: national.system for national in NATIONAL_SYSTEMS.values() for alias in national.aliases
}


def with_aliases(system: str) -> frozenset[str]:
    """``system`` and every alias of it."""
    return frozenset({system, *(alias for alias, target in SYSTEM_ALIASES.items() if target == system)})
