"""FHIR REST URLs, parsed once: what a method and a path relative to the base ask for.

Used by the security policy (scopes and audit), the fast read path and batch/transaction entries, so
that ``Patient/1/_history/2``, ``Patient?identifier=x`` and ``Patient/$validate`` mean the same
everywhere. The interaction names are codes of http://hl7.org/fhir/restful-interaction (plus
``operation``, ``batch`` and ``search-system`` for paging of stored searches).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

_INSTANCE_BY_METHOD = {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_TYPE_BY_METHOD = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}


@dataclass(frozen=True)
class RestUrl:
    """A FHIR REST request: its interaction and the parts of its URL."""

    interaction: str
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    operation: str | None = None
    #: the query string (without ``?``), or None
    query: str | None = None
    #: True when the path has more segments than FHIR defines for the interaction
    extra_segments: bool = False

    @property
    def conditional(self) -> bool:
        """A type-level update, patch or delete: it names its target by search parameters."""
        return self.interaction in ("update", "patch", "delete") and self.resource_id is None


def is_absolute(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def parse_rest_url(method: str, url: str) -> RestUrl:
    """Read ``method`` and ``url`` (relative to the FHIR base, query string allowed) into a :class:`RestUrl`."""
    parts_of = urlsplit(url)
    query = parts_of.query or None
    parts = [p for p in parts_of.path.split("/") if p]
    method = method.upper()
    if not parts:
        return RestUrl("batch" if method == "POST" else "search-system", query=query)
    head = parts[0]
    if head.startswith("$"):
        return RestUrl("operation", operation=head[1:], query=query, extra_segments=len(parts) > 1)
    if head == "metadata":
        return RestUrl("capabilities", query=query, extra_segments=len(parts) > 1)
    if head == "_history":
        return RestUrl("history-system", query=query, extra_segments=len(parts) > 1)
    rtype = head
    if len(parts) == 1:
        return RestUrl(_TYPE_BY_METHOD.get(method, "search-type"), rtype, query=query)
    second = parts[1]
    if second == "_search":
        return RestUrl("search-type", rtype, query=query, extra_segments=len(parts) > 2)
    if second == "_history":
        return RestUrl("history-type", rtype, query=query, extra_segments=len(parts) > 2)
    if second.startswith("$"):
        return RestUrl("operation", rtype, operation=second[1:], query=query, extra_segments=len(parts) > 2)
    rid = second
    if len(parts) == 2:
        return RestUrl(_INSTANCE_BY_METHOD.get(method, "read"), rtype, rid, query=query)
    if parts[2] == "_history":
        if len(parts) > 3:
            return RestUrl("vread", rtype, rid, parts[3], query=query, extra_segments=len(parts) > 4)
        return RestUrl("history-instance", rtype, rid, query=query)
    if parts[2].startswith("$"):
        return RestUrl("operation", rtype, rid, operation=parts[2][1:], query=query, extra_segments=len(parts) > 3)
    return RestUrl("read", rtype, rid, query=query, extra_segments=True)
