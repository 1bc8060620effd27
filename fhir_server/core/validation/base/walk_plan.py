"""What the base walk does with each property of a schema, worked out once per :class:`NodeSchema`.

For every allowed JSON property: the yes/no check of a primitive (``primitive_quick.py``), the
schema of a nested object, the invariants of the element and its data type, and whether the data
type has checks of its own (Reference targets, ext-1, required bindings of Coding and
CodeableConcept). ``walk.py`` looks these up per key instead of recomputing them per value.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.core.conformance.definitions import r4

from . import invariants
from .primitive_quick import Quick, plain_string, quick_check
from .schema import BACKBONE, COMPLEX, NodeSchema, Prop, node_schema


@dataclass(frozen=True, slots=True)
class Step:
    """How to check one property's values."""

    prop: Prop
    #: the property repeats (a JSON array)
    array: bool
    #: primitives: True when a value needs nothing more (else the full check runs and reports)
    quick: Quick | None
    #: the quick check is :func:`primitive_quick.plain_string` (the walk inlines it)
    plain: bool
    #: complex and backbone elements: the schema of the nested object
    child: NodeSchema | None
    #: invariants of the element and its data type (``prop_invariants``)
    checks: tuple[invariants.Invariant, ...]
    #: complex: the data type has checks of its own (``base._typed_checks`` does something)
    typed: bool


def steps(schema: NodeSchema) -> dict[str, Step]:
    """Property name -> :class:`Step` for ``schema`` (built on first use, kept on the schema)."""
    found = schema.steps
    if found is None:
        found = schema.steps = {name: _step(prop) for name, prop in schema.props.items()}
    return found


def _step(prop: Prop) -> Step:
    nested = prop.kind in (COMPLEX, BACKBONE) and prop.child is not None
    typed = prop.kind == COMPLEX and (
        prop.type_code in ("Reference", "Extension")
        or (prop.value_set is not None and prop.type_code in ("CodeableConcept", "Coding"))
    )
    quick = quick_check(prop)
    return Step(
        prop,
        prop.is_array,
        quick,
        quick is plain_string,
        node_schema(*prop.child) if nested else None,  # type: ignore[misc]
        prop_invariants(prop) if nested else (),
        typed,
    )


_resource_invariant_cache: dict[str, tuple[invariants.Invariant, ...]] = {}


def resource_invariants(rtype: str) -> tuple[invariants.Invariant, ...]:
    """Invariants of a resource type's root element (e.g. org-1 on Organization)."""
    found = _resource_invariant_cache.get(rtype)
    if found is None:
        element = r4().element(rtype, rtype)
        found = invariants.invariants_for(element.constraints if element else (), rtype)
        _resource_invariant_cache[rtype] = found
    return found


_prop_invariant_cache: dict[int, tuple[invariants.Invariant, ...]] = {}


def prop_invariants(prop: Prop) -> tuple[invariants.Invariant, ...]:
    """Invariants of the element (e.g. pat-1 on Patient.contact) plus those of its data type (per-1 on Period)."""
    key = id(prop)  # props live as long as their cached schema
    found = _prop_invariant_cache.get(key)
    if found is None:
        if prop.kind == BACKBONE and prop.child is not None:  # content references: the referenced element's rules
            backbone = r4().element(*prop.child)
            own = invariants.invariants_for(backbone.constraints if backbone else (), prop.child[1])
        else:
            own = invariants.invariants_for(prop.element.constraints, prop.element.path)
        typed: tuple[invariants.Invariant, ...] = ()
        if prop.kind == COMPLEX and prop.child is not None:
            root = r4().element(prop.child[0], prop.child[1])
            typed = invariants.invariants_for(root.constraints if root else (), prop.child[1])
        seen = {i.key for i in own}
        found = own + tuple(i for i in typed if i.key not in seen)
        _prop_invariant_cache[key] = found
    return found
