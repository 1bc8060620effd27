"""Validation of resources: ``base/`` (FHIR R4 core rules, every write), ``profile/`` (profiles),
``identifiers.py`` (Norwegian identifier numbers).

:func:`validate_resource` is base validation; it runs two layers and reports all problems of a
request at once:

1. ``base/walk.py``: our own walk over the JSON with the R4 definitions: allowlisted resource types,
   strict JSON primitives, null/empty values, cardinality, required bindings, reference targets,
   core and resource invariants;
2. ``base/structure.py``: fhir.resources R4B ``model_validate`` (shapes, date/time regexes ...).

When both layers flag the same element, only one issue (ours) is kept.
"""

from __future__ import annotations

import logging
import re

from fhir_server.core.issues import Issue
from fhir_server.core.resource_types import KNOWN_TYPES

from .base.invariants import SKIPPED
from .base.schema import BACKBONE, COMPLEX, node_schema, resource_schema
from .base.structure import check_structure, model_class
from .base.walk import check_base, prop_invariants, resource_invariants

__all__ = ["SKIPPED", "check_base", "check_structure", "validate_resource", "warm_up"]

log = logging.getLogger(__name__)
_INDEX = re.compile(r"\[(\d+)\]")


def _order_key(issue: Issue) -> tuple:
    """Sort by element path, list indexes numerically (entry[2] before entry[10])."""
    expr = issue.expression or ""
    parts = _INDEX.split(expr)
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts))


def validate_resource(resource: dict, allowed: frozenset[str] = KNOWN_TYPES) -> list[Issue]:
    """Full base validation of one resource (Bundle entries and contained resources included).

    ``resource`` is JSON parsed by ``jsonio.loads`` (decimals as Decimal). Returns every issue found,
    each with a FHIRPath ``expression`` rooted at the resource type; an empty list means valid.
    """
    try:
        walk = check_base(resource, allowed)
    except RecursionError:
        return [Issue("error", "structure", "the resource is nested too deeply", None, "ressursen er nøstet for dypt")]
    except Exception:  # a bug of ours must not become a 500 nor silently accept
        log.exception("base validation failed")
        return [
            Issue(
                "error",
                "exception",
                "the resource could not be validated (internal validation error)",
                None,
                "ressursen kunne ikke valideres (intern feil i valideringen)",
                "validation-internal",
            )
        ]
    issues = walk.issues
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rtype, str) or rtype not in allowed:
        return issues
    try:
        structural = check_structure(resource, walk.bad_resources)
    except Exception:  # check_structure catches what fhir.resources raises; this is a last guard
        log.exception("structure validation failed")
        structural = []
    if structural:
        seen = {i.expression for i in issues}
        choice_parents = {i.expression.rsplit(".", 1)[0] for i in issues if i.rule == "choice-single" and i.expression}
        null_parents = {i.expression.rsplit("[", 1)[0] for i in issues if i.rule == "json-null" and i.expression}
        issues = issues + [
            i
            for i in structural
            if i.expression not in seen
            and not (i.rule == "choice-single" and i.expression in choice_parents)
            and not (i.rule == "json-null" and i.expression in null_parents)
        ]
    if len(issues) > 1:
        issues.sort(key=_order_key)
    return issues


def warm_up(types: frozenset[str] = KNOWN_TYPES, *, models: bool = True) -> int:
    """Build every schema, invariant and (optionally) fhir.resources model ahead of the first request.

    Returns the number of object schemas built. Call once at start-up (first requests are then not slower).
    """
    seen: set[tuple[str, str]] = set()
    for rtype in sorted(types):
        resource_invariants(rtype)
        stack = [(rtype, rtype)]
        resource_schema(rtype)
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            for prop in node_schema(*key).props.values():
                if prop.kind in (COMPLEX, BACKBONE) and prop.child is not None:
                    prop_invariants(prop)
                    stack.append(prop.child)
        if models:
            model_class(rtype)
    return len(seen)
