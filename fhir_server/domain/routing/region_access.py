"""Visibility follows routing, and only those a resource concerns may widen it (store write hooks).

The intake labels a new referral for the region it routes it to. When a Task is later given to
another owner (a region forwards a referral, an administrator re-routes it), :func:`region_follows_task_owner`
adds the new owner's region to the Task, its referral (``focus``), its patient (``for``) and the
resources the referral points to, so the new region can read and update them. Labels are only ever
added: the region that had the referral keeps its view of what it already saw.

Visibility never follows a resource the writer could not see, and only those a write concerns may
make it (checked on every door, since the hooks run inside the store's write):

* a Task's ``focus``/``for`` must name resources the writer sees (else 404, as if unknown);
* a Task's ``owner``, ``focus`` or ``for`` may be changed by the sender (a writer outside any
  region that sees the Task), by the region that owns the Task now (it may forward it), or by an
  administrator; a regional system cannot re-route another region's Task, and creates Tasks only
  for its own region (or for the region its own referral, stored in the same write, is routed to);
* an Endpoint (where a region's referrals are pushed) may be written only by the organisation it
  names in ``managingOrganization``, by a regional system for an organisation of its region, or by
  an administrator (:func:`endpoint_concerns_writer`).

The server's own work and administrators (no access, or unrestricted access) are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import select

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.issues import FhirError
from fhir_server.core.jsonwalk import walk_objects
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import resource_versions
from fhir_server.core.storage.store import WriteUnit
from fhir_server.domain.routing.tables import Org, RoutingTables
from fhir_server.naming import ORGNR_SYSTEM

#: The Task elements that decide who sees the referral.
_ROUTING_ELEMENTS = ("owner", "focus", "for")


def region_follows_task_owner(tables: RoutingTables) -> Callable[[WriteUnit, dict], None]:
    """A store write hook: check who widens a Task's visibility, then label its referral for the owner's region."""
    by_id = {org.code: org for org in tables.organizations.values()}

    def owner_org(task: dict) -> Org | None:
        owner = task.get("owner")
        if not isinstance(owner, dict):
            owner = {}
        reference = str(owner.get("reference", ""))
        if reference.startswith("Organization/") and reference[13:] in by_id:
            return by_id[reference[13:]]
        identifier = owner.get("identifier")
        if not isinstance(identifier, dict):
            identifier = {}
        if identifier.get("system") == ORGNR_SYSTEM:
            return tables.organizations.get(str(identifier.get("value")))
        return None

    def check_rerouting(unit: WriteUnit, task: dict, writer: access.Access) -> None:
        """A regional writer changes owner/focus/for only of a Task its region owns now, and creates Tasks
        only for its own region (it forwards a referral by changing the owner of the referral's Task)."""
        if not any(label.startswith(access.region_label("")) for label in writer.labels):
            return  # outside any region: it sees the Task, so it is the sender (the store checked that)
        if any(unit.wrote(*key) for key in _relative(task.get("focus"))):
            return  # routed with its referral in this very write: the intake routes a health trust's own referral
        previous = _previous_version(unit, task)
        if previous is None:
            org = owner_org(task)
            if org is None or access.region_label(org.rhf_orgnr) in writer.labels:
                return
            raise FhirError.single(
                403,
                "forbidden",
                "a regional system creates Tasks for its own region only; it forwards a referral by changing "
                "the owner of the referral's Task",
                "Task.owner",
            )
        if all(previous.get(e) == task.get(e) for e in _ROUTING_ELEMENTS):
            return
        org = owner_org(previous)
        if org is not None and (
            access.region_label(org.rhf_orgnr) in writer.labels or access.org_label(org.orgnr) in writer.labels
        ):
            return
        raise FhirError.single(
            403,
            "forbidden",
            "only the region that owns this Task now, its sender or an administrator may change its owner, "
            "focus or subject",
            "Task.owner",
        )

    def hook(unit: WriteUnit, resource: dict) -> None:
        if resource.get("resourceType") != "Task":
            return
        writer = access.current()
        if writer is not None and not writer.unrestricted:
            check_rerouting(unit, resource, writer)
            for element in ("focus", "for"):
                _require_visible(unit, _relative(resource.get(element)), f"Task.{element}")
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


def endpoint_concerns_writer(tables: RoutingTables) -> Callable[[WriteUnit, dict], None]:
    """A store write hook: an Endpoint is written only by (the region of) its managing organisation."""
    by_id = {org.code: org.orgnr for org in tables.organizations.values()}

    def managing_orgnr(unit: WriteUnit, endpoint: dict) -> str | None:
        managing = endpoint.get("managingOrganization")
        if not isinstance(managing, dict):
            return None
        identifier = managing.get("identifier")
        if not isinstance(identifier, dict):
            identifier = {}
        if identifier.get("system") == ORGNR_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
        found = _relative(managing)
        if not found or found[0][0] != "Organization":
            return None
        if found[0][1] in by_id:
            return by_id[found[0][1]]
        try:
            with access.acting_as(access.SYSTEM):  # a directory resource: its organisation number is no secret
                organization = jsonio.loads(unit.read("Organization", found[0][1]).body or b"{}")
        except FhirError:
            return None
        return next(
            (
                str(i.get("value"))
                for i in organization.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == ORGNR_SYSTEM and i.get("value")
            ),
            None,
        )

    def hook(unit: WriteUnit, resource: dict) -> None:
        if resource.get("resourceType") != "Endpoint":
            return
        writer = access.current()
        if writer is None or writer.unrestricted:
            return
        orgnr = managing_orgnr(unit, resource)
        if orgnr is not None:
            if access.org_label(orgnr) in writer.labels:
                return
            org = tables.organizations.get(orgnr)
            if org is not None and access.region_label(org.rhf_orgnr) in writer.labels:
                return
        raise FhirError.single(
            403,
            "forbidden",
            "an Endpoint may be registered or changed only by the organisation it names in managingOrganization "
            "(or a regional system for an organisation of its region) or an administrator",
            "Endpoint.managingOrganization",
        )

    return hook


def _previous_version(unit: WriteUnit, resource: dict) -> dict | None:
    """The version before the one just put (None for a new resource or one that was deleted)."""
    version = str((resource.get("meta") or {}).get("versionId", "1"))
    if not version.isdigit() or int(version) <= 1:
        return None
    body = unit.execute(
        select(resource_versions.c.body).where(
            resource_versions.c.res_type == resource["resourceType"],
            resource_versions.c.res_id == str(resource["id"]),
            resource_versions.c.version_id == int(version) - 1,
        )
    ).scalar()
    return jsonio.loads(body) if body else None


def _require_visible(unit: WriteUnit, keys: list[tuple[str, str]], expression: str) -> None:
    """Refuse (as if unknown) a reference to a stored resource the writer cannot see."""
    for rtype, rid in keys:
        if unit.current(rtype, rid, for_update=False) is not None and not unit.visible(rtype, rid):
            raise FhirError.single(404, "not-found", f"{rtype}/{rid} is not known", expression)


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


def as_sender() -> AbstractContextManager[None]:
    """Narrow the caller's view to what its own organisations wrote (its ``org:`` labels), keeping its stamps.

    A referral's identity includes its sender: matching a referral by identifier under this view finds
    only the sender's own, never another sender's that a regional system happens to see."""
    writer = access.current()
    if writer is None or writer.unrestricted:
        return nullcontext()
    own = frozenset(label for label in writer.labels if label.startswith(access.org_label("")))
    return access.acting_as(access.Access(own, writer.stamps))
