"""Small helpers to write test profiles as differentials."""

from __future__ import annotations

from fhir_server.core.conformance.packages import ConformanceRegistry
from fhir_server.core.validation.profile.validator import ProfileValidator

BASE = "http://example.org/fhir/StructureDefinition/"


def el(eid: str, **kw) -> dict:
    """A differential element from its id (path and sliceName derived)."""
    path = ".".join(seg.split(":")[0] for seg in eid.split("."))
    out = {"id": eid, "path": path}
    last = eid.split(".")[-1]
    if ":" in last:
        out["sliceName"] = last.split(":", 1)[1]
    out.update(kw)
    return out


def profile(name: str, type_: str, *elements: dict, base: str | None = None, **extra) -> dict:
    sd = {
        "resourceType": "StructureDefinition",
        "url": BASE + name,
        "version": "1",
        "name": name,
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "complex-type" if type_ == "Extension" else "resource",
        "abstract": False,
        "type": type_,
        "baseDefinition": base or f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "derivation": "constraint",
        "differential": {"element": [el(type_), *elements]},
    }
    sd.update(extra)
    return sd


def validator(registry: ConformanceRegistry, *resources: dict) -> ProfileValidator:
    for r in resources:
        registry.add(r)
    return ProfileValidator(registry)


def rules(issues) -> list[str]:
    """Rule ids of the errors and warnings (sorted), for compact assertions."""
    return sorted(i.rule or "" for i in issues if i.severity in ("error", "fatal", "warning"))


def errors(issues) -> list:
    return [i for i in issues if i.severity in ("error", "fatal")]
