"""One walk over a resource that finds where its extensions are, for the profile validator.

:func:`extension_holders` tells whether the resource has an extension (``extension``,
``modifierExtension`` or a primitive's ``_x``) outside its nested resources (``contained``,
``resource``), and gives the ids of the objects that hold one at or below them, so that the
extension checks enter only those.

It answers what the former ``_has_extensions`` answered: keys are met in document order, depth
first; an empty key is no extension key (base validation reports it as an unknown element). Keys that
are not strings (never in parsed JSON) switch the pruning off, so the extension checks meet them.

Most resources carry no extension at all. Before walking, the resource is serialised (orjson, in C)
and searched for ``"_``, ``"extension":``, ``"modifierExtension":`` and ``"":``: orjson writes every key as
``"key":`` and escapes every quote inside strings, so when none of these occurs no object holds such a
key (nor an empty key) and the walk would find nothing and fail nowhere. Any other outcome, or a
value orjson cannot write, leads to the walk. A Bundle is walked directly (its text holds its entries).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server.core.jsonio import _default as _json_default

_MAYBE = re.compile(rb'"(?:_|extension":|modifierExtension":|":)')
_EXTENSION_KEYS = frozenset({"extension", "modifierExtension"})
_NESTED_RESOURCE_KEYS = frozenset({"contained", "resource"})


class _Scan:
    __slots__ = ("found", "holders", "odd")

    def __init__(self) -> None:
        self.found = False  # an extension was met (the former check stopped there)
        self.holders: set[int] = set()
        self.odd = False  # a key that is not a string was met


def extension_holders(node: Any) -> tuple[bool, set[int] | None]:
    """(has an extension, ids of the objects holding one at or below them; None: do not prune)."""
    scan = _Scan()
    if isinstance(node, dict):
        if node.get("resourceType") != "Bundle" and _surely_without_extensions(node):
            return False, scan.holders
        _scan_object(node, scan)
    elif isinstance(node, list):
        _scan_list(node, scan)
    return scan.found, (None if scan.odd else scan.holders)


def _surely_without_extensions(node: dict) -> bool:
    """True when the serialised object holds no ``_x``, extension, modifierExtension or empty key."""
    try:
        text = orjson.dumps(node, default=_json_default)
    except Exception:  # not plain JSON (keys that are not strings, odd values ...): walk it
        return False
    return _MAYBE.search(text) is None


def _odd_key(key: Any, scan: _Scan) -> bool:
    """Whether a key that is not a non-empty string counts as an extension key."""
    if type(key) is not str:
        scan.odd = True
    if scan.found:  # the former check had stopped before this key
        return False
    return key in _EXTENSION_KEYS or key.startswith("_")


def _scan_object(node: dict, scan: _Scan) -> bool:
    found = False
    for key, value in node.items():
        if type(key) is str and key:
            if key in _EXTENSION_KEYS or key[0] == "_":
                found = scan.found = True
                continue
        elif _odd_key(key, scan):
            found = scan.found = True
            continue
        kind = type(value)
        if kind is str or kind is bool or kind is int:  # most values: nothing below them
            continue
        if kind is dict or (kind is not list and isinstance(value, dict)):
            if key not in _NESTED_RESOURCE_KEYS and _scan_object(value, scan):
                found = True
        elif isinstance(value, list) and key not in _NESTED_RESOURCE_KEYS and _scan_list(value, scan):
            found = True
    if found:
        scan.holders.add(id(node))
    return found


def _scan_list(items: list, scan: _Scan) -> bool:
    found = False
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or kind is int:
            continue
        if kind is dict or (kind is not list and isinstance(item, dict)):
            if _scan_object(item, scan):
                found = True
        elif isinstance(item, list) and _scan_list(item, scan):
            found = True
    return found
