"""Which elements of a compiled profile the walk must visit, worked out once per :class:`Node`.

Most elements of a snapshot only repeat the core definition (whose rules base validation checks):
no fixed value, pattern, binding, invariant, reference target profile, type profile or cardinality
of the profile's own, and nothing of that kind below them. Checking a value against such an element
can report nothing, so the validator does not visit it: :func:`index_children` leaves these
children out of ``Node.by_key`` and ``Node.must_check``. What is left is visited as before, so the
issues are the same; only the walk over inert parts is saved.
"""

from __future__ import annotations

from .model import UNBOUNDED, Node


def is_inert(node: Node) -> bool:
    """True when checking any value against ``node`` (what ``ProfileValidator._check_value`` does) reports nothing.

    Computed once per node (``Node.inert``); a node's children are judged with :func:`child_inert`.
    """
    if node.inert is None:
        node.inert = _inert(node)
    return node.inert


def _inert(node: Node) -> bool:
    if node.fixed is not None or node.pattern is not None or node.binding is not None or node.invariants:
        return False
    if node.check_targets and any(t.get("targetProfile") for t in node.types):
        return False
    if node.children:
        return all(child_inert(c) for c in node.children)
    return not node.type_profiles()  # a data type checked against its own profile (no-basis-Address ...)


def child_inert(child: Node) -> bool:
    """True when ``ProfileValidator._check_child`` of ``child`` reports nothing, whatever its occurrences."""
    if child.is_choice or child.slices:  # types allowed for a choice; slice matching and slice cardinality
        return False
    if child.check_min and child.min > 0:
        return False
    if child.check_max and child.max < UNBOUNDED:
        return False
    return is_inert(child)


def index_children(node: Node, suffixes: set[str]) -> None:
    """Per node: JSON key -> child worth visiting (``_x`` and every choice spelling included), and the
    children checked even when absent (minimum cardinality). Inert children are left out of both."""
    by_key: dict[str, Node] = {}
    for child in node.children:
        if child.is_choice:
            stem = child.name[:-3]
            for suffix in suffixes:
                by_key[stem + suffix] = child
                by_key["_" + stem + suffix] = child
        else:
            by_key[child.name] = child
            by_key["_" + child.name] = child
    node.must_check = [
        c for c in node.children if (c.min > 0 or any(s.min > 0 for s in c.slices)) and not child_inert(c)
    ]
    # filtered after the map is complete, so that a key claimed by two children keeps its last owner
    node.by_key = {key: child for key, child in by_key.items() if not child_inert(child)}
