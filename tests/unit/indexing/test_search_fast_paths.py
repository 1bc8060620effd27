"""The search index's fast path (``indexing/fhirpath_paths.py``) gives what fhirpathpy gives.

Every search parameter the server knows whose expression the fast path compiles is evaluated both ways on
the resources of the sample referral Bundle and on Tasks shaped like the hub's routing Tasks (inputs told
apart by ``where(type.coding.code = '…')``, with one, two and no codings).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core import jsonio
from fhir_server.core.indexing.fhirpath_paths import compile_paths
from fhir_server.core.indexing.parameters import _fhirpathpy_extractor
from fhir_server.core.indexing.rows import TABLE_PARAMETERS

BUNDLE = Path(__file__).resolve().parents[2] / "data" / "referral-transaction.json"


def _input(code: str, value: dict, *, extra_coding: bool = False) -> dict:
    coding = [{"system": "urn:example", "code": code}]
    if extra_coding:
        coding.append({"system": "urn:example:other", "code": "other"})
    return {"type": {"coding": coding}, **value}


def _tasks() -> list[dict]:
    trust = {"valueReference": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983974899"}}}
    pathway = {"valueCanonical": "http://example.org/PlanDefinition/psykiske-lidelser-voksne"}
    routed = {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "order",
        "owner": {"reference": "Organization/o1"},
        "focus": {"reference": "ServiceRequest/s1"},
        "input": [_input("health-trust", trust), _input("suggested-pathway", pathway)],
    }
    two_codings = copy.deepcopy(routed)
    two_codings["input"] = [_input("health-trust", trust, extra_coding=True), _input("suggested-pathway", pathway)]
    no_type = copy.deepcopy(routed)
    no_type["input"] = [{"valueString": "x"}, {"type": {"text": "health-trust"}, **trust}]
    return [routed, two_codings, no_type]


def _resources() -> list[dict]:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    return [e["resource"] for e in bundle["entry"]] + _tasks()


def _plain(values: list) -> list:
    return sorted((jsonio.dumps(v).decode() if not isinstance(v, Decimal) else str(v) for v, _ in values))


def _cases() -> list[tuple[str, str, str]]:
    registry = build_search_registry()
    cases = []
    for resource in _resources():
        rtype = resource["resourceType"]
        for code, param in registry.params(rtype).items():
            expression = param.expression
            if code not in TABLE_PARAMETERS and expression and compile_paths(expression, rtype) is not None:
                cases.append((rtype, code, expression))
    return sorted(set(cases))


def test_the_routing_tasks_inputs_are_on_the_fast_path() -> None:
    assert ("Task", "health-trust") in {(t, c) for t, c, _ in _cases()}
    assert ("Task", "suggested-pathway") in {(t, c) for t, c, _ in _cases()}


@pytest.mark.parametrize(("rtype", "code", "expression"), _cases())
def test_fast_path_equals_fhirpathpy(rtype: str, code: str, expression: str) -> None:
    fast = compile_paths(expression, rtype)
    general = _fhirpathpy_extractor(expression, rtype)
    assert fast is not None
    for resource in (r for r in _resources() if r["resourceType"] == rtype):
        assert _plain(fast(resource)) == _plain(general(resource)), (code, resource.get("id"))
