"""Normalise an inbound FHIR referral (a resource or a Bundle) before validation and routing.

Three rewrites, each reported as an information :class:`Issue` at the element changed (so the sender sees it):

1. Identifier systems given as a known alias (``http://hl7.no/fhir/NamingSystem/FNR`` …, see
   ``identifiers.ALIASES``) become the preferred ``urn:oid:`` system.
2. A pre-2024 kommunenummer in the no-basis municipality code (``Address.district`` extension
   ``no-basis-municipalitycode``, or the same extension directly on the Address) becomes its 2024 number
   (``terminology/ConceptMap-kommunenummer-pre2024-to-2024.json``, and from 2013 on
   ``ConceptMap-kommunenummer-2013-2019-to-2024.json``). The original code is kept as an extension
   on the rewritten Coding: url :data:`ORIGINAL_CODING_EXT`, ``valueCoding`` = the Coding as sent. A number
   that was split (1507 Ålesund -> 1508/1580 in 2024; 1850 Tysfjord -> 1806/1875 in 2020) is left unchanged with a
   warning (the router decides it from the address).
3. ``ServiceRequest.priority`` missing but a Volven priority (8306, or 8304 for v1.x) in
   ``ServiceRequest.extension`` (valueCoding / valueCodeableConcept) or ``orderDetail``: the priority is set
   through the Volven ConceptMap. A Volven 8306 code sent in ``priority`` itself (not a FHIR code) is
   rewritten the same way. A priority that disagrees with a Volven code gives a warning.

Never mutates its input; no issue text contains a personal number (only systems and codes are shown).
"""

from __future__ import annotations

from collections.abc import Iterator

from fhir_server.core import jsonio
from fhir_server.core.issues import Issue
from fhir_server.core.jsonwalk import walk_objects
from fhir_server.core.validation.identifiers import ALIASES
from fhir_server.domain.referral.mapping import volven
from fhir_server.domain.routing.tables import default_tables
from fhir_server.naming import structure_definition

MUNICIPALITY_CODE_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
#: The project's own extension holding the Coding as the sender gave it, before a rewrite.
ORIGINAL_CODING_EXT = structure_definition("original-coding")
FHIR_PRIORITIES = frozenset({"routine", "urgent", "asap", "stat"})


def _info(en: str, nb: str, where: str, rule: str, severity: str = "information") -> Issue:
    return Issue(severity, "informational" if severity == "information" else "code-invalid", en, where, nb, rule)


def _aliases(path: str, node: dict, issues: list[Issue]) -> None:
    system = node.get("system")
    if isinstance(system, str) and system in ALIASES and "value" in node:
        node["system"] = ALIASES[system]
        issues.append(
            _info(
                f"Identifier system {system} is an alias; rewritten to the preferred system {node['system']}.",
                f"Identifikatorsystemet {system} er et alias; skrevet om til foretrukket system {node['system']}.",
                f"{path}.system",
                "alias-identifier-system",
            )
        )


def _municipality_extensions(address: dict, path: str) -> Iterator[tuple[str, dict]]:
    district = address.get("_district")
    if isinstance(district, dict):
        for j, ext in enumerate(district.get("extension") or []):
            if isinstance(ext, dict) and ext.get("url") == MUNICIPALITY_CODE_EXT:
                yield f"{path}.district.extension[{j}].valueCoding", ext
    for j, ext in enumerate(address.get("extension") or []):
        if isinstance(ext, dict) and ext.get("url") == MUNICIPALITY_CODE_EXT:
            yield f"{path}.extension[{j}].valueCoding", ext


def _municipality_name(code: str) -> str | None:
    municipality = default_tables().municipalities.get(code)
    return municipality.name if municipality else None


def _municipality(path: str, node: dict, issues: list[Issue]) -> None:
    addresses = node.get("address")
    if not isinstance(addresses, list):
        return
    pre2024 = volven.pre2024_municipalities()
    for i, address in enumerate(addresses):
        if not isinstance(address, dict):
            continue
        for where, ext in _municipality_extensions(address, f"{path}.address[{i}]"):
            coding = ext.get("valueCoding")
            old = coding.get("code") if isinstance(coding, dict) else None
            targets = pre2024.get(old) if isinstance(old, str) else None
            if not targets or not isinstance(coding, dict):
                continue
            if len(targets) > 1:
                issues.append(
                    _info(
                        f"Municipality number {old} was split (its area now lies in {', '.join(targets)}); it is kept "
                        "as sent. Send the 2024 number.",
                        f"Kommunenummer {old} ble delt (området ligger nå i {', '.join(targets)}); det er beholdt "
                        "som sendt. Send 2024-nummeret.",
                        f"{where}.code",
                        "pre2024-municipality",
                        "warning",
                    )
                )
                continue
            original = {k: v for k, v in coding.items() if k != "extension"}
            coding["code"] = targets[0]
            coding.pop("display", None)
            if name := _municipality_name(targets[0]):
                coding["display"] = name
            coding.setdefault("extension", []).append({"url": ORIGINAL_CODING_EXT, "valueCoding": original})
            issues.append(
                _info(
                    f"Municipality number {old} is a pre-2024 number; rewritten to the 2024 number {targets[0]} "
                    f"(the original is kept in extension {ORIGINAL_CODING_EXT}).",
                    f"Kommunenummer {old} er fra før 2024; skrevet om til 2024-nummeret {targets[0]} "
                    f"(originalen er tatt vare på i utvidelsen {ORIGINAL_CODING_EXT}).",
                    f"{where}.code",
                    "pre2024-municipality",
                )
            )


def _volven_priorities(sr: dict, path: str) -> Iterator[tuple[str, dict]]:
    """(FHIRPath, Coding) for every Volven priority Coding in extension[] and orderDetail[]."""
    for j, ext in enumerate(sr.get("extension") or []):
        if not isinstance(ext, dict):
            continue
        if isinstance(ext.get("valueCoding"), dict):
            yield f"{path}.extension[{j}].valueCoding", ext["valueCoding"]
        concept = ext.get("valueCodeableConcept")
        for k, coding in enumerate(concept.get("coding") or [] if isinstance(concept, dict) else []):
            yield f"{path}.extension[{j}].valueCodeableConcept.coding[{k}]", coding
    for j, detail in enumerate(sr.get("orderDetail") or []):
        for k, coding in enumerate(detail.get("coding") or [] if isinstance(detail, dict) else []):
            yield f"{path}.orderDetail[{j}].coding[{k}]", coding


def _priority(path: str, sr: dict, issues: list[Issue]) -> None:
    found = [
        (where, c)
        for where, c in _volven_priorities(sr, path)
        if isinstance(c, dict) and volven.canonical_priority_system(c.get("system"))
    ]
    current = sr.get("priority")
    if isinstance(current, str) and current not in FHIR_PRIORITIES:
        mapped = volven.priority_for(volven.VOLVEN_8306, current)
        if mapped:
            sr["priority"] = mapped
            issues.append(
                _info(
                    f"Priority '{current}' is a Volven 8306 code, not a FHIR priority; rewritten to '{mapped}'.",
                    f"Prioritet '{current}' er en Volven 8306-kode, ikke en FHIR-prioritet; skrevet om til '{mapped}'.",
                    f"{path}.priority",
                    "volven-priority",
                )
            )
        return
    for where, coding in found:
        mapped = volven.priority_for(coding.get("system"), coding.get("code"))
        system_name = (volven.canonical_priority_system(coding.get("system")) or "").rsplit(".", 1)[-1]
        if mapped is None:
            issues.append(
                _info(
                    f"'{coding.get('code')}' is not a code of Volven "
                    f"{system_name}; no priority can be derived from it.",
                    f"'{coding.get('code')}' er ikke en kode i Volven "
                    f"{system_name}; prioriteten kan ikke utledes av den.",
                    f"{where}.code",
                    "volven-priority",
                    "warning",
                )
            )
            continue
        if current is None:
            sr["priority"] = current = mapped
            issues.append(
                _info(
                    f"ServiceRequest.priority was missing; set to '{mapped}' from Volven {system_name} code "
                    f"'{coding.get('code')}' at {where}.",
                    f"ServiceRequest.priority manglet; satt til '{mapped}' fra Volven {system_name}-kode "
                    f"'{coding.get('code')}' i {where}.",
                    f"{path}.priority",
                    "volven-priority",
                )
            )
        elif current != mapped:
            issues.append(
                _info(
                    f"ServiceRequest.priority '{current}' disagrees with Volven "
                    f"{system_name} code '{coding.get('code')}' "
                    f"(which means '{mapped}'); the priority is kept.",
                    f"ServiceRequest.priority '{current}' stemmer ikke med Volven {system_name}-kode "
                    f"'{coding.get('code')}' (som betyr '{mapped}'); prioriteten er beholdt.",
                    f"{path}.priority",
                    "volven-priority",
                    "warning",
                )
            )


def normalise_referral(resource_or_bundle: dict) -> tuple[dict, list[Issue]]:
    """A normalised copy of a referral resource or Bundle, and one Issue per rewrite (or doubt)."""
    if not isinstance(resource_or_bundle, dict):
        return resource_or_bundle, []
    result = jsonio.copy_json(resource_or_bundle)
    issues: list[Issue] = []
    root = result.get("resourceType") if isinstance(result.get("resourceType"), str) else "Resource"
    for path, node in list(walk_objects(result, root)):
        _aliases(path, node, issues)
        rtype = node.get("resourceType")
        if rtype in ("Patient", "RelatedPerson", "Person", "Practitioner", "Organization", "Location"):
            _municipality(path, node, issues)
        if rtype == "ServiceRequest":
            _priority(path, node, issues)
    return result, issues
