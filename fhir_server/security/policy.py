"""What a request asks to do, what a token must grant for it, and what the caller may see.

:func:`describe` reads a request's method and path (relative to the FHIR base) into a
:class:`RequestInfo`: the FHIR interaction, the resource type and id, and the audit action.
:func:`needs` lists the scope letters it takes; :meth:`Policy.access` turns a verified caller into
the :class:`~fhir_server.core.access.Access` the storage layer filters with.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.core.storage.access import Access, org_label, region_label
from fhir_server.core.urls import is_absolute, parse_rest_url
from fhir_server.security.scopes import INTERACTION_LETTER
from fhir_server.security.tokens import Caller

#: Paths anyone may call without a token (discovery).
PUBLIC_PATHS = frozenset({"metadata", ".well-known/smart-configuration", ".well-known/jwks.json"})

#: The audit trail is written by the server only.
SERVER_WRITTEN_TYPES = frozenset({"AuditEvent"})

_ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D"}


@dataclass(frozen=True)
class RequestInfo:
    """A request as FHIR sees it: interaction (a code of http://hl7.org/fhir/restful-interaction), type,
    id, operation."""

    interaction: str
    resource_type: str | None = None
    resource_id: str | None = None
    operation: str | None = None

    @property
    def action(self) -> str:
        """The AuditEvent action code: C, R, U, D or E (execute: searches, operations, Bundles)."""
        if self.interaction in _ACTIONS:
            return _ACTIONS[self.interaction]
        if self.interaction in ("read", "vread", "history-instance", "capabilities"):
            return "R"
        return "E"


@dataclass(frozen=True)
class Need:
    """One permission a request needs: any of ``letters`` on ``resource_type`` (``*``: on every type)."""

    resource_type: str
    letters: str


def describe(method: str, path: str) -> RequestInfo:
    """Classify a request; ``path`` is relative to the FHIR base (see :func:`~fhir_server.core.urls.parse_rest_url`)."""
    url = parse_rest_url(method, path)
    return RequestInfo(url.interaction, url.resource_type, url.resource_id, url.operation)


def needs(info: RequestInfo, operation_needs: dict[str, tuple[Need, ...]]) -> tuple[Need, ...] | None:
    """The permissions a request takes; None when only an administrator may do it."""
    if info.interaction == "operation":
        declared = operation_needs.get(info.operation or "")
        if declared is None:
            return None
        return tuple(Need(n.resource_type or info.resource_type or "*", n.letters) for n in declared)
    if info.interaction == "history-system":
        return (Need("*", "s"),)
    if info.interaction in ("capabilities", "batch", "search-system"):
        return ()  # public, per Bundle entry, or the stored search's own type (checked where it is known)
    return (Need(info.resource_type or "*", INTERACTION_LETTER[info.interaction]),)


def bundle_needs(bundle: dict) -> list[tuple[int, Need]]:
    """Per entry of a batch or transaction: the permission its request takes (for ``Bundle.entry[i]``).

    Entries that are no interaction on a resource type (absolute URLs, operations) are left out: the
    Bundle processor refuses them."""
    found: list[tuple[int, Need]] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            continue
        method, url = str(request.get("method", "")), str(request.get("url", ""))
        if is_absolute(url):
            continue
        info = describe(method, url)
        if info.interaction == "operation" or not info.resource_type:
            continue
        found.append((index, Need(info.resource_type, INTERACTION_LETTER.get(info.interaction, "r"))))
    return found


class Policy:
    """Turns callers into access: administrators, regional systems (RHF and HF), other organisations."""

    def __init__(self, region_of: dict[str, str], admin_scope: str) -> None:
        #: organisation number of an RHF or an HF → organisation number of its RHF
        self.region_of = region_of
        self.admin_scope = admin_scope

    def is_admin(self, caller: Caller) -> bool:
        return self.admin_scope in caller.raw_scopes

    def access(self, caller: Caller) -> Access:
        """Labels the caller sees and stamps: its organisations, and its region when it is an RHF or HF;
        the types its scopes let it read (what includes, chains and ``_has`` may reach)."""
        labels = {org_label(o) for o in caller.organisations}
        labels |= {region_label(self.region_of[o]) for o in caller.organisations if o in self.region_of}
        return Access(
            frozenset(labels),
            frozenset(labels),
            unrestricted=self.is_admin(caller),
            name=caller.client_id,
            readable=caller.scopes.readable_types(),
        )
