"""The identifier check's fast walk and memo agree with the general walk and check they stand in for.

``validate_identifiers`` finds candidates with ``object_paths.matching_objects`` (paths built only for
them) and memoises ``check_number``; the reference below is the former implementation, over
``jsonwalk.walk_objects`` and ``check_number`` directly (the Issue it builds is the same function's).
"""

from __future__ import annotations

import copy
import datetime
import random
from pathlib import Path
from typing import Any

import pytest

from fhir_server.core import jsonio
from fhir_server.core.issues import Issue
from fhir_server.core.jsonwalk import walk_objects
from fhir_server.core.validation.identifiers import check_number, kind_of_system, number_issue, validate_identifiers
from fhir_server.core.validation.object_paths import matching_objects
from tests.json_mutation import mutants, objects

TODAY = datetime.date(2026, 11, 22)
BUNDLE = Path(__file__).resolve().parents[2] / "data" / "referral-transaction.json"


def _former_validate(resource: dict, *, test_mode: bool, today: datetime.date) -> list[Issue]:
    issues: list[Issue] = []
    root = resource.get("resourceType") or "Resource"
    for path, node in walk_objects(resource, root):
        system, value = node.get("system"), node.get("value")
        if not isinstance(system, str) or "value" not in node:
            continue
        kind = kind_of_system(system)
        if kind is None:
            continue
        problem = check_number(kind, value, test_mode=test_mode, today=today)
        if problem is not None:
            issues.append(number_issue(kind, problem, system, value, path))
    return issues


_VALUES: list[Any] = [
    "15038512363",
    "15038512364",
    "974760673",
    "974760674",
    "9144900",
    "9144901",
    "12345678901",
    "",
    None,
    15038512363,
    [],
    {},
    "55038512363",
    "15838512363",
    "8",
    "1001",
    "0999",
    "201012345678",
    " 15038512363",
    {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15038512364"},
    [{"system": "http://hl7.no/fhir/NamingSystem/FNR", "value": "15038512364"}],
]
_SYSTEMS = [
    "urn:oid:2.16.578.1.12.4.1.4.1",
    "urn:oid:2.16.578.1.12.4.1.4.2",
    "urn:oid:2.16.578.1.12.4.1.4.101",
    "urn:oid:2.16.578.1.12.4.1.4.4",
    "urn:oid:2.16.578.1.12.4.1.4.107",
    "HNR",
    "http://data.brreg.no/begrep/28155",
    "http://example.org",
    "",
    7,
    None,
]


def _mutate(rng: random.Random, doc: dict) -> None:
    target = rng.choice(objects(doc))
    op = rng.random()
    if op < 0.4:
        target["system"] = rng.choice(_SYSTEMS)
        target["value"] = copy.deepcopy(rng.choice(_VALUES))
    elif op < 0.6 and "value" in target:
        del target["value"]
    elif op < 0.8:
        target[rng.choice(["_value", "_system", "identifier", "resourceType"])] = copy.deepcopy(rng.choice(_VALUES))
    else:
        target["value"] = copy.deepcopy(rng.choice(_VALUES))


def _mutants(doc: dict, count: int, seed: int) -> list[dict]:
    return mutants(doc, count, seed, [1, 2, 4], _mutate)


@pytest.mark.parametrize("test_mode", [False, True])
def test_fast_walk_reports_what_the_former_walk_reports(test_mode: bool) -> None:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    inputs = [bundle, *(e["resource"] for e in bundle["entry"]), *_mutants(bundle, 300, seed=int(test_mode))]
    found = 0
    for resource in inputs:
        expected = _former_validate(resource, test_mode=test_mode, today=TODAY)
        assert validate_identifiers(resource, test_mode=test_mode, today=TODAY) == expected
        assert validate_identifiers(resource, test_mode=test_mode, today=TODAY) == expected  # memo hits now
        found += len(expected)
    assert found > 100, "the mutants should carry wrong numbers"


def test_matching_objects_is_the_filtered_general_walk() -> None:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    for resource in [bundle, *_mutants(bundle, 100, seed=7)]:

        def wanted(node: dict) -> bool:
            return isinstance(node.get("system"), str)

        expected = [(p, n) for p, n in walk_objects(resource, "Bundle") if "system" in n and wanted(n)]
        got = matching_objects(resource, "Bundle", "system", wanted)
        assert [(p, id(n)) for p, n in got] == [(p, id(n)) for p, n in expected]
    odd_root = {"resourceType": 5, "a": [{"system": "x"}, [{"system": "y"}]], "_b": {"system": "z"}}
    assert matching_objects(odd_root, 5, "system", lambda n: True) == [  # type: ignore[arg-type]
        (p, n)
        for p, n in walk_objects(odd_root, 5)
        if "system" in n  # type: ignore[arg-type]
    ]
