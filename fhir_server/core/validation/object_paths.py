"""The JSON objects of a resource that pass a test, with their FHIRPath, building paths only for those.

:func:`matching_objects` gives what ``[(p, o) for p, o in walk_objects(node, root) if wanted(o)]``
gives (same objects, same order, same paths; see ``fhir_server.core.jsonwalk``), but walks without a
generator per object and formats a path only for an object that passes ``wanted``: on the happy path
of identifier checks (a few objects among hundreds) that is most of the cost.
"""

from __future__ import annotations

from collections.abc import Callable


def matching_objects(node: object, root: str, holding: str, wanted: Callable[[dict], bool]) -> list[tuple[str, dict]]:
    """(FHIRPath, object) for every JSON object under ``node`` (itself included) that has the property
    ``holding`` and for which ``wanted`` is true."""
    found: list[tuple[str, dict]] = []
    if isinstance(node, dict):
        _visit(node, (None, root, None), holding, wanted, found)
    return found


def _visit(node: dict, trail: tuple, holding: str, wanted: Callable[[dict], bool], found: list) -> None:
    if holding in node and wanted(node):
        found.append((_path(trail), node))
    for key, child in node.items():
        kind = type(child)
        if kind is str:  # most values: nothing below them
            continue
        if kind is not list and kind is not dict:  # numbers, booleans, None, or a subclass of list/dict
            if isinstance(child, list):
                kind = list
            elif isinstance(child, dict):
                kind = dict
            else:
                continue
        if key == "resourceType":
            continue
        name = key[1:] if key.startswith("_") else key
        if kind is list:
            for i, item in enumerate(child):
                if isinstance(item, dict):
                    _visit(item, (trail, name, i), holding, wanted, found)
        else:
            _visit(child, (trail, name, None), holding, wanted, found)


def _path(trail: tuple) -> str:
    """``(((None, root, None), 'entry', 0), 'resource', None)`` -> ``root.entry[0].resource``."""
    steps = []
    while trail[0] is not None:
        trail, name, index = trail
        steps.append(f".{name}" if index is None else f".{name}[{index}]")
    return f"{trail[1]}" + "".join(reversed(steps))
