"""Bounds of one request (issue 15, finding 7): numbers and text refused at parse time naming the element,
resource size bounds, search parameter bounds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError
from fhir_server.core.limits import ResourceLimits, number_problem, size_problem
from fhir_server.core.search.query import SearchLimits
from fhir_server.core.text import clean, clean_json


@pytest.mark.parametrize(
    "literal", ["72.50", "123456789012345678", "-0.000000000000000000000000000001", "1e307", "0e999999"]
)
def test_numbers_within_r4_decimals(literal):
    assert number_problem(literal) is None
    assert jsonio.loads(f'{{"a":{literal}}}')["a"] == Decimal(literal)


@pytest.mark.parametrize(
    "literal", ["1e999999", "1e308", "1e-308", "1234567890123456789", "1.234567890123456789", "1" * 5000]
)
def test_numbers_beyond_r4_decimals_name_their_element(literal):
    with pytest.raises(jsonio.JsonError) as refused:
        jsonio.loads('{"resourceType":"Observation","component":[{},{"valueQuantity":{"value":' + literal + "}}]}")
    assert refused.value.element == "Observation.component[1].valueQuantity.value"


@pytest.mark.parametrize("escape", ["\\u0000", "\\u0008", "\\u000b", "\\u001F", "\\udc00", "\\ufffe"])
def test_forbidden_characters_name_their_element(escape):
    with pytest.raises(jsonio.JsonError) as refused:
        jsonio.loads('{"resourceType":"Patient","name":[{"given":["ok","a' + escape + 'b"]}]}')
    assert refused.value.element == "Patient.name[0].given[1]"


def test_text_that_only_looks_suspect_is_kept():
    assert jsonio.loads('{"a":"\\\\u0000 \\t \\n \\ud83d\\ude00"}') == {"a": "\\u0000 \t \n \U0001f600"}


def test_clean_replaces_forbidden_characters():
    assert clean("a\x00b\ud800") == "a\ufffdb\ufffd"
    assert clean_json({"k\x01": ["x\x1f", 1]}) == {"k\ufffd": ["x\ufffd", 1]}


def test_size_bounds_name_the_element():
    limits = ResourceLimits(max_elements=1000, max_repeats=10, max_string_length=8, max_depth=6)
    many = {"resourceType": "Patient", "name": [{"given": ["a"] * 11}]}
    assert size_problem(many, limits)[0] == "Patient.name[0].given"
    assert size_problem({"resourceType": "Patient", "gender": "something long"}, limits)[0] == "Patient.gender"
    assert size_problem({"resourceType": "Binary", "data": "x" * 100}, limits) is None  # base64: the body limit
    deep = {"resourceType": "Patient", "extension": [{"extension": [{"extension": [{"url": "u"}]}]}]}
    assert size_problem(deep, limits)[1].startswith("the content is nested more than 6")
    assert size_problem({"resourceType": "Patient", "name": [{"given": ["a"] * 10}]}, limits) is None


def test_search_limits_name_the_parameter():
    limits = SearchLimits(max_parameters=10, max_repeats=3, max_values=8)
    limits.check([("name", "a"), ("name:exact", "b"), ("name", "c,d")])
    with pytest.raises(FhirError) as refused:
        limits.check([("name", "a"), ("name:exact", "b"), ("name", "c"), ("name.x", "d")])
    assert refused.value.issues[0].expression == "name"
    with pytest.raises(FhirError) as refused:
        limits.check([("_id", "1,2,3,4,5,6,7,8,9")])
    assert refused.value.issues[0].expression == "_id"
    with pytest.raises(FhirError) as refused:
        limits.check([("family", "Nord\x00")])
    assert refused.value.status == 400
