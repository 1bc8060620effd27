"""SMART on FHIR system scopes: what a token's scopes allow, per resource type and interaction.

SMART v2 scopes name the interactions with letters: ``system/ServiceRequest.cruds`` (create, read,
update, delete, search), ``system/*.rs``. SMART v1 scopes (``system/Task.read``, ``.write``, ``.*``)
are read as their v2 equivalents. Patient- and user-level scopes (``patient/``, ``user/``) are
ignored: this server serves machine clients only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The SMART v2 interaction letters, in their canonical order.
LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)(\?.*)?$")

#: FHIR interactions and the letter a scope must grant for them.
INTERACTION_LETTER = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "history-type": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}


@dataclass(frozen=True)
class ScopeSet:
    """The resource permissions of a token: type (or ``*``) → letters granted."""

    grants: dict[str, frozenset[str]]

    @classmethod
    def parse(cls, scope: str | list[str] | None) -> ScopeSet:
        """Read a ``scope`` claim (space-separated string or list); unknown scopes are skipped."""
        items = scope.split() if isinstance(scope, str) else [s for s in scope or [] if isinstance(s, str)]
        grants: dict[str, set[str]] = {}
        for item in items:
            match = _SCOPE.match(item)
            if not match or match.group(3):  # scopes narrowed by a query (?category=...) are not supported
                continue
            rtype, letters = match.group(1), match.group(2)
            letters = _V1.get(letters, letters)
            if any(letters.count(c) > 1 for c in letters) or "".join(sorted(letters, key=LETTERS.index)) != letters:
                continue  # v2 letters must appear once each, in the order c r u d s
            grants.setdefault(rtype, set()).update(letters)
        return cls({k: frozenset(v) for k, v in grants.items()})

    def allows(self, resource_type: str, letter: str) -> bool:
        """True when a scope grants ``letter`` on ``resource_type`` (or on every type); type ``*`` asks
        for a grant on every type (``system/*.<letter>``)."""
        return letter in self.grants.get(resource_type, ()) or letter in self.grants.get("*", ())

    def readable_types(self) -> frozenset[str] | None:
        """The types granted ``r`` or ``s`` (what a search may return); None when every type is."""
        if {"r", "s"} & self.grants.get("*", frozenset()):
            return None
        return frozenset(t for t, letters in self.grants.items() if {"r", "s"} & letters)

    def __bool__(self) -> bool:
        return bool(self.grants)


def required_scope(resource_type: str, letter: str) -> str:
    """The narrowest SMART v2 scope that grants ``letter`` on ``resource_type``, for error messages."""
    return f"system/{resource_type}.{letter}"
