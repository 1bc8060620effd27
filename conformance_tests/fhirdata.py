"""Resource builders, Bundle readers and CapabilityStatement lookups shared by the checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance_tests.client import KIT_IDENTIFIER_SYSTEM, TAG_SYSTEM

DATA_DIR = Path(__file__).resolve().parent / "data"


def tagged(resource: dict, tag: str) -> dict:
    """``resource`` with the kit's ``meta.tag`` (system ``urn:conformance-kit``, code ``tag``) added."""
    meta = resource.setdefault("meta", {})
    meta.setdefault("tag", []).append({"system": TAG_SYSTEM, "code": tag})
    return resource


def patient(tag: str, family: str = "Nordmann", birth_date: str = "1985-03-15", key: str | None = None) -> dict:
    """A tagged Patient with the kit's own identifier ``key`` (so searches never meet other data)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Ola"]}],
        "gender": "male",
        "birthDate": birth_date,
    }
    if key:
        resource["identifier"] = [{"system": KIT_IDENTIFIER_SYSTEM, "value": key}]
    return tagged(resource, tag)


def observation(tag: str, subject: str, value: str = "8") -> dict:
    """A tagged final Observation (LOINC 8302-2 body height) about ``subject`` (``Patient/id``)."""
    return tagged(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
            "subject": {"reference": subject},
            "valueQuantity": {"value": int(value), "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
        },
        tag,
    )


def entries(bundle: dict, mode: str | None = "match") -> list[dict]:
    """The resources of a Bundle's entries (only those of search ``mode`` when given; no mode counts as match)."""
    out = []
    for entry in bundle.get("entry", []) or []:
        if mode is not None and entry.get("search", {}).get("mode", "match") != mode:
            continue
        if "resource" in entry:
            out.append(entry["resource"])
    return out


def refs(resources: list[dict]) -> list[str]:
    """``Type/id`` of each resource."""
    return [f"{r.get('resourceType')}/{r.get('id')}" for r in resources]


def link(bundle: dict, relation: str) -> str | None:
    """The URL of a Bundle link by relation (``next``, ``self`` …)."""
    for item in bundle.get("link", []) or []:
        if item.get("relation") == relation:
            return item.get("url")
    return None


def load(name: str) -> dict:
    """A JSON file of the kit's own test data (``conformance_tests/data/<name>``)."""
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


# -- CapabilityStatement lookups ----------------------------------------------------------------------


def rest_of(caps: dict) -> dict:
    """The server-mode ``rest`` entry."""
    for rest in caps.get("rest", []) or []:
        if rest.get("mode") == "server":
            return rest
    return {}


def resource_of(caps: dict, rtype: str) -> dict | None:
    """The ``rest.resource`` entry declaring ``rtype``, if any."""
    for res in rest_of(caps).get("resource", []) or []:
        if res.get("type") == rtype:
            return res
    return None


def interactions_of(caps: dict, rtype: str) -> set[str]:
    res = resource_of(caps, rtype) or {}
    return {i.get("code") for i in res.get("interaction", []) or []}


def operation_names(caps: dict, rtype: str | None = None) -> set[str]:
    """Operation names declared on ``rtype`` (or at system level when None), without ``$``."""
    holder = rest_of(caps) if rtype is None else (resource_of(caps, rtype) or {})
    return {str(op.get("name", "")).lstrip("$") for op in holder.get("operation", []) or []}


def declares_operation(caps: dict, name: str, rtype: str | None = None) -> bool:
    """True when ``name`` is declared on ``rtype``, at system level, or (rtype None) on any type."""
    if name in operation_names(caps, None):
        return True
    if rtype is not None:
        return name in operation_names(caps, rtype)
    return any(name in operation_names(caps, r.get("type")) for r in rest_of(caps).get("resource", []) or [])


def supported_profiles(caps: dict) -> dict[str, list[str]]:
    """``supportedProfile`` URLs per resource type (types without any left out)."""
    out = {}
    for res in rest_of(caps).get("resource", []) or []:
        if res.get("supportedProfile"):
            out[res["type"]] = list(res["supportedProfile"])
    return out
