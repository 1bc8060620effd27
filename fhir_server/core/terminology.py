"""Terminology operations as plain functions: $lookup, $expand, $validate-code, $translate.

Code systems, value sets and concept maps are found through a :class:`Terminology` resolver (the
conformance registry first: R4 core, loaded IG packages, the project's own terminology; then
resources stored on the server). ``urn:oid:2.16.578.1.12.4.1.1.NNNN`` Volven code systems used as
value sets (as no-basis does) expand to all their codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fhir_server.core.issues import FhirError, Issue

Resolver = Callable[[str], dict | None]


@dataclass
class Terminology:
    """Where terminology resources come from."""

    code_system: Resolver
    value_set: Resolver
    concept_maps: Callable[[], list[dict]]


def _concepts(concepts: list[dict], parents: tuple[str, ...] = ()) -> Iterator[tuple[dict, tuple[str, ...]]]:
    for concept in concepts or []:
        yield concept, parents
        yield from _concepts(concept.get("concept", []), (*parents, concept.get("code", "")))


def find_concept(code_system: dict, code: str) -> dict | None:
    for concept, _ in _concepts(code_system.get("concept", [])):
        if concept.get("code") == code:
            return concept
    return None


def lookup(term: Terminology, system: str, code: str) -> dict:
    """CodeSystem/$lookup: a Parameters resource with name, version, display, designations, properties."""
    code_system = term.code_system(system)
    if code_system is None:
        raise FhirError.single(404, "not-found", f"the code system {system} is not known here", "system")
    concept = find_concept(code_system, code)
    if concept is None:
        raise FhirError.single(404, "not-found", f"'{code}' is not a code of {system}", "code")
    params = [{"name": "name", "valueString": code_system.get("name") or system}]
    if code_system.get("version"):
        params.append({"name": "version", "valueString": code_system["version"]})
    if concept.get("display"):
        params.append({"name": "display", "valueString": concept["display"]})
    if concept.get("definition"):
        params.append({"name": "definition", "valueString": concept["definition"]})
    for designation in concept.get("designation", []):
        part = [{"name": "value", "valueString": designation.get("value", "")}]
        if designation.get("language"):
            part.insert(0, {"name": "language", "valueCode": designation["language"]})
        params.append({"name": "designation", "part": part})
    for prop in concept.get("property", []):
        value = {k: v for k, v in prop.items() if k.startswith("value")}
        params.append(
            {
                "name": "property",
                "part": [
                    {"name": "code", "valueCode": prop.get("code")},
                    *({"name": "value", k: v} for k, v in value.items()),
                ],
            }
        )
    return {"resourceType": "Parameters", "parameter": params}


class UnknownCodeSystem(FhirError):
    """A value set needs all codes of a code system this server does not know or has no codes of."""

    def __init__(self, system: str, message: str) -> None:
        super().__init__(422, [Issue("error", "not-found", f"cannot expand: {message}")])
        self.system = system
        self.message = message


def _loaded_code_system(term: Terminology, system: str) -> dict:
    """The code system with its codes; :class:`UnknownCodeSystem` (naming it) when unknown or not loaded."""
    code_system = term.code_system(system)
    if code_system is None:
        raise UnknownCodeSystem(system, f"the code system {system} is unknown here")
    if code_system.get("content") == "not-present":
        raise UnknownCodeSystem(
            system, f"the codes of the code system {system} are not loaded here (content not-present)"
        )
    return code_system


def _system_codes(term: Terminology, system: str, filters: list[dict]) -> list[dict]:
    code_system = _loaded_code_system(term, system)
    chosen: list[dict] = []
    for concept, parents in _concepts(code_system.get("concept", [])):
        if all(_filter_matches(f, concept, parents) for f in filters):
            chosen.append(
                {
                    "system": system,
                    "code": concept["code"],
                    **({"display": concept["display"]} if concept.get("display") else {}),
                }
            )
    return chosen


def _filter_matches(flt: dict, concept: dict, parents: tuple[str, ...]) -> bool:
    op, prop, value = flt.get("op"), flt.get("property"), flt.get("value")
    if prop == "concept" and op == "is-a":
        return concept.get("code") == value or value in parents
    if prop == "concept" and op == "descendent-of":
        return value in parents
    if prop == "concept" and op == "is-not-a":
        return not (concept.get("code") == value or value in parents)
    if op == "=":
        return any(
            p.get("code") == prop and value in [str(v) for k, v in p.items() if k.startswith("value")]
            for p in concept.get("property", [])
        )
    raise FhirError.single(422, "not-supported", f"the value set filter '{prop} {op} {value}' is not supported")


def _include(term: Terminology, item: dict, depth: int) -> list[dict]:
    found: list[dict] = []
    system = item.get("system")
    if system and item.get("concept"):
        code_system = term.code_system(system)
        for concept in item["concept"]:
            display = concept.get("display")
            if display is None and code_system is not None:
                display = (find_concept(code_system, concept["code"]) or {}).get("display")
            found.append({"system": system, "code": concept["code"], **({"display": display} if display else {})})
    elif system:
        found = _system_codes(term, system, item.get("filter", []))
    for nested in item.get("valueSet", []):
        inner = {(c["system"], c["code"]) for c in _expand_all(term, nested, depth + 1)}
        found = (
            [c for c in found if (c["system"], c["code"]) in inner] if system else _expand_all(term, nested, depth + 1)
        )
    return found


def _expand_all(term: Terminology, url: str, depth: int = 0) -> list[dict]:
    if depth > 10:
        raise FhirError.single(422, "processing", f"the value set {url} imports itself too deeply")
    value_set = term.value_set(url)
    if value_set is None:
        if url.startswith("urn:oid:") and term.code_system(url) is not None:
            return _system_codes(term, url, [])  # a Volven code system used as a value set
        raise FhirError.single(404, "not-found", f"the value set {url} is not known here", "url")
    return expand_resource(term, value_set, depth)


def expand_resource(term: Terminology, value_set: dict, depth: int = 0) -> list[dict]:
    if value_set.get("expansion", {}).get("contains") and not value_set.get("compose"):
        return [{k: c[k] for k in ("system", "code", "display") if k in c} for c in value_set["expansion"]["contains"]]
    compose = value_set.get("compose") or {}
    included: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for item in compose.get("include", []):
        for concept in _include(term, item, depth):
            key = (concept["system"], concept["code"])
            if key not in seen:
                seen.add(key)
                included.append(concept)
    excluded = {(c["system"], c["code"]) for item in compose.get("exclude", []) for c in _include(term, item, depth)}
    return [c for c in included if (c["system"], c["code"]) not in excluded]


def expand(
    term: Terminology,
    value_set: dict,
    *,
    text_filter: str | None = None,
    count: int | None = None,
    offset: int = 0,
    timestamp: str = "",
) -> dict:
    """ValueSet/$expand: the value set with an ``expansion`` (filter, count and offset applied)."""
    concepts = expand_resource(term, value_set)
    if text_filter:
        needle = text_filter.casefold()
        concepts = [c for c in concepts if needle in c["code"].casefold() or needle in c.get("display", "").casefold()]
    total = len(concepts)
    page = concepts[offset : offset + count] if count is not None else concepts[offset:]
    expansion: dict = {
        "identifier": f"urn:uuid:{_uuid()}",
        "timestamp": timestamp,
        "total": total,
        "offset": offset,
        "contains": page,
    }
    params = [
        {"name": n, "valueString" if n == "filter" else "valueInteger": v}
        for n, v in (("filter", text_filter), ("count", count), ("offset", offset))
        if v is not None
    ]
    if params:
        expansion["parameter"] = params
    out = {k: v for k, v in value_set.items() if k not in ("compose", "text", "meta")}
    out["expansion"] = expansion
    return out


def validate_code(
    term: Terminology, value_set: dict, system: str | None, code: str, display: str | None = None
) -> dict:
    """ValueSet/$validate-code: Parameters with result, message and display.

    A value set drawing on a code system that is unknown or not loaded here cannot say: the result is
    false, the message names the code system, and an ``issues`` OperationOutcome has code ``not-found``
    (as the tx ecosystem and the Java validator answer; ``x-caused-by-unknown-system`` names it too)."""
    try:
        concepts = expand_resource(term, value_set)
    except UnknownCodeSystem as unknown:
        return _unknown_system_verdict(unknown)
    for concept in concepts:
        if concept["code"] == code and (system is None or concept["system"] == system):
            params = [{"name": "result", "valueBoolean": True}]
            if concept.get("display"):
                params.append({"name": "display", "valueString": concept["display"]})
            if display and concept.get("display") and display != concept["display"]:
                params.append(
                    {"name": "message", "valueString": f"the display '{display}' differs from '{concept['display']}'"}
                )
            return {"resourceType": "Parameters", "parameter": params}
    where = f"{system}|{code}" if system else code
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "result", "valueBoolean": False},
            {"name": "message", "valueString": f"{where} is not in the value set {value_set.get('url', '')}"},
        ],
    }


_TX_ISSUE_TYPE = "http://hl7.org/fhir/tools/CodeSystem/tx-issue-type"


def _unknown_system_verdict(unknown: UnknownCodeSystem) -> dict:
    message = f"{unknown.message}; the code cannot be validated"
    issue = {
        "severity": "error",
        "code": "not-found",
        "details": {"coding": [{"system": _TX_ISSUE_TYPE, "code": "not-found"}], "text": message},
    }
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "result", "valueBoolean": False},
            {"name": "message", "valueString": message},
            {"name": "x-caused-by-unknown-system", "valueCanonical": unknown.system},
            {"name": "issues", "resource": {"resourceType": "OperationOutcome", "issue": [issue]}},
        ],
    }


def translate(concept_maps: list[dict], system: str, code: str, target_system: str | None = None) -> dict:
    """ConceptMap/$translate over the given maps: Parameters with result and each match."""
    matches = []
    for concept_map in concept_maps:
        for group in concept_map.get("group", []):
            if group.get("source") not in (None, system) or (target_system and group.get("target") != target_system):
                continue
            for element in group.get("element", []):
                if element.get("code") != code:
                    continue
                for target in element.get("target", []):
                    concept = {"system": group.get("target"), "code": target.get("code")}
                    if target.get("display"):
                        concept["display"] = target["display"]
                    matches.append(
                        {
                            "name": "match",
                            "part": [
                                {"name": "equivalence", "valueCode": target.get("equivalence", "equivalent")},
                                {"name": "concept", "valueCoding": concept},
                                {"name": "source", "valueUri": concept_map.get("url", "")},
                            ],
                        }
                    )
    result = [{"name": "result", "valueBoolean": bool(matches)}]
    if not matches:
        result.append({"name": "message", "valueString": f"no mapping for {system}|{code}"})
    return {"resourceType": "Parameters", "parameter": [*result, *matches]}


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())
