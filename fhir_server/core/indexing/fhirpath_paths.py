"""Fast evaluation of the simple FHIRPath forms that search parameter expressions use.

Most R4 SearchParameter expressions are unions of plain paths, with ``as``/``ofType`` on choice
elements and a few ``where(...)`` filters::

    Patient.name.family | Practitioner.name.family
    (ServiceRequest.occurrence as dateTime) | (ServiceRequest.occurrence as Period)
    Task.for.where(resolve() is Patient)
    Patient.telecom.where(system='email')
    Task.input.where(type.coding.code = 'health-trust').value.ofType(Reference)

This module compiles those forms into small step lists evaluated directly on JSON dicts, about
50 times faster than a general FHIRPath engine. Expressions outside these forms return ``None``
from :func:`compile_paths`; the caller then uses fhirpathpy for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

Value = tuple[Any, str | None]  # a JSON value and, when known, its FHIR type (from a choice suffix)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_WHERE_RESOLVE = re.compile(rf"^where\(resolve\(\) is ({_IDENT})\)$")
_WHERE_EQ = re.compile(rf"^where\(({_IDENT}(?:\.{_IDENT})*)\s*=\s*'([^']*)'\)$")
_AS_CALL = re.compile(rf"^(?:as|ofType)\(({_IDENT})\)$")
_EXTENSION = re.compile(r"^extension\('([^']+)'\)$")


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # child | as | where_resolve | where_eq | extension
    name: str = ""
    value: str = ""


def _split_top(text: str, sep: str) -> list[str] | None:
    """Split on ``sep`` outside parentheses and quotes; None if unbalanced."""
    parts, depth, quote, start = [], 0, False, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quote = not quote
        elif not quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return None
            elif depth == 0 and text.startswith(sep, i):
                parts.append(text[start:i])
                start = i + len(sep)
                i += len(sep)
                continue
        i += 1
    if depth or quote:
        return None
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _strip_parens(text: str) -> str:
    while text.startswith("(") and text.endswith(")"):
        inner = text[1:-1]
        if _split_top(inner, "|") is None:
            break
        if _balanced_prefix(inner):
            text = inner.strip()
        else:
            break
    return text


def _balanced_prefix(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _parse_branch(branch: str) -> tuple[str, list[Step]] | None:
    """``Type.a.b.where(...) as T`` → (Type, steps); None if not a simple form."""
    branch = _strip_parens(branch)
    as_type = None
    m = re.match(rf"^(.*)\s+as\s+({_IDENT})$", branch)
    if m:
        branch, as_type = _strip_parens(m.group(1).strip()), m.group(2)
    parts = _split_top(branch, ".")
    if not parts or not re.fullmatch(_IDENT, parts[0]):
        return None
    steps: list[Step] = []
    for part in parts[1:]:
        if re.fullmatch(_IDENT, part):
            steps.append(Step("child", part))
        elif m := _AS_CALL.match(part):
            steps.append(Step("as", m.group(1)))
        elif m := _WHERE_RESOLVE.match(part):
            steps.append(Step("where_resolve", m.group(1)))
        elif m := _WHERE_EQ.match(part):
            steps.append(Step("where_eq", m.group(1), m.group(2)))
        elif m := _EXTENSION.match(part):
            steps.append(Step("extension", value=m.group(1)))
        else:
            return None
    if as_type:
        steps.append(Step("as", as_type))
    return parts[0], steps


def compile_paths(expression: str, resource_type: str) -> Callable[[dict], list[Value]] | None:
    """Compile the branches of ``expression`` that apply to ``resource_type``; None if not simple."""
    branches = _split_top(expression, "|")
    if branches is None:
        return None
    compiled: list[list[Step]] = []
    for branch in branches:
        parsed = _parse_branch(branch)
        if parsed is None:
            return None
        root, steps = parsed
        if root in (resource_type, "Resource", "DomainResource"):
            compiled.append(steps)

    def evaluate(resource: dict) -> list[Value]:
        out: list[Value] = []
        for steps in compiled:
            out.extend(_walk([(resource, None)], steps))
        return out

    # the top-level elements the expression reads: a resource without any of them yields nothing
    evaluate.roots = frozenset(s[0].name for s in compiled if s and s[0].kind == "child")  # type: ignore[attr-defined]
    if any(not s or s[0].kind != "child" for s in compiled):
        evaluate.roots = None  # type: ignore[attr-defined]
    return evaluate


@cache
def choice_names() -> frozenset[str]:
    """Names of the R4 choice elements (``value`` of ``value[x]``...) of every type the server stores."""
    from fhir_server.core.conformance.definitions import r4

    return frozenset(
        element.name[:-3] for td in r4().types.values() for element in td.elements.values() if element.is_choice
    )


_MISSING = object()


def _choice_children(value: dict, name: str) -> Iterator[Value]:
    """The values of choice element ``name`` (occurrence -> occurrenceDateTime / occurrencePeriod ...)."""
    for key, found in value.items():
        if not key.startswith(name):
            continue
        type_name = CHOICE_SUFFIXES.get(key[len(name) :])
        if type_name is not None:
            yield from ((v, type_name) for v in found) if isinstance(found, list) else [(found, type_name)]


_PRIMITIVES = frozenset(
    {
        "boolean",
        "integer",
        "string",
        "decimal",
        "uri",
        "url",
        "canonical",
        "base64Binary",
        "instant",
        "date",
        "dateTime",
        "time",
        "code",
        "oid",
        "id",
        "markdown",
        "unsignedInt",
        "positiveInt",
        "uuid",
    }
)


_COMPLEX = [
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "HumanName",
    "Identifier",
    "Meta",
    "Money",
    "ParameterDefinition",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "Timing",
    "TriggerDefinition",
    "UsageContext",
]
#: JSON name suffix of a choice element -> FHIR type name (``DateTime`` -> ``dateTime``).
CHOICE_SUFFIXES: dict[str, str] = {p[0].upper() + p[1:]: p for p in _PRIMITIVES} | {c: c for c in _COMPLEX}


def _type_matches(type_name: str | None, wanted: str) -> bool:
    if type_name is None:
        return True  # not a choice: the path already fixes the type
    return type_name == wanted or (wanted in ("Quantity",) and type_name in ("Age", "Duration", "Distance", "Count"))


def _walk(values: list[Value], steps: list[Step]) -> list[Value]:
    choices = choice_names()
    for step in steps:
        nxt: list[Value] = []
        if step.kind == "child":  # the common step, inlined: no generator for a plain element
            name = step.name
            for value, _ in values:
                if not isinstance(value, dict):
                    continue
                found = value.get(name, _MISSING)
                if found is _MISSING:
                    if name in choices:
                        nxt.extend(_choice_children(value, name))
                elif isinstance(found, list):
                    nxt.extend([(v, None) for v in found])
                else:
                    nxt.append((found, None))
            values = nxt
            if not values:
                break
            continue
        for value, type_name in values:
            if step.kind == "as":
                if _type_matches(type_name, step.name):
                    nxt.append((value, type_name))
            elif step.kind == "where_resolve":
                ref = value.get("reference", "") if isinstance(value, dict) else ""
                if _reference_type(ref) == step.name:
                    nxt.append((value, type_name))
            elif step.kind == "where_eq":
                if _equals_one(value, step):
                    nxt.append((value, type_name))
            elif step.kind == "extension" and isinstance(value, dict):
                for ext in value.get("extension", ()):
                    if isinstance(ext, dict) and ext.get("url") == step.value:
                        nxt.append((ext, "Extension"))
        values = nxt
        if not values:
            break
    return values


def _equals_one(value: object, step: Step) -> bool:
    """FHIRPath ``path = 'text'`` on ``value``: true when the path gives exactly one item, equal to the text
    (a collection of several items is not equal to one string)."""
    if not isinstance(value, dict):
        return False
    if "." not in step.name:
        return value.get(step.name) == step.value
    found = _walk([(value, None)], [Step("child", name) for name in step.name.split(".")])
    return len(found) == 1 and found[0][0] == step.value


def _reference_type(reference: str) -> str | None:
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 else None
