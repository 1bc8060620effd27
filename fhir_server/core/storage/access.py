"""Who may see which stored resource: access labels, and the access of the caller being served.

The security edge (``fhir_server.security``) decides who a caller is and sets their :class:`Access`
for the request with :func:`acting_as`. Storage and search read it from here, so every path that
loads or writes resources (reads, searches, includes, history, conditional matches, writes) filters
the same way. There is no default: a storage call made without an access set raises
:class:`AccessNotSet` (a programming error), never sees everything. The server's own work says
so: ``with acting_as(SYSTEM):`` (data seeding, the loader, the outbox delivery worker, the audit
writer, the index backlog, the intake's delivery queueing, lookups of stored terminology).

* every write stamps the writer's labels on the resource (``org:<orgnr>``, and ``region:<RHF orgnr>``
  for a regional system); the intake pipeline adds the region a referral is routed to;
* a caller sees a resource of a protected type only if it carries one of the caller's labels;
  catalogue and directory types (:data:`PUBLIC_TYPES`) are seen by every caller;
* administrators and :data:`SYSTEM` (the server's own work) see everything.

Labels are rows of ``access_labels``, kept across versions, written in the write's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, exists, or_, select

from fhir_server.core.storage.schema import access_labels

#: Knowledge and directory resources every authorised caller may read (scopes still apply).
PUBLIC_TYPES: frozenset[str] = frozenset(
    {
        "ActivityDefinition",
        "CodeSystem",
        "ConceptMap",
        "HealthcareService",
        "Location",
        "Measure",
        "NamingSystem",
        "OperationDefinition",
        "Organization",
        "PlanDefinition",
        "Questionnaire",
        "SearchParameter",
        "StructureDefinition",
        "ValueSet",
    }
)


def org_label(orgnr: str) -> str:
    """The label of what an organisation wrote or was sent."""
    return f"org:{orgnr}"


def region_label(rhf_orgnr: str) -> str:
    """The label of what belongs to a regional health authority (RHF) and its health trusts."""
    return f"region:{rhf_orgnr}"


@dataclass(frozen=True)
class Access:
    """What the current caller may see, and the labels its writes leave."""

    #: The caller sees protected resources carrying any of these labels.
    labels: frozenset[str] = frozenset()
    #: Labels stamped on every resource the caller writes.
    stamps: frozenset[str] = frozenset()
    #: Administrators and the server's own work see everything.
    unrestricted: bool = False
    #: Who this is, for messages (a client id, or the server's own work).
    name: str = ""
    #: The resource types the caller's scopes let it read or search (``r`` or ``s``); None: every type.
    #: Search applies it to what a search reaches beyond its own type (includes, chains, ``_has``).
    readable: frozenset[str] | None = None

    @property
    def owner(self) -> str:
        """Who may come back for what this caller's search stored (its later pages): name and labels."""
        return "\n".join((self.name, "*" if self.unrestricted else ",".join(sorted(self.labels))))


#: The server's own work (seeding, loading, workers): sees everything, stamps nothing.
SYSTEM = Access(unrestricted=True, name="system")


class AccessNotSet(RuntimeError):
    """Storage was used without an access context: a programming error (see the module's docstring)."""


#: No default: an unset access is an error, not unrestricted access.
_current: ContextVar[Access] = ContextVar("fhir_access")


def current() -> Access:
    """The access of the work being done; raises :class:`AccessNotSet` when none was set."""
    try:
        return _current.get()
    except LookupError:
        raise AccessNotSet(
            "no access context: storage and search need the caller's access "
            "(access.acting_as(...), or access.acting_as(access.SYSTEM) for the server's own work)"
        ) from None


def enter(access: Access) -> Token:
    """Make ``access`` the caller's access until :func:`leave` (for request hooks)."""
    if not isinstance(access, Access):
        raise AccessNotSet(f"not an access: {access!r} (the server's own work uses access.SYSTEM)")
    return _current.set(access)


def leave(token: Token) -> None:
    _current.reset(token)


@contextmanager
def acting_as(access: Access) -> Iterator[None]:
    """Run a block with ``access`` as the caller's access."""
    token = enter(access)
    try:
        yield
    finally:
        leave(token)


def restriction(resource_type: str) -> frozenset[str] | None:
    """The labels a resource of this type must carry to be seen now; None when nothing restricts it."""
    access = current()
    if access.unrestricted or resource_type in PUBLIC_TYPES:
        return None
    return access.labels


def may_read(resource_type: str) -> bool:
    """True when the caller's scopes let it read or search resources of this type."""
    readable = current().readable
    return readable is None or resource_type in readable


def _carries(resource_type: object, resource_id: object, labels: frozenset[str]) -> ColumnElement:
    """SQL: the resource (columns or values) carries one of ``labels``."""
    return exists().where(
        access_labels.c.res_type == resource_type,
        access_labels.c.res_id == resource_id,
        access_labels.c.label.in_(sorted(labels) or [""]),
    )


def visible_condition(type_column: ColumnElement, id_column: ColumnElement) -> ColumnElement | None:
    """A SQL condition on rows of (type, id) columns that keeps what the caller may see; None: no filter."""
    access = current()
    if access.unrestricted:
        return None
    return or_(type_column.in_(sorted(PUBLIC_TYPES)), _carries(type_column, id_column, access.labels))


def labelled_condition(resource_type: str, id_column: ColumnElement) -> ColumnElement | None:
    """As :func:`visible_condition`, for rows of one known resource type."""
    labels = restriction(resource_type)
    return None if labels is None else _carries(resource_type, id_column, labels)


def is_visible(conn: Connection, resource_type: str, resource_id: str) -> bool:
    """True when the caller may see this resource (it may not exist at all)."""
    labels = restriction(resource_type)
    if labels is None:
        return True
    return bool(labels) and bool(conn.execute(select(_carries(resource_type, resource_id, labels))).scalar())


def label_rows(keys: Iterable[tuple[str, str]], labels: Iterable[str]) -> list[dict]:
    """Rows of ``access_labels`` putting ``labels`` on the resources ``keys``."""
    labels = sorted(set(labels))
    return [{"res_type": t, "res_id": i, "label": label} for t, i in dict.fromkeys(keys) for label in labels]
