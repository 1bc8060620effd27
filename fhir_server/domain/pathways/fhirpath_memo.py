"""Remember the results of FHIRPath conditions that read only their ``%variables``.

A pathway's applicability condition (``%age < 18 and %icd10.where(matches('^F50')).exists()``)
usually reads nothing but the variables it is given: its result is then a function of those values,
and fhirpathpy's tree walk (a few hundred µs) need run once per combination of them.

:func:`variables_read` decides this from fhirpathpy's parse tree, conservatively: the expression
may name only the given variables, call only the functions in :data:`PURE_FUNCTIONS` (no clock, no
``resolve()``, no ``trace()``), and start a path without a focus (``code``, ``$this``,
``matches(...)``) only directly inside the criteria of an iterating function (``where``,
``select``, ``all``, ``exists``, ``repeat``), where the focus is an item of what the function
iterates. Anything else might read the resource, and is not remembered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

from fhirpathpy.parser import parse

#: Functions whose criteria run on each item of their input (fhirpathpy's ``Expr`` parameters).
ITERATING = frozenset({"where", "select", "all", "exists", "repeat"})
#: Functions whose result depends on their input and arguments only.
PURE_FUNCTIONS = ITERATING | frozenset(
    {
        "empty", "not", "count", "distinct", "isDistinct", "allTrue", "anyTrue", "allFalse", "anyFalse",
        "first", "last", "tail", "skip", "take", "single", "iif",
        "matches", "startsWith", "endsWith", "contains", "length", "upper", "lower", "substring", "indexOf",
        "toString", "toInteger", "toDecimal",
    }
)  # fmt: skip
MAX_ENTRIES = 4096
_PLAIN = (str, int, bool, type(None))
#: Invocations that read the current focus (``$this`` and friends) wherever they stand.
_FOCUS = frozenset({"InvocationTerm", "ThisInvocation", "IndexInvocation", "TotalInvocation"})

Evaluate = Callable[[Any, dict], list]


class _ReadsMore(Exception):
    """The expression may read more than its variables."""


def variables_read(expression: str, allowed: Collection[str]) -> frozenset[str] | None:
    """The ``allowed`` variables ``expression`` reads, or None when it may read anything else."""
    found: set[str] = set()

    def walk(node: dict, in_criteria: bool) -> None:
        kind = node.get("type")
        children = node.get("children") or []
        if kind in _FOCUS and not in_criteria:
            raise _ReadsMore(node.get("text"))
        if kind == "ExternalConstant":
            name = children[0] if len(children) == 1 else {}
            if name.get("type") != "Identifier" or name.get("text") not in allowed:
                raise _ReadsMore(node.get("text"))
            found.add(name["text"])
            return
        if kind == "Functn":
            name = children[0].get("text") if children else None
            if name not in PURE_FUNCTIONS:
                raise _ReadsMore(name)
            for child in children[1:]:  # the ParamList: criteria when the function iterates
                walk(child, name in ITERATING)
            return
        for child in children:
            walk(child, in_criteria)

    try:
        walk(parse(expression), False)
    except _ReadsMore:
        return None
    return frozenset(found)


def _frozen(value: Any) -> tuple:
    """A hashable, exact stand-in for a variable's value (``1``, ``True`` and ``"1"`` stay apart).

    Only ``str``, ``int``, ``bool`` and ``None`` (alone or in a list) qualify: equal values of other types
    (``Decimal("1.0")`` and ``Decimal("1.00")``) may still differ in FHIRPath. Others raise TypeError."""
    if type(value) is list:
        return (list, tuple(_frozen_item(item) for item in value))
    return _frozen_item(value)


def _frozen_item(value: Any) -> tuple:
    if type(value) not in _PLAIN:
        raise TypeError(type(value).__name__)
    return (type(value), value)


def memoised(evaluate: Evaluate, variables: Collection[str], max_entries: int = MAX_ENTRIES) -> Evaluate:
    """``evaluate`` (a compiled expression reading only ``variables``) remembering its results by their values.

    The resource argument is not part of the key: only use this for what :func:`variables_read` accepts.
    Values :func:`_frozen` refuses, missing variables, results holding other than plain values and evaluations
    that raise are never remembered."""
    names = tuple(sorted(variables))
    results: dict[tuple, tuple] = {}
    lock = threading.Lock()

    def run(resource: Any, env: dict) -> list:
        try:
            key = tuple(_frozen(env[name]) for name in names)
        except (KeyError, TypeError):  # evaluated as it is (a missing variable raises there)
            return evaluate(resource, env)
        with lock:
            known = results.get(key)
        if known is None:
            result = evaluate(resource, env)
            if any(type(item) not in _PLAIN for item in result):  # kept only when nothing in it can change
                return result
            known = tuple(result)
            with lock:
                if len(results) >= max_entries:
                    results.pop(next(iter(results)))  # the oldest
                results[key] = known
        return list(known)

    return run
