"""Who may see which stored resource: access labels, and the access of the caller being served.

The security edge (``fhir_server.security``) decides who a caller is and sets their :class:`Access`
for the request with :func:`acting_as`. Storage and search read it from here, so every path that
loads resources (reads, searches, includes, history, conditional matches) filters the same way:

* every write stamps the writer's labels on the resource (``org:<orgnr>``, and ``region:<RHF orgnr>``
  for a regional system); the intake pipeline adds the region a referral is routed to;
* a caller sees a resource of a protected type only if it carries one of the caller's labels;
  catalogue and directory types (:data:`PUBLIC_TYPES`) are seen by every caller;
* no access set (the server's own background work, the CLI) and administrators see everything.

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
    #: Administrators see everything.
    unrestricted: bool = False


_current: ContextVar[Access | None] = ContextVar("fhir_access", default=None)


def current() -> Access | None:
    """The access of the request being served; None for the server's own work."""
    return _current.get()


def enter(access: Access | None) -> Token:
    """Make ``access`` the caller's access until :func:`leave` (for request hooks)."""
    return _current.set(access)


def leave(token: Token) -> None:
    _current.reset(token)


@contextmanager
def acting_as(access: Access | None) -> Iterator[None]:
    """Run a block with ``access`` as the caller's access."""
    token = enter(access)
    try:
        yield
    finally:
        leave(token)


def restriction(resource_type: str) -> frozenset[str] | None:
    """The labels a resource of this type must carry to be seen now; None when nothing restricts it."""
    access = _current.get()
    if access is None or access.unrestricted or resource_type in PUBLIC_TYPES:
        return None
    return access.labels


def _carries(resource_type: object, resource_id: object, labels: frozenset[str]) -> ColumnElement:
    """SQL: the resource (columns or values) carries one of ``labels``."""
    return exists().where(
        access_labels.c.res_type == resource_type,
        access_labels.c.res_id == resource_id,
        access_labels.c.label.in_(sorted(labels) or [""]),
    )


def visible_condition(type_column: ColumnElement, id_column: ColumnElement) -> ColumnElement | None:
    """A SQL condition on rows of (type, id) columns that keeps what the caller may see; None: no filter."""
    access = _current.get()
    if access is None or access.unrestricted:
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
