"""Core invariants (ele-1, ext-1, dom-2..5) and the resources' own invariants (native and fhirpathpy)."""

from __future__ import annotations

from decimal import Decimal

from fhir_server.core.validation import SKIPPED, validate_resource
from fhir_server.core.validation.base.invariants import invariant


def found(resource: dict) -> list[tuple[str | None, str, str | None]]:
    return [(i.expression, i.code, i.rule) for i in validate_resource(resource)]


EXT = "http://example.org/fhir/StructureDefinition/x"


def test_ext_1_value_or_children_not_both():
    assert found({"resourceType": "Patient", "extension": [{"url": EXT, "valueString": "a"}]}) == []
    nested = {"url": EXT, "extension": [{"url": "part", "valueBoolean": True}]}
    assert found({"resourceType": "Patient", "extension": [nested]}) == []
    both = {"url": EXT, "valueString": "a", "extension": [{"url": "part", "valueBoolean": True}]}
    assert found({"resourceType": "Patient", "extension": [both]}) == [("Patient.extension[0]", "invariant", "ext-1")]
    neither = {"url": EXT}
    assert found({"resourceType": "Patient", "extension": [neither]}) == [
        ("Patient.extension[0]", "invariant", "ext-1")
    ]


def test_ele_1_element_needs_value_or_children():
    assert found({"resourceType": "Patient", "maritalStatus": {"text": "gift"}}) == []
    assert found({"resourceType": "Patient", "maritalStatus": {}}) == [("Patient.maritalStatus", "invariant", "ele-1")]


def contained_patient(org: dict, reference: str | None = "#o1") -> dict:
    patient: dict = {"resourceType": "Patient", "contained": [org]}
    if reference:
        patient["managingOrganization"] = {"reference": reference}
    return patient


def test_dom_2_no_nested_contained():
    org = {"resourceType": "Organization", "id": "o1", "name": "A"}
    assert found(contained_patient(org)) == []
    org["contained"] = [{"resourceType": "Organization", "id": "o2", "name": "B"}]
    assert ("Patient.contained[0].contained", "invariant", "dom-2") in found(contained_patient(org))


def test_dom_3_contained_must_be_referenced():
    org = {"resourceType": "Organization", "id": "o1", "name": "A"}
    assert found(contained_patient(org, None)) == [("Patient.contained[0]", "invariant", "dom-3")]
    # a contained resource referring to its container ('#') satisfies dom-3
    role = {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/1"}}
    role["organization"] = {"reference": "#"}
    org_holder = {"resourceType": "Organization", "name": "A", "contained": [role]}
    assert found(org_holder) == []
    # ... and '#' names the container, whose type must fit the element
    patient_holder = {"resourceType": "Patient", "contained": [role]}
    assert found(patient_holder) == [("Patient.contained[0].organization.reference", "invalid", "reference-target")]


def test_dom_4_and_dom_5_contained_meta():
    org = {"resourceType": "Organization", "id": "o1", "name": "A", "meta": {"profile": ["http://x.no/p"]}}
    assert found(contained_patient(org)) == []
    org["meta"] = {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z", "security": [{"code": "R"}]}
    assert found(contained_patient(org)) == [
        ("Patient.contained[0].meta.lastUpdated", "invariant", "dom-4"),
        ("Patient.contained[0].meta.security", "invariant", "dom-5"),
        ("Patient.contained[0].meta.versionId", "invariant", "dom-4"),
    ]


def sr(**elements) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        **elements,
    }


def test_prr_1_order_detail_needs_code():
    detail = [{"text": "Haster"}]
    assert found(sr(orderDetail=detail, code={"text": "Henvisning"})) == []
    assert found(sr(orderDetail=detail)) == [("ServiceRequest", "invariant", "prr-1")]


def test_per_1_period_start_before_end():
    assert found(sr(occurrencePeriod={"start": "2026-12-01", "end": "2027-01-31"})) == []
    assert found(sr(occurrencePeriod={"start": "2027-12-01", "end": "2027-01-31"})) == [
        ("ServiceRequest.occurrencePeriod", "invariant", "per-1")
    ]
    # time zones are compared as instants: 10:00+01:00 is 09:00Z
    ok = {"start": "2026-11-20T10:00:00+01:00", "end": "2026-11-20T09:30:00Z"}
    assert found(sr(occurrencePeriod=ok)) == []
    bad = {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T10:30:00+01:00"}
    assert found(sr(occurrencePeriod=bad)) == [("ServiceRequest.occurrencePeriod", "invariant", "per-1")]


def test_cpt_2_contact_point_value_needs_system():
    assert found({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"}]}) == []
    assert found({"resourceType": "Patient", "telecom": [{"value": "1"}]}) == [
        ("Patient.telecom[0]", "invariant", "cpt-2")
    ]


def test_pat_1_and_org_1():
    assert found({"resourceType": "Patient", "contact": [{"name": {"family": "N"}}]}) == []
    assert found({"resourceType": "Patient", "contact": [{"gender": "male"}]}) == [
        ("Patient.contact[0]", "invariant", "pat-1")
    ]
    assert found({"resourceType": "Organization", "name": "DPS"}) == []
    assert found({"resourceType": "Organization", "active": True}) == [("Organization", "invariant", "org-1")]


def test_org_2_no_home_address():
    assert found({"resourceType": "Organization", "name": "A", "address": [{"use": "work", "city": "OSLO"}]}) == []
    assert found({"resourceType": "Organization", "name": "A", "address": [{"use": "home", "city": "OSLO"}]}) == [
        ("Organization.address[0]", "invariant", "org-2")
    ]


def test_con_4_abatement_needs_inactive_status():
    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    cond = {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "abatementDateTime": "2026-01-01"}
    cond["clinicalStatus"] = {"coding": [{"system": system, "code": "resolved"}]}
    assert found(cond) == []
    cond["clinicalStatus"] = {"coding": [{"system": system, "code": "active"}]}
    assert found(cond) == [("Condition", "invariant", "con-4")]


def test_bdl_3_transaction_entries_need_request():
    entry = {"fullUrl": "urn:uuid:3f1c2a9e-6b1d-4c55-9a0e-1b2c3d4e5f01", "resource": {"resourceType": "Patient"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [dict(entry, request={"method": "POST", "url": "Patient"})],
    }
    assert found(bundle) == []
    bundle["entry"] = [entry]
    assert found(bundle) == [("Bundle", "invariant", "bdl-3")]


def test_task_inv_1_last_modified_after_authored_on():
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "authoredOn": "2026-01-01",
        "lastModified": "2026-01-02",
    }
    assert found(task) == []
    task["lastModified"] = "2025-12-31"
    assert found(task) == [("Task", "invariant", "inv-1")]


def test_fhirpathpy_invariant_parameters_inv_1():
    ok = {"resourceType": "Parameters", "parameter": [{"name": "a", "valueString": "x"}]}
    assert found(ok) == []
    bad = {"resourceType": "Parameters", "parameter": [{"name": "a"}]}
    assert found(bad) == [("Parameters.parameter[0]", "invariant", "inv-1")]


def test_fhirpathpy_invariant_with_decimals_and_guard():
    # tim-5 'period.exists() implies period >= 0' is evaluated with fhirpathpy on a Decimal value
    ad = {"resourceType": "ActivityDefinition", "status": "draft"}
    ad["timingTiming"] = {"repeat": {"period": Decimal("1.5"), "periodUnit": "d"}}
    assert found(ad) == []
    ad["timingTiming"] = {"repeat": {"period": Decimal("-1.5"), "periodUnit": "d"}}
    assert found(ad) == [("ActivityDefinition.timingTiming.repeat", "invariant", "tim-5")]


def test_fhirpathpy_invariant_questionnaire_que_1_no_trace_output(capsys):
    q = {"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "group"}]}
    assert found(q) == [("Questionnaire.item[0]", "invariant", "que-1")]
    q["item"][0]["item"] = [{"linkId": "1.1", "type": "string"}]
    assert found(q) == []
    assert capsys.readouterr().out == ""


def test_unsupported_expressions_are_skipped_and_listed():
    assert invariant({"key": "age-1", "severity": "error", "expression": "value.hasValue()"}, "Age") is None
    assert any(key == "age-1" for key, _expr, _why in SKIPPED)
    broken = invariant({"key": "bad-1", "severity": "error", "expression": "((("}, "Patient")
    assert broken is None or broken.holds({"resourceType": "Patient"}, {"resourceType": "Patient"})
    assert any(key == "bad-1" for key, _expr, _why in SKIPPED)
    # warnings are not checked here
    assert invariant({"key": "w-1", "severity": "warning", "expression": "true"}, "Patient") is None


def test_dom_3_counts_canonical_references_but_not_free_text():
    vs = {"resourceType": "ValueSet", "id": "vs1", "status": "active"}
    q = {
        "resourceType": "Questionnaire",
        "status": "active",
        "contained": [vs],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#vs1"}],
    }
    assert found(q) == []
    q["item"][0] = {"linkId": "1", "type": "string", "text": "#vs1"}
    assert found(q) == [("Questionnaire.contained[0]", "invariant", "dom-3")]
