"""Bounds on what one request may cost: numbers, characters, element counts, string lengths.

Each check answers with a message naming what is wrong (or None); the callers turn it into a 400
or 413 OperationOutcome naming the element. The bounds that an operator may want to move are
settings (:class:`ResourceLimits`); the bounds FHIR R4 itself sets are constants here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fhir_server.core.issues import FhirError

#: R4 decimal: "limited to 18 digits" (XML Schema's decimal); a literal longer than this is refused unread.
MAX_SIGNIFICANT_DIGITS = 18
#: The exponent of a number's leading digit: within an IEEE double's range (below 1e308, so no client
#: reads it as infinity; not below 1e-307).
MAX_EXPONENT = 307
MAX_NUMBER_LITERAL = 64


def number_problem(literal: str) -> str | None:
    """Why the JSON or XML number ``literal`` is refused (too many digits, exponent out of range), or None."""
    if len(literal) > MAX_NUMBER_LITERAL:
        return f"the number {literal[:20]}... has {len(literal)} characters; at most {MAX_NUMBER_LITERAL} are read"
    try:
        value = Decimal(literal)
    except InvalidOperation:
        return f"{literal!r} is not a number"
    if not value.is_finite():
        return f"{literal} is not a finite number"
    digits = value.as_tuple().digits
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        return f"the number {literal} has {len(digits)} significant digits; FHIR decimals hold at most 18"
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        size = f"below 1e{MAX_EXPONENT + 1} in size and, unless 0, at least 1e-{MAX_EXPONENT}"
        return f"the number {literal} is out of range ({size})"
    return None


def json_path(root: object, steps: list[str | int]) -> str:
    """A FHIRPath-like name of a place in parsed JSON: ``Patient.name[0].given[3]``."""
    head = root.get("resourceType") if isinstance(root, dict) else None
    out = head if isinstance(head, str) and head.isidentifier() else "$"
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out


def walk_json(value: object, steps: list[str | int] | None = None) -> Iterator[tuple[list[str | int], object]]:
    """Every (steps, value) in parsed JSON, depth first, containers before their members (no recursion)."""
    stack: list[tuple[list[str | int], object]] = [(steps or [], value)]
    while stack:
        here, item = stack.pop()
        yield here, item
        if isinstance(item, dict):
            stack.extend(([*here, key], member) for key, member in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(([*here, i], member) for i, member in reversed(list(enumerate(item))))


@dataclass(frozen=True)
class ResourceLimits:
    """What one resource may hold (settings): all values, one element's repeats, one string, nesting."""

    max_elements: int = 500_000
    max_repeats: int = 10_000
    max_string_length: int = 1_048_576
    max_depth: int = 100


def size_problem(resource: object, limits: ResourceLimits) -> tuple[str, str] | None:
    """(element, message) for the first bound ``resource`` exceeds, or None (one lean pass, no recursion;
    the element's path is looked for only when a bound is exceeded)."""
    count = 0
    stack: list[tuple[object, int, object]] = [(resource, 0, None)]
    pop, push, extend = stack.pop, stack.append, stack.extend
    max_string, max_repeats, max_depth = limits.max_string_length, limits.max_repeats, limits.max_depth
    while stack:
        item, depth, key = pop()
        count += 1
        kind = type(item)
        problem = None
        if kind is dict:
            depth += 1
            for name, member in item.items():  # type: ignore[attr-defined]
                push((member, depth, name))
        elif kind is list:
            if len(item) > max_repeats:  # type: ignore[arg-type]
                problem = f"the element repeats {len(item)} times; at most {max_repeats} are accepted"  # type: ignore[arg-type]
            depth += 1
            extend((member, depth, None) for member in item)  # type: ignore[attr-defined]
        elif kind is str and len(item) > max_string and key != "data":  # type: ignore[arg-type]
            problem = f"the string has {len(item)} characters; at most {max_string} are accepted"  # type: ignore[arg-type]
        if depth > max_depth:
            problem = f"the content is nested more than {max_depth} levels deep"
        elif count > limits.max_elements:
            problem = f"the resource has more than {limits.max_elements} values"
        if problem:
            steps = next((steps for steps, node in walk_json(resource) if node is item), [])
            return json_path(resource, steps), problem
    return None


def check_size(resource: object, limits: ResourceLimits) -> None:
    """Raise 413 naming the element when ``resource`` exceeds ``limits`` (before any costlier check)."""
    found = size_problem(resource, limits)
    if found is not None:
        element, message = found
        raise FhirError.single(413, "too-costly", f"{element}: {message}", element)
