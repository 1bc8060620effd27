"""Walkable schemas compiled once from the R4 definitions: which JSON properties are allowed where.

A :class:`NodeSchema` describes one JSON object (a resource, a data type or a backbone element):
its allowed properties (:class:`Prop`), the elements that must be present, and the choice groups.
Schemas are built lazily per ``(type, path)`` and cached for the life of the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fhir_server.core.conformance.definitions import ElementDef, r4

#: Primitive types whose JSON form is not a string.
BOOLEAN, INTEGER, DECIMAL, STRING = "boolean", "integer", "decimal", "string"
_JSON_KIND = {
    "boolean": BOOLEAN,
    "integer": INTEGER,
    "positiveInt": INTEGER,
    "unsignedInt": INTEGER,
    "decimal": DECIMAL,
    "System.Boolean": BOOLEAN,
    "System.Integer": INTEGER,
    "System.Decimal": DECIMAL,
}

#: Kinds of property.
PRIMITIVE, COMPLEX, BACKBONE, RESOURCE = "primitive", "complex", "backbone", "resource"


@dataclass(frozen=True, slots=True)
class Prop:
    """One allowed JSON property of an object."""

    name: str
    element: ElementDef
    kind: str  # primitive | complex | backbone | resource
    type_code: str  # FHIR type (for primitives: 'string', 'code', 'id' ...; System.String becomes 'string')
    is_array: bool
    json_kind: str  # primitives only: boolean | integer | decimal | string
    child: tuple[str, str] | None  # complex/backbone: (type name, snapshot path) of the nested schema
    targets: tuple[str, ...]  # Reference targets (empty: any)
    value_set: str | None  # required binding
    choice: str | None  # element path of the choice group (``Patient.deceased[x]``) or None


@dataclass(slots=True)
class NodeSchema:
    """The JSON shape of one object: its properties, the required elements, the invariants on it."""

    type_name: str
    path: str
    props: dict[str, Prop]
    #: (element name for messages, property names that satisfy it) for each element with min >= 1
    required: tuple[tuple[str, tuple[str, ...]], ...]
    #: choice groups with more than one JSON name: element name -> property names
    choices: dict[str, tuple[str, ...]]
    #: the property names (plain and ``_``-prefixed) of ``required``, and of all the ``choices``
    required_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    choice_keys: frozenset[str] = frozenset()
    #: per property: how the walk checks it (``walk_plan.py``), filled on the first walk
    steps: dict | None = None


def root_path(type_name: str) -> str:
    """The first snapshot path of a type (``SimpleQuantity`` -> ``Quantity``)."""
    return next(iter(r4().types[type_name].elements))


def _resolve_type(type_code: str, profiles: tuple[str, ...]) -> str:
    """Use a core constraint type (SimpleQuantity, MoneyQuantity) when the element names it as profile."""
    defs = r4()
    for profile in profiles:
        name = profile.rsplit("/", 1)[-1]
        if name in defs.types and defs.types[name].kind == "complex-type":
            return name
    return type_code


def _primitive_code(type_code: str, element: ElementDef) -> str:
    if type_code == "System.String":
        if (
            element.path.endswith(".id")
            and element.path.count(".") == 1
            and r4().is_resource_type(element.path.split(".", 1)[0])
        ):
            return "id"  # Resource.id
        if element.path == "Extension.url":
            return "uri"
        return "string"
    if type_code.startswith("System."):
        return type_code.split(".", 1)[1].lower()
    return type_code


def _make_prop(owner: str, name: str, element: ElementDef, type_code: str | None) -> Prop:
    defs = r4()
    td = defs.types[owner]
    choice = element.path if element.is_choice else None
    value_set = element.value_set if element.binding_strength == "required" else None
    is_array = element.is_array
    nested_path = element.content_reference.lstrip("#") if element.content_reference else element.path
    if element.content_reference or (nested_path in td.children and type_code in (None, "BackboneElement", "Element")):
        return Prop(name, element, BACKBONE, "BackboneElement", is_array, "", (owner, nested_path), (), None, choice)
    code = type_code or (element.types[0].code if element.types else "Element")
    type_ref = next((t for t in element.types if t.code == code), None)
    if code == "Resource" or defs.is_resource_type(code):
        return Prop(name, element, RESOURCE, code, is_array, "", None, (), None, choice)
    if code.startswith("System.") or defs.is_primitive(code):
        prim = _primitive_code(code, element)
        kind = _JSON_KIND.get(code, _JSON_KIND.get(prim, STRING))
        return Prop(name, element, PRIMITIVE, prim, is_array, kind, None, (), value_set, choice)
    resolved = _resolve_type(code, type_ref.profiles if type_ref else ())
    targets: tuple[str, ...] = ()
    if code == "Reference" and type_ref is not None:
        targets = type_ref.target_types
        if "Resource" in targets:
            targets = ()
    return Prop(
        name, element, COMPLEX, resolved, is_array, "", (resolved, root_path(resolved)), targets, value_set, choice
    )


@cache
def node_schema(type_name: str, path: str) -> NodeSchema:
    """The schema of the JSON object at snapshot ``path`` of ``type_name`` (cached)."""
    defs = r4()
    props: dict[str, Prop] = {}
    required: dict[str, list[str]] = {}
    choices: dict[str, list[str]] = {}
    for name, child in defs.children(type_name, path).items():
        element = child.element
        prop = _make_prop(type_name, name, element, child.type_code)
        props[name] = prop
        label = element.name
        if element.min >= 1:
            required.setdefault(label, []).append(name)
        if element.is_choice:
            choices.setdefault(label, []).append(name)
    multi = {label: tuple(names) for label, names in choices.items() if len(names) > 1}
    return NodeSchema(
        type_name=type_name,
        path=path,
        props=props,
        required=tuple((label, tuple(names)) for label, names in required.items()),
        choices=multi,
        required_keys=tuple(
            (label, tuple(k for n in names for k in (n, "_" + n))) for label, names in required.items()
        ),
        choice_keys=frozenset(k for names in multi.values() for n in names for k in (n, "_" + n)),
    )


def resource_schema(resource_type: str) -> NodeSchema:
    return node_schema(resource_type, resource_type)


def type_schema(type_name: str) -> NodeSchema:
    return node_schema(type_name, root_path(type_name))
