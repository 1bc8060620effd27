"""Our own base checks, walking the JSON with the R4 definitions (what fhir.resources does not check).

One pass over the resource reports: unknown elements, wrong JSON shapes (array vs single value),
null, empty arrays/objects/strings, strict primitives (see ``primitives.py``), missing required
elements (all of them, unlike fhir.resources), choice exclusivity, required bindings, reference
targets, ele-1, ext-1, dom-2..dom-5, ref-1 and the other error invariants of the definitions.
Resources inside Bundles, Parameters and ``contained`` are walked too; a resource type outside the
server's allowlist is one issue at its ``resourceType`` and the walk does not enter it.

The happy path is kept cheap (``walk_plan.py``): per property of a schema the walk knows its yes/no
primitive check, nested schema and invariants, so a good value costs a lookup and a test; paths are
built for nested objects and for values that fail the quick check (the full check then reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.issues import Issue
from fhir_server.core.jsonio import to_plain
from fhir_server.core.resource_types import KNOWN_TYPES

from . import bindings, invariants
from .primitives import check_primitive, describe, mask
from .references import check_reference
from .schema import COMPLEX, PRIMITIVE, RESOURCE, NodeSchema, Prop, node_schema, resource_schema, type_schema
from .walk_plan import Step, prop_invariants, resource_invariants, steps


@dataclass(slots=True)
class _ResourceScope:
    """What the checks of one resource (and its contained resources) need to share."""

    root: dict
    contained: dict[str, str] = field(default_factory=dict)  # id -> resourceType
    local_refs: set[str] = field(default_factory=set)  # '#...' values seen anywhere in the resource
    contained_index: int | None = None  # set while walking contained[i]
    refers_to_container: set[int] = field(default_factory=set)  # contained[i] holding a '#' reference
    _plain_root: dict | None = None

    def plain_root(self) -> dict:
        """The resource without Decimals (for fhirpathpy), computed once per resource."""
        if self._plain_root is None:
            self._plain_root = to_plain(self.root)
        return self._plain_root


@dataclass(slots=True)
class Walk:
    """The state of one validation: issues found and the resources fhir.resources must not see."""

    issues: list[Issue] = field(default_factory=list)
    #: paths of nested resources with a missing, unknown or not-allowlisted resourceType
    bad_resources: list[str] = field(default_factory=list)

    def add(self, severity: str, code: str, path: str, en: str, nb: str, rule: str | None = None) -> None:
        self.issues.append(Issue(severity, code, en, path, nb, rule))


def check_base(resource: object, allowed: frozenset[str] = KNOWN_TYPES) -> Walk:
    """Walk one resource (top level) and return the issues and the paths of unacceptable nested resources."""
    walk = Walk()
    if not isinstance(resource, dict):
        walk.add(
            "error",
            "structure",
            "",
            f"a resource must be a JSON object, not {describe(resource)}",
            f"en ressurs må være et JSON-objekt, ikke {describe(resource)}",
            "resource-type",
        )
        return walk
    rtype = resource.get("resourceType")
    root = rtype if isinstance(rtype, str) and rtype.isidentifier() else "Resource"
    _walk_resource(walk, resource, root, allowed, None, top=True)
    return walk


# -- resources ---------------------------------------------------------------------------------


def _resource_type_ok(walk: Walk, resource: dict, path: str, allowed: frozenset[str], top: bool) -> str | None:
    rtype = resource.get("resourceType")
    where = path + ".resourceType" if not top else (rtype if isinstance(rtype, str) else "Resource") + ".resourceType"
    if rtype is None:
        walk.add(
            "error",
            "required",
            path if not top else "Resource",
            "resourceType is missing: every resource must name its type",
            "resourceType mangler: hver ressurs må oppgi typen sin",
            "resource-type",
        )
    elif not isinstance(rtype, str) or rtype not in allowed or not r4().is_resource_type(rtype):
        shown = repr(rtype) if isinstance(rtype, str) else describe(rtype)
        walk.add(
            "error",
            "not-supported",
            where,
            mask(f"{where}: {shown} is not a resource type this server accepts"),
            mask(f"{where}: {shown} er ikke en ressurstype denne serveren tar imot"),
            "resource-type",
        )
    else:
        return rtype
    if not top:
        walk.bad_resources.append(path)
    return None


def _walk_resource(
    walk: Walk,
    resource: dict,
    path: str,
    allowed: frozenset[str],
    scope: _ResourceScope | None,
    *,
    top: bool = False,
    contained_index: int | None = None,
) -> None:
    rtype = _resource_type_ok(walk, resource, path, allowed, top)
    if rtype is None:
        return
    schema = resource_schema(rtype)
    is_contained = contained_index is not None
    if not is_contained:
        scope = _ResourceScope(resource)
        scope.contained[""] = rtype  # '#' alone names the container
        contained = resource.get("contained")
        if isinstance(contained, list):
            for item in contained:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("id"), str)
                    and isinstance(item.get("resourceType"), str)
                ):
                    scope.contained[item["id"]] = item["resourceType"]
    else:
        _contained_rules(walk, resource, path)
        outer_index = scope.contained_index  # type: ignore[union-attr]
        scope.contained_index = contained_index  # type: ignore[union-attr]
    _walk_object(walk, resource, schema, path, scope, allowed, is_resource=True)  # type: ignore[arg-type]
    _check_invariants(walk, resource_invariants(rtype), resource, path, scope)  # type: ignore[arg-type]
    if is_contained:
        scope.contained_index = outer_index  # type: ignore[union-attr]
    else:
        _dom_3(walk, resource, path, scope)  # type: ignore[arg-type]


def _contained_rules(walk: Walk, resource: dict, path: str) -> None:
    """dom-2, dom-4, dom-5 for one contained resource."""
    if "contained" in resource:
        walk.add(
            "error",
            "invariant",
            path + ".contained",
            "a contained resource must not itself contain resources (dom-2)",
            "en contained-ressurs kan ikke selv ha contained-ressurser (dom-2)",
            "dom-2",
        )
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for name in ("versionId", "lastUpdated"):
            if name in meta:
                walk.add(
                    "error",
                    "invariant",
                    f"{path}.meta.{name}",
                    f"a contained resource must not have meta.{name} (dom-4)",
                    f"en contained-ressurs kan ikke ha meta.{name} (dom-4)",
                    "dom-4",
                )
        if "security" in meta:
            walk.add(
                "error",
                "invariant",
                path + ".meta.security",
                "a contained resource must not have meta.security (dom-5)",
                "en contained-ressurs kan ikke ha meta.security (dom-5)",
                "dom-5",
            )


def _dom_3(walk: Walk, resource: dict, path: str, scope: _ResourceScope) -> None:
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return
    for i, item in enumerate(contained):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            if isinstance(item, dict) and item.get("resourceType") in KNOWN_TYPES and "id" not in item:
                walk.add(
                    "error",
                    "invariant",
                    f"{path}.contained[{i}]",
                    "a contained resource needs an id so that it can be referenced (dom-3)",
                    "en contained-ressurs må ha id slik at den kan refereres (dom-3)",
                    "dom-3",
                )
            continue
        if "#" + item["id"] not in scope.local_refs and i not in scope.refers_to_container:
            walk.add(
                "error",
                "invariant",
                f"{path}.contained[{i}]",
                mask(f"contained resource '#{item['id']}' is not referenced from the rest of the resource (dom-3)"),
                mask(f"contained-ressursen '#{item['id']}' refereres ikke fra resten av ressursen (dom-3)"),
                "dom-3",
            )


def _check_invariants(
    walk: Walk, checks: tuple[invariants.Invariant, ...], node: dict, path: str, scope: _ResourceScope
) -> None:
    plain: dict | None = None
    for inv in checks:
        if inv.native is not None:
            ok = inv.native(node)
        elif not inv.applies(node):
            continue
        else:
            if plain is None:
                plain = scope.plain_root() if node is scope.root else to_plain(node)
            ok = inv.evaluate(plain, scope.plain_root())
        if not ok:
            walk.add(
                "error",
                "invariant",
                path,
                f"{inv.key}: {inv.human} (rule {inv.key}: {inv.expression})",
                f"{inv.key}: regelen er brutt: {inv.human}",
                inv.key,
            )


# -- objects -----------------------------------------------------------------------------------

_ELEMENT_SCHEMA: NodeSchema | None = None
_UNSET = object()
_URI_CODES = frozenset({"uri", "url", "canonical"})


def _element_schema() -> NodeSchema:
    global _ELEMENT_SCHEMA
    if _ELEMENT_SCHEMA is None:
        _ELEMENT_SCHEMA = type_schema("Element")
    return _ELEMENT_SCHEMA


def _walk_object(
    walk: Walk,
    obj: dict,
    schema: NodeSchema,
    path: str,
    scope: _ResourceScope,
    allowed: frozenset[str],
    *,
    is_resource: bool = False,
) -> None:
    """Check the properties of ``obj`` against ``schema`` (values, nested objects), then its required
    elements and choice groups."""
    plan = schema.steps
    if plan is None:
        plan = steps(schema)
    for key, value in obj.items():
        step = plan.get(key)
        if step is None:
            if key == "resourceType" and is_resource:
                continue
            if key[:1] == "_" and key != "_":
                _primitive_extension(walk, obj, key, value, schema, path, scope, allowed)
                continue
            walk.add(
                "error",
                "structure",
                f"{path}.{key}",
                mask(f"unknown element '{key}' (not defined for {schema.path} in FHIR R4)"),
                mask(f"ukjent element '{key}' (ikke definert for {schema.path} i FHIR R4)"),
                "unknown-element",
            )
            continue
        # the happy path first: values that need no path and report nothing, objects walked directly
        quick = step.quick
        if step.array:
            if type(value) is list and value:
                if quick is not None:
                    _primitive_items(walk, obj, key, value, step, path, scope, allowed)
                    continue
                child = step.child
                if child is not None:
                    for i, item in enumerate(value):
                        if type(item) is dict and item and not (len(item) == 1 and "id" in item):
                            _walk_element(walk, item, step, child, f"{path}.{key}[{i}]", scope, allowed)
                        elif item is None:
                            _null(walk, f"{path}.{key}[{i}]")
                        else:
                            _check_value(walk, step.prop, item, f"{path}.{key}[{i}]", scope, allowed, i)
                    continue
        elif step.plain:  # plain_string, inlined
            if type(value) is str and value and not value.isspace():
                continue
        elif quick is not None:
            if quick(value):
                continue
        elif step.child is not None and type(value) is dict and value and not (len(value) == 1 and "id" in value):
            _walk_element(walk, value, step, step.child, path + "." + key, scope, allowed)
            continue
        prop = step.prop
        cpath = path + "." + key
        if value is None:
            _null(walk, cpath)
            continue
        if prop.is_array:
            if type(value) is not list:
                walk.add(
                    "error",
                    "structure",
                    cpath,
                    f"{key} must be a JSON array (it can repeat), not {describe(value)}",
                    f"{key} må være en JSON-liste (kan gjentas), ikke {describe(value)}",
                    "json-array",
                )
                continue
            if not value:
                _empty(walk, cpath, "array")
                continue
            for i, item in enumerate(value):
                ipath = f"{cpath}[{i}]"
                if item is None:
                    _null(walk, ipath)  # not a primitive (those are handled above): no ``_x`` can stand in
                    continue
                _check_value(walk, prop, item, ipath, scope, allowed, i)
        else:
            if type(value) is list:
                walk.add(
                    "error",
                    "structure",
                    cpath,
                    f"{key} takes a single value, not a JSON array",
                    f"{key} tar én verdi, ikke en JSON-liste",
                    "json-single",
                )
                continue
            _check_value(walk, prop, value, cpath, scope, allowed, None)
    for label, keys in schema.required_keys:
        for name in keys:
            if name in obj:
                break
        else:
            shown = label
            walk.add(
                "error",
                "required",
                f"{path}.{label.removesuffix('[x]')}",
                f"{shown} is required (minimum cardinality 1) but missing",
                f"{shown} er påkrevd (minst 1) men mangler",
                "cardinality-min",
            )
    if schema.choices:
        choice_keys = schema.choice_keys
        found = 0
        for key in obj:
            if key in choice_keys:
                found += 1
        if found > 1:  # with fewer keys no choice group can have two types present
            _choice_single(walk, obj, schema, path)


def _primitive_items(
    walk: Walk,
    obj: dict,
    key: str,
    items: list,
    step: Step,
    path: str,
    scope: _ResourceScope,
    allowed: frozenset[str],
) -> None:
    """The items of a primitive array: the yes/no check, then the full check (with its path) for the others."""
    quick = step.quick
    prim_ext: object = _UNSET
    for i, item in enumerate(items):
        if quick(item):  # type: ignore[misc]
            continue
        if item is None:
            if prim_ext is _UNSET:
                prim_ext = obj.get("_" + key)
            ext_ok = isinstance(prim_ext, list) and i < len(prim_ext) and isinstance(prim_ext[i], dict)
            if not ext_ok:
                _null(walk, f"{path}.{key}[{i}]")
            continue
        _check_value(walk, step.prop, item, f"{path}.{key}[{i}]", scope, allowed, i)


def _walk_element(
    walk: Walk,
    value: dict,
    step: Step,
    schema: NodeSchema,
    path: str,
    scope: _ResourceScope,
    allowed: frozenset[str],
) -> None:
    """A non-empty object of a complex or backbone element (what ``_check_value`` does for it)."""
    _walk_object(walk, value, schema, path, scope, allowed)
    if step.typed:
        _typed_checks(walk, step.prop, value, path, scope)
    if step.checks:
        _check_invariants(walk, step.checks, value, path, scope)


def _choice_single(walk: Walk, obj: dict, schema: NodeSchema, path: str) -> None:
    for label, names in schema.choices.items():
        present = [n for n in names if n in obj or "_" + n in obj]
        if len(present) > 1:
            walk.add(
                "error",
                "structure",
                f"{path}.{present[1]}",
                f"{label} takes one type only, but got {', '.join(present)}",
                f"{label} kan bare ha én type, men fikk {', '.join(present)}",
                "choice-single",
            )


def _null(walk: Walk, path: str) -> None:
    walk.add(
        "error",
        "structure",
        path,
        "null is not allowed in FHIR JSON; leave the element out instead",
        "null er ikke tillatt i FHIR JSON; utelat elementet i stedet",
        "json-null",
    )


def _empty(walk: Walk, path: str, what: str) -> None:
    walk.add(
        "error",
        "structure",
        path,
        f"an empty {what} is not allowed; leave the element out instead (ele-1)",
        f"{'en tom liste' if what == 'array' else 'et tomt objekt'} er ikke tillatt; utelat elementet i stedet (ele-1)",
        "ele-1",
    )


def _check_value(
    walk: Walk,
    prop: Prop,
    value: object,
    path: str,
    scope: _ResourceScope,
    allowed: frozenset[str],
    index: int | None,
) -> None:
    kind = prop.kind
    if kind == PRIMITIVE:
        issue = check_primitive(value, prop, path)
        if issue is not None:
            walk.issues.append(issue)
            return
        if type(value) is str:
            if prop.value_set is not None and prop.type_code == "code":
                issue = bindings.check_code(value, prop.value_set, path)  # type: ignore[arg-type]
                if issue is not None:
                    walk.issues.append(issue)
            elif value[:1] == "#" and prop.type_code in _URI_CODES:  # type: ignore[index]
                scope.local_refs.add(value)  # type: ignore[arg-type]  # '#id' in a uri/canonical counts for dom-3
        return
    if type(value) is not dict:
        walk.add(
            "error",
            "structure",
            path,
            f"{prop.name} must be a JSON object, not {describe(value)}",
            f"{prop.name} må være et JSON-objekt, ikke {describe(value)}",
            "json-object",
        )
        return
    if kind == RESOURCE:
        if prop.name == "contained":
            _walk_resource(walk, value, path, allowed, scope, contained_index=index)  # type: ignore[arg-type]
        else:
            _walk_resource(walk, value, path, allowed, None)  # type: ignore[arg-type]
        return
    if _empty_element(walk, value, path):  # type: ignore[arg-type]
        return
    schema = node_schema(*prop.child)  # type: ignore[misc]
    _walk_object(walk, value, schema, path, scope, allowed)  # type: ignore[arg-type]
    if kind == COMPLEX:
        _typed_checks(walk, prop, value, path, scope)  # type: ignore[arg-type]
    checks = prop_invariants(prop)
    if checks:
        _check_invariants(walk, checks, value, path, scope)  # type: ignore[arg-type]


def _typed_checks(walk: Walk, prop: Prop, value: dict, path: str, scope: _ResourceScope) -> None:
    """Checks tied to a data type: bindings on Coding/CodeableConcept, Reference targets, ext-1."""
    code = prop.type_code
    if code == "Reference":
        ref = value.get("reference")
        if type(ref) is str and ref[:1] == "#":
            scope.local_refs.add(ref)
            if ref == "#" and scope.contained_index is not None:
                scope.refers_to_container.add(scope.contained_index)
        check_reference(value, prop.targets, path, scope.contained, walk.issues)
    elif code == "Extension":
        has_value = any(k[:5] == "value" for k in value)
        if has_value == ("extension" in value):
            both = has_value
            walk.add(
                "error",
                "invariant",
                path,
                "an extension must have either a value[x] or nested extensions, "
                + ("not both" if both else "but has neither")
                + " (ext-1)",
                "en extension må ha enten value[x] eller underliggende extensions, "
                + ("ikke begge" if both else "men har ingen av dem")
                + " (ext-1)",
                "ext-1",
            )
    elif prop.value_set is not None:
        if code == "CodeableConcept":
            issue = bindings.check_codeable_concept(value, prop.value_set, path)
        elif code == "Coding":
            issue = bindings.check_coding(value, prop.value_set, path)
        else:
            issue = None
        if issue is not None:
            walk.issues.append(issue)


def _primitive_extension(
    walk: Walk,
    obj: dict,
    key: str,
    value: object,
    schema: NodeSchema,
    path: str,
    scope: _ResourceScope,
    allowed: frozenset[str],
) -> None:
    """``_name``: the id/extensions of primitive ``name`` (an object, or an array parallel to ``name``)."""
    name = key[1:]
    prop = schema.props.get(name)
    cpath = f"{path}.{key}"
    if prop is None or prop.kind != PRIMITIVE:
        walk.add(
            "error",
            "structure",
            cpath,
            f"unknown element '{key}' ('_' is only allowed before a primitive element of {schema.path})",
            f"ukjent element '{key}' ('_' er bare tillatt foran et primitivt element i {schema.path})",
            "unknown-element",
        )
        return
    element_schema = _element_schema()
    if prop.is_array:
        if type(value) is not list:
            walk.add(
                "error",
                "structure",
                cpath,
                f"{key} must be a JSON array parallel to {name}",
                f"{key} må være en JSON-liste parallell med {name}",
                "json-array",
            )
            return
        values = obj.get(name)
        if isinstance(values, list) and len(values) != len(value):
            walk.add(
                "error",
                "structure",
                cpath,
                f"{key} must have as many items as {name} ({len(value)} vs {len(values)})",
                f"{key} må ha like mange elementer som {name} ({len(value)} mot {len(values)})",
                "json-array",
            )
        if not value or all(v is None for v in value):
            _empty(walk, cpath, "array")
            return
        for i, item in enumerate(value):
            if item is not None:
                _element_object(walk, item, f"{cpath}[{i}]", element_schema, scope, allowed)
        return
    if value is None:
        _null(walk, cpath)
        return
    _element_object(walk, value, cpath, element_schema, scope, allowed)


def _element_object(
    walk: Walk, value: object, path: str, schema: NodeSchema, scope: _ResourceScope, allowed: frozenset[str]
) -> None:
    if type(value) is not dict:
        walk.add(
            "error",
            "structure",
            path,
            f"must be a JSON object with id and/or extension, not {describe(value)}",
            f"må være et JSON-objekt med id og/eller extension, ikke {describe(value)}",
            "json-object",
        )
        return
    if _empty_element(walk, value, path):  # type: ignore[arg-type]
        return
    _walk_object(walk, value, schema, path, scope, allowed)  # type: ignore[arg-type]


def _empty_element(walk: Walk, value: dict, path: str) -> bool:
    """ele-1: an element needs a value or children; report an empty object (or one with only an id)."""
    if value and not (len(value) == 1 and "id" in value):
        return False
    walk.add(
        "error",
        "invariant",
        path,
        "an element must have a value or child elements; empty objects are not allowed (ele-1)",
        "et element må ha en verdi eller underelementer; tomme objekter er ikke tillatt (ele-1)",
        "ele-1",
    )
    return True
