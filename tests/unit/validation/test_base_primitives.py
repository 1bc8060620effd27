"""Strict JSON primitives, null, empty values, cardinality (each rule: a valid and an invalid case)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server.core import jsonio
from fhir_server.core.validation import validate_resource


def found(resource: dict) -> list[tuple[str | None, str, str | None]]:
    return [(i.expression, i.code, i.rule) for i in validate_resource(resource)]


def patient(**elements) -> dict:
    return {"resourceType": "Patient", **elements}


@pytest.mark.parametrize("good", [True, False])
def test_boolean_valid(good):
    assert found(patient(active=good)) == []


@pytest.mark.parametrize("bad", ["true", 1, 0, "false"])
def test_boolean_must_be_json_boolean(bad):
    assert found(patient(active=bad)) == [("Patient.active", "value", "json-boolean")]


def test_integer_valid_and_invalid():
    assert found(patient(multipleBirthInteger=2)) == []
    assert found(patient(multipleBirthInteger="2")) == [("Patient.multipleBirthInteger", "value", "json-integer")]
    assert found(patient(multipleBirthInteger=True)) == [("Patient.multipleBirthInteger", "value", "json-integer")]
    assert found(patient(multipleBirthInteger=Decimal("2.0"))) == [
        ("Patient.multipleBirthInteger", "value", "json-integer")
    ]


def test_integer_32_bit_range():
    assert found(patient(multipleBirthInteger=2**31 - 1)) == []
    assert found(patient(multipleBirthInteger=2**31)) == [("Patient.multipleBirthInteger", "value", "integer-range")]


def test_positive_int_and_unsigned_int():
    ext = "http://example.org/x"
    ok = patient(extension=[{"url": ext, "valuePositiveInt": 1}, {"url": ext, "valueUnsignedInt": 0}])
    assert found(ok) == []
    bad = patient(extension=[{"url": ext, "valuePositiveInt": 0}, {"url": ext, "valueUnsignedInt": -1}])
    assert found(bad) == [
        ("Patient.extension[0].valuePositiveInt", "value", "integer-range"),
        ("Patient.extension[1].valueUnsignedInt", "value", "integer-range"),
    ]


def test_decimal_precision_kept_and_not_flagged():
    obs = jsonio.loads(
        b'{"resourceType":"Observation","status":"final","code":{"text":"Vekt"},'
        b'"valueQuantity":{"value":72.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}'
    )
    assert obs["valueQuantity"]["value"] == Decimal("72.50")
    assert found(obs) == []
    assert str(obs["valueQuantity"]["value"]) == "72.50"  # not changed by validation


def test_decimal_as_string_refused():
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Vekt"},
        "valueQuantity": {"value": "72.5"},
    }
    assert found(obs) == [("Observation.valueQuantity.value", "value", "json-decimal")]


def test_string_must_be_a_json_string():
    assert found(patient(name=[{"family": "Nordmann"}])) == []
    assert found(patient(name=[{"family": 7}])) == [("Patient.name[0].family", "value", "json-string")]


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_empty_or_blank_string_refused(blank):
    assert found(patient(name=[{"family": blank}])) == [("Patient.name[0].family", "value", "empty-string")]


def test_null_refused():
    assert found(patient(gender=None)) == [("Patient.gender", "structure", "json-null")]
    assert found(patient(name=[{"given": ["Ola", None]}])) == [("Patient.name[0].given[1]", "structure", "json-null")]


def test_null_allowed_in_primitive_extension_arrays():
    ext = [{"url": "http://example.org/x", "valueString": "y"}]
    ok = patient(name=[{"given": ["Ola", "Kari"], "_given": [None, {"extension": ext}]}])
    assert found(ok) == []
    # a null value is fine when its _given partner carries an extension
    ok2 = patient(name=[{"given": ["Ola", None], "_given": [None, {"extension": ext}]}])
    assert found(ok2) == []


def test_primitive_extension_problems():
    ext = [{"url": "http://example.org/x", "valueString": "y"}]
    assert found(patient(_birthDate={"extension": ext})) == []
    assert found(patient(_birthDate={})) == [("Patient._birthDate", "invariant", "ele-1")]
    assert found(patient(_name={"extension": ext})) == [("Patient._name", "structure", "unknown-element")]


def test_empty_array_and_empty_object_refused():
    assert found(patient(identifier=[])) == [("Patient.identifier", "structure", "ele-1")]
    assert found(patient(identifier=[{}])) == [("Patient.identifier[0]", "invariant", "ele-1")]
    assert found(patient(identifier=[{"id": "only-id"}])) == [("Patient.identifier[0]", "invariant", "ele-1")]
    assert found(patient(identifier=[{"value": "1"}])) == []


def test_array_versus_single_value():
    assert found(patient(gender=["male"])) == [("Patient.gender", "structure", "json-single")]
    assert found(patient(name={"family": "N"})) == [("Patient.name", "structure", "json-array")]


def test_id_length_and_pattern():
    assert found(patient(id="a" * 64)) == []
    assert found(patient(id="a" * 65)) == [("Patient.id", "value", "id-format")]
    assert found(patient(id="a b")) == [("Patient.id", "value", "id-format")]


def test_uri_without_whitespace():
    assert found(patient(identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "1"}])) == []
    assert found(patient(identifier=[{"system": "urn:x y", "value": "1"}])) == [
        ("Patient.identifier[0].system", "value", "uri-format")
    ]


def test_code_pattern():
    assert found(patient(gender="male")) == []
    assert found(patient(gender=" male")) == [("Patient.gender", "value", "code-format")]


def test_date_and_time_formats_reported_once():
    assert found(patient(birthDate="1985-03")) == []
    assert found(patient(birthDate="15.03.1985")) == [("Patient.birthDate", "value", "format-date")]
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "authoredOn": "2026-11-20T10:15:00",  # no time zone
    }
    assert found(sr) == [("ServiceRequest.authoredOn", "value", "format-dateTime")]
    sr["authoredOn"] = "2026-11-20T10:15:00+01:00"
    assert found(sr) == []


def test_required_choice_element():
    ok = {"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert found(ok) == []
    usage = {
        "resourceType": "PlanDefinition",
        "status": "draft",
        "useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "age"}}],
    }
    assert found(usage) == [("PlanDefinition.useContext[0].value", "required", "cardinality-min")]


def test_national_identity_number_is_masked_in_messages():
    issues = validate_resource(patient(identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": 15038512363}]))
    assert [(i.expression, i.rule) for i in issues] == [("Patient.identifier[0].value", "json-string")]
    assert "15038512363" not in issues[0].diagnostics and "150385*****" in issues[0].diagnostics


def test_uuid_needs_urn_prefix():
    good = "urn:uuid:3f1c2a9e-6b1d-4c55-9a0e-1b2c3d4e5f01"
    assert found(patient(extension=[{"url": "http://example.org/x", "valueUuid": good}])) == []
    bare = good.removeprefix("urn:uuid:")
    assert found(patient(extension=[{"url": "http://example.org/x", "valueUuid": bare}])) == [
        ("Patient.extension[0].valueUuid", "value", "uuid-format")
    ]
