"""The CapabilityStatement, generated from what the server really serves."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.resource_types import FHIR_VERSION, STORABLE_TYPES
from fhir_server.core.search.query import DEFAULT_COUNT, MAX_COUNT

SOFTWARE_NAME = "Norwegian Referral Hub FHIR Server"
SOFTWARE_VERSION = "0.1.0"

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
RESULT_PARAMS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")


@dataclass
class OperationInfo:
    """An operation for the CapabilityStatement: its name, definition, and where it applies."""

    name: str
    definition: str
    #: Resource types it is declared on; empty means every type (or none, for system-only operations).
    types: tuple[str, ...] = ()
    system: bool = False


@dataclass
class CapabilityInputs:
    registry: SearchRegistry
    base_url: str
    operations: list[OperationInfo] = field(default_factory=list)
    #: Profiles (canonical URLs) supported per resource type.
    profiles: dict[str, list[str]] = field(default_factory=dict)
    security: dict | None = None
    #: Extensions per resource type (e.g. the subscription topics a Subscription may name).
    resource_extensions: dict[str, list[dict]] = field(default_factory=dict)


#: What a search returns beyond its matches (totals, paging), as the server does it.
RESULT_PARAM_NOTES = {
    "_total": (
        "A search whose matches fit its first page always has Bundle.total. Beyond one page: "
        "_total=accurate counts every match; _total=estimate counts up to a bound (the setting "
        "search_count_bound) and leaves the total out above it; without _total (or _total=none) no total is "
        "given, so a page costs what it holds. _summary=count always counts."
    ),
    "_count": f"Matches per page (default {DEFAULT_COUNT}, at most {MAX_COUNT}).",
}
SEARCH_NOTES = (
    "Paging: next/previous links carry a keyset cursor of the stored search (its query, caller and "
    "consistency point; no result list is stored). Later pages show the order of the first page: resources "
    "created after it are not shown, updated ones keep their place, deleted ones are left out. There is no "
    "'last' link. A stored search belongs to its caller and expires after an hour (410)."
)


def capability_statement(inputs: CapabilityInputs, date: str) -> dict:
    """The CapabilityStatement, without empty arrays, objects or strings (R4 forbids them: ele-1)."""
    statement = _without_empty(_statement(inputs, date))
    assert isinstance(statement, dict)
    return statement


def _without_empty(node: object) -> object:
    """``node`` with every empty array, object and string removed, bottom up."""
    if isinstance(node, dict):
        pruned = {key: _without_empty(value) for key, value in node.items()}
        return {key: value for key, value in pruned.items() if value not in ({}, [], "")}
    if isinstance(node, list):
        return [item for item in map(_without_empty, node) if item not in ({}, [], "")]
    return node


def _statement(inputs: CapabilityInputs, date: str) -> dict:
    resources = []
    for rtype in sorted(STORABLE_TYPES):
        params = inputs.registry.params(rtype)
        entry: dict = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "local"],
            "searchInclude": sorted({f"{rtype}:{p.code}" for p in params.values() if p.type == "reference"}),
            "searchRevInclude": sorted(_revincludes(inputs.registry, rtype)),
            "searchParam": [
                {"name": p.code, "definition": p.url, "type": p.type}
                for p in sorted(params.values(), key=lambda p: p.code)
            ],
        }
        if inputs.profiles.get(rtype):
            entry["supportedProfile"] = inputs.profiles[rtype]
        if inputs.resource_extensions.get(rtype):
            entry = {"extension": inputs.resource_extensions[rtype], **entry}
        ops = [
            {"name": op.name, "definition": op.definition}
            for op in inputs.operations
            if rtype in op.types or (not op.types and not op.system)
        ]
        if ops:
            entry["operation"] = ops
        resources.append(entry)
    rest: dict = {
        "mode": "server",
        "resource": resources,
        "interaction": [
            {"code": "transaction"},
            {"code": "batch"},
            {"code": "search-system"},
            {"code": "history-system"},
        ],
        "searchParam": [
            {
                "name": name,
                "type": "special" if name != "_count" else "number",
                "documentation": RESULT_PARAM_NOTES.get(name, "result parameter"),
            }
            for name in RESULT_PARAMS
        ],
        "documentation": SEARCH_NOTES,
    }
    system_ops = [{"name": op.name, "definition": op.definition} for op in inputs.operations if op.system]
    if system_ops:
        rest["operation"] = system_ops
    if inputs.security:
        rest["security"] = inputs.security
    return {
        "resourceType": "CapabilityStatement",
        "id": "server",
        "url": f"{inputs.base_url}/metadata",
        "version": SOFTWARE_VERSION,
        "name": "NorwegianReferralHub",
        "title": "Norwegian Referral Hub FHIR Server",
        "status": "active",
        "experimental": False,
        "date": date,
        "publisher": "Norwegian Referral Hub project",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {
            "description": "FHIR R4 server for Norwegian specialist-health referrals",
            "url": inputs.base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }


def _revincludes(registry: SearchRegistry, target: str) -> set[str]:
    out = set()
    for source in STORABLE_TYPES:
        for p in registry.params(source).values():
            if p.type == "reference" and (not p.targets or target in p.targets):
                out.add(f"{source}:{p.code}")
    return out
