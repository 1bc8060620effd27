"""Required bindings: code, Coding and CodeableConcept against expansions of the bundled value sets."""

from __future__ import annotations

from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.base.bindings import _include_pairs, check_coding, expansion

GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"


def found(resource: dict) -> list[tuple[str | None, str, str | None]]:
    return [(i.expression, i.code, i.rule) for i in validate_resource(resource)]


def test_code_in_required_value_set():
    assert found({"resourceType": "Patient", "gender": "female"}) == []


def test_code_not_in_required_value_set_message():
    issues = validate_resource({"resourceType": "Patient", "gender": "mann"})
    assert [(i.expression, i.code, i.rule) for i in issues] == [("Patient.gender", "code-invalid", "binding-required")]
    assert issues[0].diagnostics == (
        "Patient.gender: 'mann' is not a code of the required value set "
        "http://hl7.org/fhir/ValueSet/administrative-gender (allowed: male, female, other, unknown)"
    )
    assert issues[0].diagnostics_nb and "påkrevde verdisettet" in issues[0].diagnostics_nb


def test_code_inside_data_type_and_bundle():
    ok = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "+4791234567"}]}
    assert found(ok) == []
    bad = {"resourceType": "Patient", "telecom": [{"system": "mobil", "value": "+4791234567"}]}
    assert found(bad) == [("Patient.telecom[0].system", "code-invalid", "binding-required")]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}
    assert found(bundle) == []
    bundle["type"] = "samling"
    assert found(bundle) == [("Bundle.type", "code-invalid", "binding-required")]


def test_status_of_service_request():
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert found(sr) == []
    sr["status"] = "bogus"
    assert found(sr) == [("ServiceRequest.status", "code-invalid", "binding-required")]


def test_codeable_concept_needs_one_coding_from_value_set():
    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    cond = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": {
            "coding": [{"system": "http://example.org/local", "code": "x"}, {"system": system, "code": "active"}]
        },
    }
    assert found(cond) == []
    cond["clinicalStatus"] = {
        "coding": [{"system": system, "code": "aktiv"}, {"system": "http://example.org/l", "code": "x"}]
    }
    assert found(cond) == [("Condition.clinicalStatus", "code-invalid", "binding-required")]


def test_coding_with_wrong_system_is_refused():
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://example.org/x", "code": "AMB"},
    }
    # Encounter.class is extensible in R4, so no binding issue: only the required ones are checked
    assert found(enc) == []
    cond = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "verificationStatus": {"coding": [{"system": "http://example.org/x", "code": "confirmed"}]},
    }
    assert found(cond) == [("Condition.verificationStatus", "code-invalid", "binding-required")]


def test_external_code_systems_are_not_refused():
    # mime types (urn:ietf:bcp:13) are not bundled: the check is skipped rather than refusing
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/x-made-up"}}],
    }
    assert found(doc) == []
    assert not expansion("http://hl7.org/fhir/ValueSet/mimetypes").complete


def test_units_of_time_uses_enumerated_ucum_codes():
    exp = expansion("http://hl7.org/fhir/ValueSet/units-of-time")
    assert exp.complete and "wk" in exp.codes
    timing = {"repeat": {"period": 1, "periodUnit": "week"}}
    pd = {"resourceType": "ActivityDefinition", "status": "draft", "timingTiming": timing}
    assert found(pd) == [("ActivityDefinition.timingTiming.repeat.periodUnit", "code-invalid", "binding-required")]
    timing["repeat"]["periodUnit"] = "wk"
    assert found(pd) == []


def test_expansion_includes_nested_concepts_and_is_cached():
    exp = expansion(GENDER_VS)
    assert exp.ordered == ("male", "female", "other", "unknown")
    assert expansion(GENDER_VS) is exp
    intents = expansion("http://hl7.org/fhir/ValueSet/request-intent")
    assert "original-order" in intents.codes  # nested under 'order' in the code system
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "original-order",
        "subject": {"reference": "Patient/1"},
    }
    assert found(sr) == []
    sr["intent"] = "ordre"
    assert found(sr) == [("ServiceRequest.intent", "code-invalid", "binding-required")]


def test_value_set_imports_and_filters():
    pairs, complete = _include_pairs({"valueSet": [GENDER_VS]}, frozenset())
    assert complete and ("http://hl7.org/fhir/administrative-gender", "male") in pairs
    _pairs, complete = _include_pairs({"system": "http://snomed.info/sct", "filter": [{"op": "is-a"}]}, frozenset())
    assert not complete


def test_coding_checks_system_and_code():
    system = "http://hl7.org/fhir/administrative-gender"
    assert check_coding({"system": system, "code": "male"}, GENDER_VS, "X.coding") is None
    assert check_coding({"code": "male"}, GENDER_VS, "X.coding") is None
    wrong_code = check_coding({"system": system, "code": "mann"}, GENDER_VS, "X.coding")
    assert wrong_code is not None and (wrong_code.expression, wrong_code.code) == ("X.coding", "code-invalid")
    wrong_system = check_coding({"system": "http://example.org/g", "code": "male"}, GENDER_VS, "X.coding")
    assert wrong_system is not None and wrong_system.rule == "binding-required"
    # incomplete expansions (external systems) never refuse
    mime = "http://hl7.org/fhir/ValueSet/mimetypes"
    assert check_coding({"system": "urn:ietf:bcp:13", "code": "x/y"}, mime, "X.coding") is None
