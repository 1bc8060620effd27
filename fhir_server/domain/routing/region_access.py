"""Visibility follows routing: a Task owned by an RHF or a health trust shows its referral to that region.

The intake labels a new referral for the region it routes it to. When a Task is later given to
another owner (a region forwards a referral, an administrator re-routes it), this rule adds the new
owner's region to the Task, its referral (``focus``), its patient (``for``) and the resources the
referral points to, so the new region can read and update them. Labels are only ever added: the
region that had the referral keeps its view of what it already saw.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.issues import FhirError
from fhir_server.core.jsonwalk import walk_objects
from fhir_server.core.storage import access
from fhir_server.core.storage.store import WriteUnit
from fhir_server.domain.routing.tables import Org, RoutingTables
from fhir_server.naming import ORGNR_SYSTEM


def region_follows_task_owner(tables: RoutingTables) -> Callable[[WriteUnit, dict], None]:
    """A store write hook: label a Task's referral for the region of the Task's owner."""
    by_id = {org.code: org for org in tables.organizations.values()}

    def owner_org(task: dict) -> Org | None:
        owner = task.get("owner") if isinstance(task.get("owner"), dict) else {}
        reference = str(owner.get("reference", ""))
        if reference.startswith("Organization/") and reference[13:] in by_id:
            return by_id[reference[13:]]
        identifier = owner.get("identifier") if isinstance(owner.get("identifier"), dict) else {}
        if identifier.get("system") == ORGNR_SYSTEM:
            return tables.organizations.get(str(identifier.get("value")))
        return None

    def hook(unit: WriteUnit, resource: dict) -> None:
        if resource.get("resourceType") != "Task":
            return
        org = owner_org(resource)
        if org is None:
            return
        keys = [("Task", str(resource["id"]))]
        for element in ("focus", "for"):
            keys += _relative(resource.get(element))
        for rtype, rid in list(keys[1:]):
            if rtype == "ServiceRequest":
                keys += _references_of(unit, rtype, rid)
        unit.add_labels(keys, [access.region_label(org.rhf_orgnr)])

    return hook


def _relative(reference: object) -> list[tuple[str, str]]:
    """``[(type, id)]`` of a reference to a resource on this server (``Type/id``), else nothing."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str) or ":" in text:  # absolute URLs, urn:uuid: and the like
        return []
    rtype, rid, _ = parse_reference(text)
    return [(rtype, rid)] if rtype and rid else []


def _references_of(unit: WriteUnit, resource_type: str, resource_id: str) -> list[tuple[str, str]]:
    """The resources a stored resource points to (one level), read with the server's own access."""
    try:
        with access.acting_as(access.SYSTEM):
            body = unit.read(resource_type, resource_id).body
    except FhirError:
        return []
    found: list[tuple[str, str]] = []
    for _, node in walk_objects(jsonio.loads(body or b"{}"), resource_type):
        found += _relative(node)
    return found
