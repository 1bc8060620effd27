"""The profile engine's fast paths agree with the general ones they stand in for.

* skipping inert elements (``profile/plan.py``) reports what the full walk reports;
* the one-pass extension scan (``profile/extension_scan.py``) answers, and fails, as the former check did;
* the hand-written invariant shapes (``profile/fhirpath_shapes.py``) agree with the general evaluator;
* short-circuiting ``or``/``and``/``implies`` and literal comparisons agree with fhirpathpy;
* the string shortcut of ``matches_fixed``/``matches_pattern`` agrees with the general comparison.
"""

from __future__ import annotations

import copy
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhir_server.core import jsonio
from fhir_server.core.validation.profile import elements, plan, slicing
from fhir_server.core.validation.profile import fhirpath as profile_fhirpath
from fhir_server.core.validation.profile.extension_scan import _surely_without_extensions, extension_holders
from fhir_server.core.validation.profile.fhirpath import _Parser
from fhir_server.core.validation.profile.fhirpath_shapes import compile_shape
from fhir_server.core.validation.profile.model import _norm, matches_fixed, matches_pattern
from fhir_server.core.validation.profile.validator import ProfileValidator
from fhir_server.domain.referral.intake import PROFILES
from tests.json_mutation import mutants, spots

BUNDLE = Path(__file__).resolve().parents[2] / "data" / "referral-transaction.json"


def _claimed_bundle() -> dict:
    bundle = jsonio.loads(BUNDLE.read_bytes())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in PROFILES:
            resource.setdefault("meta", {})["profile"] = [PROFILES[resource["resourceType"]]]
    return bundle


_VALUES: list[Any] = [
    None,
    "",
    "x",
    1,
    True,
    [],
    {},
    [None],
    {"id": "a"},
    "urn:oid:2.16.578.1.12.4.1.4.1",
    "urn:oid:2.16.578.1.12.4.1.4.2",
    "urn:oid:2.16.578.1.12.4.1.2",
    "urn:oid:2.16.578.1.12.4.1.4.4",
    "HNR",
    ["urn:oid:2.16.578.1.12.4.1.4.1"],
    {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "974760673"},
    {"url": "http://x", "valueString": "y"},
    {"extension": [{"url": "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode", "valueString": "1"}]},
    {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110", "code": "A"}]},
    "Patient/1",
    {"reference": "#x"},
]
_KEYS = ["extension", "_district", "identifier", "system", "code", "meta", "foo", "valueString", "_given", "url"]


def _mutate(rng: random.Random, doc: dict) -> None:
    """One random deletion, replacement or addition."""
    holder, key = rng.choice(spots(doc))
    op = rng.random()
    if op < 0.3:
        del holder[key]
    elif op < 0.7:
        holder[key] = copy.deepcopy(rng.choice(_VALUES))
    elif isinstance(holder[key], dict):
        holder[key][rng.choice(_KEYS)] = copy.deepcopy(rng.choice(_VALUES))


def _mutants(doc: dict, count: int, seed: int) -> list[dict]:
    """``count`` variants of ``doc``, each with a few random deletions, replacements and additions."""
    return mutants(doc, count, seed, [1, 2, 4], _mutate)


def _issues(validator: ProfileValidator, resource: dict) -> list[tuple]:
    return [
        (i.severity, i.code, i.expression, i.diagnostics, i.diagnostics_nb, i.rule)
        for i in validator.validate(resource)
    ]


def _without_inert_skipping(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(plan, "child_inert", lambda child: False)
    for module in (elements, slicing):  # where the walk asks
        monkeypatch.setattr(module, "is_inert", lambda node: False)


def _without_slice_tables(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ProfileValidator, "_slice_table", lambda self, node, discriminators: None)


@pytest.mark.parametrize("general", [_without_inert_skipping, _without_slice_tables])
def test_fast_path_reports_what_the_general_walk_reports(general, nobasis_registry, monkeypatch) -> None:
    """Skipping inert elements, and finding slices by lookup, change nothing in what is reported."""
    bundle = _claimed_bundle()
    inputs = [bundle, *(e["resource"] for e in bundle["entry"])]
    inputs += _mutants(bundle, 200, seed=3)
    validator = ProfileValidator(nobasis_registry)
    fast = [_issues(validator, r) for r in inputs]
    general(monkeypatch)
    validator = ProfileValidator(nobasis_registry)  # compiled afresh: nothing of the fast run kept
    full = [_issues(validator, r) for r in inputs]
    assert fast == full
    rules = {issue[5] for issues in fast for issue in issues}
    assert {"slice-min", "profile-min"} <= rules, "the mutants should break profile rules"


# -- the extension scan ------------------------------------------------------------------------


def _former_has_extensions(node: Any) -> bool:
    """The check ``extension_holders`` replaced, kept here as the reference (an empty key is no extension)."""
    if isinstance(node, list):
        return any(_former_has_extensions(item) for item in node)
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key in ("extension", "modifierExtension") or str(key).startswith("_"):
            return True
        if isinstance(value, dict | list) and key not in ("contained", "resource") and _former_has_extensions(value):
            return True
    return False


def _outcome(fn, node: Any) -> object:
    try:
        return fn(node)
    except Exception as exc:  # the kind of failure is what is compared
        return type(exc).__name__


def _holders_reference(node: Any, out: set[int]) -> bool:
    """Objects with an extension key at or below them (nested resources left out)."""
    found = False
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        own = isinstance(node, dict) and (key in ("extension", "modifierExtension") or str(key)[:1] == "_")
        below = isinstance(value, dict | list) and key not in ("contained", "resource")
        if own or (below and _holders_reference(value, out)):
            found = True
    if found and isinstance(node, dict):
        out.add(id(node))
    return found


@pytest.mark.parametrize("seed", range(4))
def test_extension_scan_answers_and_fails_as_the_former_check(seed: int) -> None:
    bundle = _claimed_bundle()
    trees = [bundle, *(e["resource"] for e in bundle["entry"])]
    trees += _mutants(bundle, 150, seed=seed)
    rng = random.Random(seed)
    for tree in list(trees[:40]):  # empty keys here and there (base validation reports them; no crash here)
        d = copy.deepcopy(tree)
        target = d["entry"][rng.randrange(len(d["entry"]))] if "entry" in d else d
        target[""] = rng.choice(["x", {"extension": []}])
        trees.append(d)
    trees += [{"a": {"": 1}, "extension": []}, {"extension": [], "a": {"": 1}}, {"_x": {}}, [{"b": [[{"_y": 1}]]}]]
    for tree in trees:
        expected = _outcome(_former_has_extensions, tree)
        got = _outcome(lambda t: extension_holders(t)[0], tree)
        assert got == expected, json.dumps(tree, default=str)[:300]
        if expected is True:
            reference: set[int] = set()
            _holders_reference(tree, reference)
            holders = extension_holders(tree)[1]
            assert holders is not None and reference <= holders  # every object the checks must enter


def test_extension_prefilter_says_none_only_where_the_walk_finds_none() -> None:
    bundle = _claimed_bundle()
    trees = [*(e["resource"] for e in bundle["entry"]), *_mutants(bundle["entry"][0]["resource"], 200, seed=9)]
    trees += [{"a": {"": 1}}, {"a": "_x"}, {"a": ['"_x"']}, {"a": Decimal("1.5")}, {1: "x"}, {"a": {"b": {"_c": 1}}}]
    cleared = 0
    for tree in trees:
        if _surely_without_extensions(tree):
            cleared += 1
            assert _outcome(_former_has_extensions, tree) is False, tree
    assert cleared > 20


def test_extension_scan_does_not_prune_around_keys_that_are_not_strings() -> None:
    assert extension_holders({"extension": [], "a": {1: "x"}}) == (True, None)


# -- invariant shapes --------------------------------------------------------------------------

SHAPES = [
    "identifier.where(system='urn:oid:2.16.578.1.12.4.1.4.1' or system='urn:oid:2.16.578.1.12.4.1.4.2' "
    "or system='HNR').exists()",
    "identifier.where(system='x').exists()",
    "coding.where(system = 'a' or system = 'b').exists()",
    "address.where(district.extension('http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode')"
    ".exists()).exists()",
    "name.where(given.extension('http://e/x').exists()).exists()",
]
NOT_SHAPES = [
    "identifier.where(system='a' or value='b').exists()",
    "Patient.where(system='a').exists()",
    "identifier.where(system='a').exists().not()",
    "identifier.where(system='a' and system='b').exists()",
    "address.where(district.extension('u').exists()).count()",
]

_SYSTEMS = ["urn:oid:2.16.578.1.12.4.1.4.1", "HNR", "x", "a", "b", Decimal("1"), None, ["x"], {"x": 1}]


def _shape_instances(seed: int) -> list[Any]:
    rng = random.Random(seed)
    ext = {"url": "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode", "valueString": "1"}
    out: list[Any] = [None, "text", 3, {}, {"identifier": []}, {"identifier": {"system": "x"}}]
    for _ in range(300):
        item: dict = {}
        for key in ("system", "_system", "systemCode", "value"):
            if rng.random() < 0.4:
                item[key] = rng.choice(_SYSTEMS) if key != "_system" else rng.choice([{"id": "1"}, None, [None]])
        holder = rng.choice(
            [
                {"extension": [ext]},
                {"extension": [{"url": "http://e/x"}]},
                {"extension": []},
                {"extension": ext},
                {"extension": "s"},
                {"id": "d"},
                None,
            ]
        )
        district = rng.choice(["Oslo", None, ["a", "b"]])
        address: dict = {}
        if district is not None:
            address["district"] = district
        if holder is not None:
            address["_district"] = holder if not isinstance(district, list) else [holder, None]
        many = rng.random() < 0.3
        out.append(
            {
                "identifier": [item, copy.deepcopy(item)] if many else rng.choice([[item], item]),
                "coding": [item],
                "address": [address] if rng.random() < 0.8 else address,
                "name": [{"given": ["Kari"], "_given": [holder]}] if holder is not None else [{"given": ["Kari"]}],
            }
        )
    return out


def _general(expression: str):  # type: ignore[no-untyped-def]
    fn = _Parser(expression).parse()
    return lambda value: fn([value] if value is not None else [], value)


@pytest.mark.parametrize("expression", SHAPES)
def test_invariant_shapes_agree_with_the_general_evaluator(expression: str) -> None:
    shape = compile_shape(expression)
    assert shape is not None
    general = _general(expression)
    for instance in _shape_instances(seed=len(expression)):
        assert _outcome(shape, instance) == _outcome(general, instance), instance


@pytest.mark.parametrize("expression", NOT_SHAPES)
def test_other_expressions_are_left_to_the_general_evaluator(expression: str) -> None:
    assert compile_shape(expression) is None


SHORT_CIRCUIT = [
    "gender = 'female' or gender = 'male'",
    "gender = 'male' or gender = 'female'",
    "gender = 'male' and gender = 'female'",
    "gender = 'female' and birthDate = '1980'",
    "gender = 'male' implies birthDate = '1980'",
    "gender = 'female' implies birthDate = '1980'",
    "(gender = 'female' or name.given = 'x') and true",
    "gender = 'female' or name.given",
    "gender != 'x' or 1 = 1",
]


_PATIENTS = [
    {"resourceType": "Patient", "gender": "female", "birthDate": "1980", "name": [{"given": ["A", "B"]}]},
    {"resourceType": "Patient", "gender": "male", "name": [{"given": ["x"]}]},
    {"resourceType": "Patient", "gender": "female", "name": [{"given": ["x"]}]},
    {"resourceType": "Patient"},
]


@pytest.mark.parametrize("expression", SHORT_CIRCUIT)
def test_logic_shortcuts_agree_with_the_evaluation_of_both_sides(expression: str, monkeypatch) -> None:
    shortcut = [_outcome(_general(expression), p) for p in _PATIENTS]
    monkeypatch.setattr(profile_fhirpath, "_nothrow", lambda fn: False)  # no side may be skipped
    both_sides = [_outcome(_general(expression), p) for p in _PATIENTS]
    assert shortcut == both_sides
    for patient, fast in zip(_PATIENTS, shortcut, strict=True):
        fhirpathpy = _outcome(lambda p: evaluate(p, expression, model=models["r4"]), patient)
        if not isinstance(fast, str) and not isinstance(fhirpathpy, str):  # neither declined nor failed
            assert fast == fhirpathpy, (expression, patient)


@pytest.mark.parametrize(
    "instance",
    ["a", "b", "", 1, 1.0, Decimal("1"), True, None, {"a": "b"}, ["a"], "1", Decimal("NaN")],
)
@pytest.mark.parametrize("wanted", ["a", "1", ""])
def test_string_shortcut_of_fixed_and_pattern(instance: Any, wanted: str) -> None:
    assert matches_fixed(instance, wanted) == (_norm(instance) == _norm(wanted))
    assert matches_pattern(instance, wanted) == (_norm(instance) == _norm(wanted))
