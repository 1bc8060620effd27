"""Remembered FHIRPath conditions give exactly what fhirpathpy gives, and only pure conditions are remembered."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date
from decimal import Decimal

import pytest
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.domain.pathways.catalog import PathwayCatalog
from fhir_server.domain.pathways.fhirpath_memo import memoised, variables_read
from fhir_server.domain.pathways.suggest import suggest_pathways

CATALOG = PathwayCatalog.load()
VARIABLES = ("age", "icd10", "icpc2", "pregnant", "gender", "suggested")
ICD10 = "urn:oid:2.16.578.1.12.4.1.1.7110"
ICPC2 = "http://hl7.org/fhir/sid/icpc-2"
SR = {"resourceType": "ServiceRequest", "status": "active", "code": {"text": "x"}, "id": "sr1"}


def plain(catalog: PathwayCatalog) -> PathwayCatalog:
    """The catalog with every condition evaluated by fhirpathpy alone (the slow path)."""
    slow = {
        url: dataclasses.replace(rule, evaluate=fhirpath_compile(rule.expression, models["r4"]))
        for url, rule in catalog.applicability.items()
    }
    return dataclasses.replace(catalog, applicability=slow)


def envs() -> list[dict]:
    ages = [[], 0, 12, 17, 18, 30, 80]
    codes = [([], []), (["F200"], []), (["F321"], []), (["F500", "F42"], []), (["F101"], ["P15"]), ([], ["P72"]),
             ([], ["P86", "P76"]), (["Z33", "F10"], []), (["X99"], ["A01"])]  # fmt: skip
    suggested = [[], ["https://fhir.referral-hub.no/PlanDefinition/tsb"]]
    return [
        {"age": a, "icd10": i, "icpc2": p, "pregnant": preg, "gender": g, "suggested": s}
        for a, (i, p), preg, g, s in itertools.product(ages, codes, [True, False], ["female", []], suggested)
    ]


def test_every_catalog_condition_is_remembered() -> None:
    assert all(rule.variables is not None for rule in CATALOG.applicability.values())


@pytest.mark.parametrize(
    "expression",
    [
        "code.exists()",  # reads the resource
        "%age < 18 and subject.exists()",
        "%resource.id.exists()",
        "%context.exists()",
        "%unknown.exists()",
        "$this.exists()",
        "exists()",
        "where(%age > 1).exists()",  # where() on the resource
        "%icd10.where(matches(code)).exists()",  # matches' argument is not criteria
        "%icd10.where(iif(code.exists(), true, false)).exists()",
        "%age.exists() and today() > @2020-01-01",  # the clock
        "%icd10.trace('x').exists()",  # a side effect
        "%icd10.where($this = 'F20').resolve().exists()",
    ],
)
def test_conditions_that_may_read_more_are_not_remembered(expression: str) -> None:
    assert variables_read(expression, VARIABLES) is None


def test_variables_read_names_only_the_variables_used() -> None:
    assert variables_read("%icd10.where(matches('^F42') and $this != 'F420').exists()", VARIABLES) == {"icd10"}
    assert variables_read("%age >= 18 and %pregnant.not()", VARIABLES) == {"age", "pregnant"}


def test_remembered_results_equal_fhirpathpy_for_every_condition_and_input() -> None:
    for rule in CATALOG.applicability.values():
        slow = fhirpath_compile(rule.expression, models["r4"])
        for _ in range(2):  # the second round is answered from memory
            for env in envs():
                assert rule.evaluate(SR, dict(env)) == slow(SR, dict(env)), (rule.expression, env)


def test_suggestions_equal_the_plain_catalog() -> None:
    slow = plain(CATALOG)
    patients = [{"birthDate": b} for b in ("2014-01-01", "2008-04-02", "1996-03-10", "1940")] + [{}]
    reasons = [[], ["F20.0"], ["F32.1", "F42"], ["F10.2"], ["F50.0", "F42"], ["P72"], ["P86"], ["F84"]]
    for patient, codes, pregnant in itertools.product(patients, reasons, [None, True, False]):
        sr = {**SR, "authoredOn": "2026-04-01"}
        sr["reasonCode"] = [{"coding": [{"system": ICPC2 if c[0] == "P" else ICD10, "code": c}]} for c in codes]
        for _ in range(2):
            fast = suggest_pathways(sr, patient, [], CATALOG, date(2026, 4, 1), pregnant=pregnant)
            assert fast == suggest_pathways(sr, patient, [], slow, date(2026, 4, 1), pregnant=pregnant)


def test_values_equal_in_python_but_not_in_fhirpath_are_kept_apart() -> None:
    slow = fhirpath_compile("%x.toString()", models["r4"])
    evaluate = memoised(slow, {"x"})
    for value in (1, True, "1", [1], [True], Decimal("1.0"), Decimal("1.00"), 1.0):
        assert evaluate({}, {"x": value}) == slow({}, {"x": value}), value
    assert slow({}, {"x": 1}) != slow({}, {"x": True})


def test_a_missing_variable_raises_every_time() -> None:
    evaluate = memoised(fhirpath_compile("%x.exists()", models["r4"]), {"x"})
    for _ in range(2):
        with pytest.raises(ValueError):
            evaluate({}, {})


def test_memory_is_bounded() -> None:
    calls = []

    def count(resource: object, env: dict) -> list:
        calls.append(env["x"])
        return [env["x"] > 2]

    evaluate = memoised(count, {"x"}, max_entries=3)
    assert [evaluate({}, {"x": x}) for x in (1, 2, 3, 1, 4, 1)] == [[False], [False], [True], [False], [True], [False]]
    assert calls == [1, 2, 3, 4, 1]  # 4 pushed out the oldest (1)
