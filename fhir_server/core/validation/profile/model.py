"""The compiled (fast) form of a profile's snapshot, value-set membership indexes, and invariants.

A snapshot is compiled once per ``url|version`` into a tree of :class:`Node` values: one per
element, with its children, its slices, the JSON property names it may appear under, and its
checks (cardinality, fixed/pattern, binding, constraints) ready to run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.conformance.packages import ConformanceRegistry

from .fhirpath import Unsupported, compile_fast
from .fhirpath_shapes import compile_shape
from .snapshot import _split_id

UNBOUNDED = 10**9
_FHIR_MODEL = models["r4"]
_CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(slots=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    source: str
    fast: Callable[[Any], list] | None
    slow_text: str
    base_path: str
    slow: Callable[[Any, dict], list] | None = None


@dataclass(slots=True)
class Node:
    """One element of a compiled profile."""

    id: str
    path: str
    name: str  # last path segment, e.g. ``identifier`` or ``value[x]``
    min: int
    max: int
    types: list[dict]
    json_names: dict[str, str | None]  # JSON property -> type code
    fixed: tuple[str, Any] | None = None  # (type suffix, value)
    pattern: tuple[str, Any] | None = None
    binding: tuple[str, str] | None = None  # (strength, value set url)
    invariants: list[Invariant] = field(default_factory=list)
    slicing: dict | None = None
    slice_name: str | None = None
    slices: list[Node] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    max_text: str = "*"
    check_min: bool = True  # False when the core definition already demands this minimum
    check_max: bool = True
    check_targets: bool = True
    by_key: dict[str, Node] | None = None  # built on first use by the validator (plan.py)
    must_check: list[Node] = field(default_factory=list)
    inert: bool | None = None  # nothing to check here or below (plan.py), worked out on first use
    is_choice: bool = field(init=False)  # a choice element (``value[x]``): from ``name``, set once
    profiles_of_types: list[str] | None = None  # type_profiles(), worked out on first use

    def __post_init__(self) -> None:
        self.is_choice = self.name.endswith("[x]")

    def type_profiles(self) -> list[str]:
        """The profiles of the element's types (computed once; callers must not modify the list)."""
        found = self.profiles_of_types
        if found is None:
            found = self.profiles_of_types = [p for t in self.types for p in t.get("profile", ())]
        return found

    def child(self, name: str) -> Node | None:
        for c in self.children:
            if c.name == name or name in c.json_names or (c.name.endswith("[x]") and c.name[:-3] == name):
                return c
        return None


@dataclass(slots=True, eq=False)
class CompiledProfile:
    url: str
    version: str | None
    type: str
    kind: str
    root: Node
    context: list[dict]
    skipped: list[str]  # invariants that could not be evaluated, with the reason


_PRIMITIVE_VALUE = re.compile(r"(?<![\w.%$`'])value(?![\w\[(`'])")


def compile_invariant(constraint: dict, base_path: str, primitive: bool) -> tuple[Invariant | None, str | None]:
    """An :class:`Invariant` ready to run, or (None, reason) when the expression cannot be evaluated here.

    The fast subset evaluator is used when it covers the expression; fhirpathpy otherwise (compiled
    on first use). On a primitive, ``value`` means the primitive's own value, as in the HL7 validator.
    """
    expression = constraint.get("expression")
    key = constraint.get("key", "?")
    if not expression:
        return None, f"{key}: no FHIRPath expression"
    rewritten = _PRIMITIVE_VALUE.sub("$this", expression) if primitive else expression
    fast = compile_fast(rewritten)
    if fast is not None:  # a hand-written evaluator where the expression has one of its shapes (same results)
        fast = compile_shape(rewritten) or fast
    if fast is None and "hasValue()" in rewritten:
        return None, f"{key} on {base_path or 'element'}: hasValue() is not implemented in fhirpathpy"
    slow_text = f"select({rewritten})" if "$this" in rewritten else rewritten
    if fast is None:
        try:
            fhirpath_compile(slow_text, _FHIR_MODEL)
        except Exception as exc:  # the parser raises several exception types
            return None, f"{key}: cannot compile {expression!r}: {exc}"
    return (
        Invariant(
            key=key,
            severity=constraint.get("severity", "error"),
            human=constraint.get("human", ""),
            expression=expression,
            source=constraint.get("source", ""),
            fast=fast,
            slow_text=slow_text,
            base_path=base_path,
        ),
        None,
    )


def run_invariant(inv: Invariant, value: Any, root: Any) -> bool | None:
    """True/False, or None when evaluation raised (reported by the caller as a warning)."""
    result = None
    if inv.fast is not None:
        try:
            result = inv.fast(value)
        except Unsupported:
            result = None
        except Exception:
            result = None
    if result is None:
        try:
            if inv.slow is None:
                inv.slow = fhirpath_compile(inv.slow_text, _FHIR_MODEL)
            node = ResourceNode.create_node(value, inv.base_path) if inv.base_path else value
            result = inv.slow(node, {"resource": root, "rootResource": root})
        except Exception:
            return None
    if not result:
        return False
    if len(result) == 1 and type(result[0]) is bool:  # the usual [True] / [False]: as below, sooner
        return result[0]
    return all(r is True for r in result) if all(isinstance(r, bool) for r in result) else True


def _json_names(name: str, types: list[dict]) -> dict[str, str | None]:
    if name.endswith("[x]"):
        stem = name[:-3]
        return {stem + upper_first(t["code"]): t["code"] for t in types}
    return {name: types[0]["code"] if len(types) == 1 else None}


def _max(value: str | None) -> int:
    if value in (None, "*"):
        return UNBOUNDED
    return int(value)


def _value_key(element: dict, prefix: str) -> tuple[str, Any] | None:
    for key, value in element.items():
        if key.startswith(prefix) and len(key) > len(prefix) and key[len(prefix)].isupper():
            return key[len(prefix) :], value
    return None


def compile_snapshot(
    sd: dict, elements: list[dict], *, core_checks: bool = False, suppressions: Any = None
) -> CompiledProfile:
    """Compile snapshot ``elements`` of ``sd`` into a :class:`CompiledProfile`."""
    skipped: list[str] = []
    nodes: dict[str, Node] = {}
    root: Node | None = None
    url = sd.get("url", "")
    for raw in elements:
        eid = raw.get("id") or raw["path"]
        path = raw["path"]
        types = [t for t in raw.get("type", ()) if "code" in t]
        types = [dict(t, code=_type_code(t["code"])) for t in types]
        name = path.rsplit(".", 1)[-1]
        node = Node(
            id=eid,
            path=path,
            name=name,
            min=int(raw.get("min", 0)),
            max=_max(raw.get("max")),
            max_text=str(raw.get("max", "*")),
            types=types,
            json_names=_json_names(name, types) if types else {name: None},
            fixed=_value_key(raw, "fixed"),
            pattern=_value_key(raw, "pattern"),
            slicing=raw.get("slicing"),
            slice_name=raw.get("sliceName"),
        )
        core = None if core_checks else _core_element(raw)
        if core is not None:
            # what the core definition already demands is base validation's job: check only what the profile adds
            base = raw.get("base") or {}
            node.check_min = node.min > int(base.get("min", core.min))
            node.check_max = node.max < _max(str(base.get("max", core.max)))
            node.check_targets = _targets(types) != {p for t in core.types for p in t.target_profiles}
        binding = raw.get("binding") or {}
        if binding.get("valueSet") and binding.get("strength") in ("required", "extensible"):
            ignored = suppressions.ignores_binding(url, _plain_path(eid)) if suppressions else None
            same_as_core = core is not None and (core.binding_strength, core.value_set) == (
                binding["strength"],
                binding["valueSet"].split("|")[0],
            )
            if ignored is None and not same_as_core:
                node.binding = (binding["strength"], binding["valueSet"])
        primitive = len(types) == 1 and (r4().is_primitive(types[0]["code"]) or types[0]["code"].startswith("System."))
        for constraint in raw.get("constraint", ()):
            source = constraint.get("source") or ""
            if not core_checks and (source.startswith(_CORE_SD) or not source):
                continue  # core invariants are the base validator's job
            if suppressions and suppressions.ignores_invariant(url, constraint.get("key", "")):
                skipped.append(f"{constraint.get('key')}: suppressed (see profiles/suppressions.json)")
                continue
            inv, reason = compile_invariant(constraint, _fhirpath_base(path, types), primitive)
            if inv:
                node.invariants.append(inv)
            elif reason:
                skipped.append(reason)
        nodes[eid] = node
        segs = _split_id(eid)
        if len(segs) == 1 and ":" not in segs[0]:
            root = node
            continue
        last = segs[-1]
        if ":" in last:
            unsliced = ".".join([*segs[:-1], last.split(":", 1)[0]])
            holder = nodes.get(unsliced)
            if holder is not None:
                holder.slices.append(node)
                continue
        parent = nodes.get(".".join(segs[:-1]))
        if parent is not None:
            parent.children.append(node)
    if root is None:
        raise ValueError(f"{url}: snapshot has no root element")
    return CompiledProfile(
        url=url,
        version=sd.get("version"),
        type=sd.get("type", root.path),
        kind=sd.get("kind", ""),
        root=root,
        context=list(sd.get("context", ())),
        skipped=skipped,
    )


def _core_element(raw: dict) -> Any:
    """The R4 core element this snapshot element derives from (by ``base.path``), if known."""
    base_path = (raw.get("base") or {}).get("path")
    if not base_path:
        return None
    return r4().element(base_path.split(".", 1)[0], base_path)


def _targets(types: list[dict]) -> set[str]:
    return {p for t in types for p in t.get("targetProfile", ())}


def _plain_path(eid: str) -> str:
    return ".".join(seg.split(":", 1)[0] for seg in _split_id(eid))


def _fhirpath_base(path: str, types: list[dict]) -> str:
    """The type name fhirpathpy should see for an element (so choice types resolve)."""
    if len(types) == 1:
        code = types[0]["code"]
        if code in ("BackboneElement", "Element"):
            return path
        if code.startswith("System."):
            return ""
        return code
    return path if not types or "." not in path else ""


def _type_code(code: str) -> str:
    if code.startswith("http://hl7.org/fhirpath/System."):
        return "System." + code.rsplit(".", 1)[-1]
    return code


# ------------------------------------------------------------------------------------------------
# Terminology: value-set membership
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ValueSetIndex:
    """What a value set admits: explicit (system, code) pairs, plus whole systems whose codes are accepted."""

    url: str
    known: bool
    pairs: set[tuple[str, str]] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)
    whole_systems: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def contains(self, system: str | None, code: str | None) -> bool:
        if code is None:
            return False
        if system is None:
            return code in self.codes or bool(self.whole_systems)
        return (system, code) in self.pairs or system in self.whole_systems


def _all_codes(concepts: list[dict]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        if "code" in c:
            out.append(c["code"])
        out.extend(_all_codes(c.get("concept", ())))
    return out


def build_value_set_index(
    url: str, registry: ConformanceRegistry, _seen: frozenset[str] = frozenset()
) -> ValueSetIndex:
    """Index the value set ``url``; a ``urn:oid:`` url naming a code system stands for all its codes."""
    base_url = url.split("|")[0]
    vs = registry.value_set(base_url)
    index = ValueSetIndex(url=base_url, known=vs is not None)
    if vs is None:
        if base_url.startswith("urn:oid:"):
            # no-basis binds to Volven code-system OIDs as if they were value sets: all codes of that system
            index.known = True
            _add_system(index, base_url, registry)
        return index
    if base_url in _seen:
        return index
    for item in vs.get("expansion", {}).get("contains", ()):
        _add_pair(index, item.get("system"), item.get("code"))
    compose = vs.get("compose", {})
    for include in compose.get("include", ()):
        system = include.get("system")
        for nested in include.get("valueSet", ()):
            other = build_value_set_index(nested, registry, _seen | {base_url})
            index.pairs |= other.pairs
            index.codes |= other.codes
            index.whole_systems |= other.whole_systems
        if not system:
            continue
        if include.get("concept"):
            for concept in include["concept"]:
                _add_pair(index, system, concept.get("code"))
        elif include.get("filter"):
            index.whole_systems.add(system)
            index.notes.append(f"filters on {system} are not evaluated: any code from {system} is accepted")
        else:
            _add_system(index, system, registry)
    return index


def _add_pair(index: ValueSetIndex, system: str | None, code: str | None) -> None:
    if code is None:
        return
    index.codes.add(code)
    if system:
        index.pairs.add((system, code))


def _add_system(index: ValueSetIndex, system: str, registry: ConformanceRegistry) -> None:
    cs = registry.code_system(system)
    if cs is not None and cs.get("content", "complete") == "complete" and cs.get("concept"):
        aliases = {system, cs.get("url", system)}
        for code in _all_codes(cs["concept"]):
            for alias in aliases:
                _add_pair(index, alias, code)
    else:
        index.whole_systems.add(system)


# ------------------------------------------------------------------------------------------------
# Fixed / pattern comparison
# ------------------------------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return Decimal(str(value))
    return value


def matches_fixed(instance: Any, fixed: Any) -> bool:
    """Exact equality (FHIR fixed[x]); decimals compared by value."""
    if type(fixed) is str:  # the common case (a fixed system or code): _norm leaves both sides as they are
        return instance == fixed
    if isinstance(fixed, dict):
        if not isinstance(instance, dict) or set(instance) - {"id", "extension"} != set(fixed):
            return False
        return all(matches_fixed(instance.get(k), v) for k, v in fixed.items())
    if isinstance(fixed, list):
        return (
            isinstance(instance, list)
            and len(instance) == len(fixed)
            and all(matches_fixed(a, b) for a, b in zip(instance, fixed, strict=True))
        )
    return _norm(instance) == _norm(fixed)


def matches_pattern(instance: Any, pattern: Any) -> bool:
    """FHIR pattern[x]: every property in the pattern is present with a matching value (arrays: each item found)."""
    if type(pattern) is str:  # as for matches_fixed: _norm(instance) == pattern is instance == pattern
        return instance == pattern
    if isinstance(pattern, dict):
        if not isinstance(instance, dict):
            return False
        return all(k in instance and matches_pattern(instance[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        items = instance if isinstance(instance, list) else [instance]
        return all(any(matches_pattern(i, p) for i in items) for p in pattern)
    return _norm(instance) == _norm(pattern)
