"""The base walk's fast paths agree with the general path they stand in for.

* ``primitive_quick.quick_check``: when it says a value needs nothing more, the full primitive check
  (``check_primitive``, the required binding of a ``code``, the ``#id`` bookkeeping) finds nothing;
* the per-schema steps (``base/walk_plan.py``): the walk with them reports exactly what the walk reports
  when every value goes through the general ``_check_value`` (the former walk).
"""

from __future__ import annotations

import copy
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_server.core import jsonio
from fhir_server.core.resource_types import KNOWN_TYPES
from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.base import bindings, walk
from fhir_server.core.validation.base.primitive_quick import quick_check
from fhir_server.core.validation.base.primitives import check_primitive
from fhir_server.core.validation.base.schema import (
    BACKBONE,
    COMPLEX,
    PRIMITIVE,
    NodeSchema,
    node_schema,
    resource_schema,
)
from fhir_server.core.validation.base.walk_plan import Step, prop_invariants, steps
from tests.json_mutation import mutants, spots

DATA = Path(__file__).resolve().parent / "data" / "referral-bundle.json"
TRANSACTION = Path(__file__).resolve().parents[2] / "data" / "referral-transaction.json"


def _schemas() -> list[NodeSchema]:
    """Every object schema reachable from the server's resource types (as ``warm_up`` builds them)."""
    seen: dict[tuple[str, str], NodeSchema] = {}
    stack = [(t, t) for t in sorted(KNOWN_TYPES)] + [("Element", "Element")]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        schema = seen[key] = node_schema(*key)
        stack += [p.child for p in schema.props.values() if p.kind in (COMPLEX, BACKBONE) and p.child is not None]
    return list(seen.values())


_VALUES: list[Any] = [
    "",
    " ",
    "\t",
    "a",
    " a",
    "a ",
    "a  b",
    "a b",
    "x" * 65,
    "abc-1.2",
    "urn:uuid:3f1c2a9e-6b1d-4c55-9a0e-1b2c3d4e5f01",
    "urn:uuid:3F1C2A9E-6B1D-4C55-9A0E-1B2C3D4E5F01",
    "#",
    "#x",
    "http://a b",
    "http://a",
    "urn:oid:2.16",
    "male",
    "female",
    "final",
    "active",
    "official",
    "nb",
    "1985-03-15",
    "\u00a0",
    "a\u2003b",
    True,
    False,
    0,
    1,
    -1,
    2**31,
    -(2**31) - 1,
    Decimal("1.5"),
    1.5,
    None,
    [],
    {},
    ["a"],
    {"a": 1},
]


def _full_check_is_silent(prop, value: Any) -> bool:  # type: ignore[no-untyped-def]
    if check_primitive(value, prop, "x") is not None:
        return False
    if type(value) is str:
        if prop.value_set is not None and prop.type_code == "code":
            return bindings.check_code(value, prop.value_set, "x") is None
        if value[:1] == "#" and prop.type_code in ("uri", "url", "canonical"):
            return False  # remembered for dom-3: the quick check must leave it to the full check
    return True


def test_quick_check_says_yes_only_when_the_full_check_is_silent() -> None:
    checked = 0
    kinds: set[tuple[str, str]] = set()
    for schema in _schemas():
        for prop in schema.props.values():
            if prop.kind != PRIMITIVE:
                continue
            key = (prop.type_code, prop.value_set or "")
            if key in kinds:
                continue
            kinds.add(key)
            quick = quick_check(prop)
            assert quick is not None
            for value in _VALUES:
                if quick(value):
                    assert _full_check_is_silent(prop, value), (prop.type_code, prop.value_set, value)
                checked += 1
    assert checked > 1000


def test_quick_check_accepts_the_usual_values() -> None:
    patient = resource_schema("Patient").props
    assert quick_check(patient["gender"])("male")  # type: ignore[misc]
    assert not quick_check(patient["gender"])("mann")  # type: ignore[misc]
    assert quick_check(patient["active"])(True)  # type: ignore[misc]
    assert quick_check(patient["birthDate"])("1985-03-15")  # type: ignore[misc]


# -- the walk with and without its steps ----------------------------------------------------------


def _general_step(step: Step) -> Step:
    """The same property with every fast path off: each value goes through ``_check_value``."""
    prop = step.prop
    nested = prop.kind in (COMPLEX, BACKBONE) and prop.child is not None
    return Step(prop, prop.is_array, None, False, None, prop_invariants(prop) if nested else (), step.typed)


_MUTATIONS: list[Any] = [
    None,
    "",
    " ",
    [],
    {},
    {"id": "x"},
    [None],
    1,
    True,
    "x y",
    "#",
    "#x",
    "bad code",
    "urn:uuid:NOT",
    "2020-13-45",
    Decimal("1.5"),
    {"reference": "#missing"},
    {"reference": "Patient/1"},
    {"url": "http://x"},
    ["a"],
    {"resourceType": "Patient"},
    {"resourceType": "Foo"},
    {"coding": [{"system": "http://x", "code": "y"}]},
    {"extension": [{"url": "http://x", "valueString": "a"}]},
    "a" * 70,
    -1,
    2**40,
]
_NEW_KEYS = [
    "foo",
    "_foo",
    "_given",
    "_status",
    "extension",
    "contained",
    "valueString",
    "valueBoolean",
    "deceasedBoolean",
    "deceasedDateTime",
    "_birthDate",
    "text",
    "id",
    "_",
]


def _mutate(rng: random.Random, doc: dict) -> None:
    holder, key = rng.choice(spots(doc))
    op = rng.random()
    if op < 0.25:
        del holder[key]
    elif op < 0.6:
        holder[key] = copy.deepcopy(rng.choice(_MUTATIONS))
    elif op < 0.75 and isinstance(holder[key], list) and holder[key]:
        holder[key].append(copy.deepcopy(rng.choice(holder[key])))
    elif isinstance(holder[key], dict):
        holder[key][rng.choice(_NEW_KEYS)] = copy.deepcopy(rng.choice(_MUTATIONS))
    else:
        holder[key] = copy.deepcopy(rng.choice(_MUTATIONS))


def _mutants(doc: dict, count: int, seed: int) -> list[dict]:
    return mutants(doc, count, seed, [1, 2, 3, 6], _mutate)


def _issues(resource: dict) -> list[tuple]:
    return [
        (i.severity, i.code, i.expression, i.diagnostics, i.diagnostics_nb, i.rule) for i in validate_resource(resource)
    ]


@pytest.mark.parametrize("source", [DATA, TRANSACTION])
def test_walk_with_steps_reports_what_the_general_walk_reports(source: Path, monkeypatch) -> None:
    doc = jsonio.loads(source.read_bytes())
    inputs = [doc, *_mutants(doc, 250, seed=len(source.name))]
    fast = [_issues(r) for r in inputs]
    for schema in _schemas():
        monkeypatch.setattr(schema, "steps", {name: _general_step(s) for name, s in steps(schema).items()})
    general = [_issues(r) for r in inputs]
    assert fast == general
    assert sum(map(len, fast)) > 250, "the mutants should break some rules"
    assert walk.check_base(doc).issues == []


# -- native invariants rewritten as loops ---------------------------------------------------------


def _former_entries(n: dict) -> list[dict]:
    entries = n.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


_FORMER = {
    "bdl-2": lambda n: n.get("type") == "searchset" or all("search" not in e for e in _former_entries(n)),
    "bdl-3": lambda n: all(
        ("request" in e) == (n.get("type") in ("batch", "transaction", "history")) for e in _former_entries(n)
    ),
    "bdl-4": lambda n: all(
        ("response" in e) == (n.get("type") in ("batch-response", "transaction-response", "history"))
        for e in _former_entries(n)
    ),
    "bdl-5": lambda n: any(k in n for k in ("resource", "request", "response")),
    "pat-1": lambda n: any(k in n for k in ("name", "telecom", "address", "organization")),
}


@pytest.mark.parametrize("key", sorted(_FORMER))
def test_native_invariants_keep_their_verdicts(key: str) -> None:
    from fhir_server.core.validation.base.invariants import NATIVE

    rng = random.Random(key)
    parts = ["search", "request", "response", "resource", "name", "telecom", "address", "organization", "x"]
    types = ["searchset", "batch", "transaction", "history", "batch-response", "transaction-response", "document", 1]
    for _ in range(400):
        entries: Any = [
            {k: {} for k in rng.sample(parts, rng.randrange(4))} if rng.random() < 0.9 else rng.choice([None, "e", []])
            for _ in range(rng.randrange(4))
        ]
        node: dict = {k: {} for k in rng.sample(parts, rng.randrange(4))}
        node["type"] = rng.choice(types)
        node["entry"] = entries if rng.random() < 0.9 else rng.choice([None, {}, "x"])
        assert NATIVE[key](node) == _FORMER[key](node), node


def test_period_order_is_judged_as_before() -> None:
    from fhir_server.core.validation.base.invariants import NATIVE

    cases = [
        ("2024-01-01T10:00:00+01:00", "2024-01-01T09:30:00Z", True),
        ("2024-01-02", "2024-01-01", False),
        ("2024-01-01T10:00:00Z", "2024-01-01T09:00:00Z", False),
        ("2024-01-01T10:00:00", "2023-01-01", True),
        ("2024-13-01T10:00:00Z", "2023-01-01T10:00:00Z", True),
        ("2024", "2023", False),
    ]
    for start, end, holds in cases * 2:  # twice: the second time from the memo of parsed instants
        assert NATIVE["per-1"]({"start": start, "end": end}) is holds, (start, end)
