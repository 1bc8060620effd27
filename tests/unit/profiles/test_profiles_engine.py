"""Each rule of the profile engine, with a valid and an invalid instance (test profiles on R4 core)."""

from __future__ import annotations

import pytest
from profiles_testkit import BASE, el, errors, profile, rules, validator

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR = "urn:oid:2.16.578.1.12.4.1.4.2"


def patient(**kw) -> dict:
    return {"resourceType": "Patient", **kw}


# -- cardinality ----------------------------------------------------------------------------------


def test_cardinality_min_max_top_level(registry):
    sd = profile("card", "Patient", el("Patient.birthDate", min=1), el("Patient.name", max="1"))
    v = validator(registry, sd)
    assert v.validate(patient(birthDate="2000-01-01", name=[{"family": "A"}]), [sd["url"]]) == []
    issues = v.validate(patient(name=[{"family": "A"}, {"family": "B"}]), [sd["url"]])
    assert rules(issues) == ["profile-max", "profile-min"]
    by_rule = {i.rule: i for i in issues}
    assert by_rule["profile-min"].expression == "Patient.birthDate"
    assert by_rule["profile-max"].expression == "Patient.name"
    assert by_rule["profile-min"].diagnostics_nb


def test_cardinality_nested_level(registry):
    sd = profile("nested", "Patient", el("Patient.identifier.system", min=1), el("Patient.contact.name", min=1))
    v = validator(registry, sd)
    good = patient(identifier=[{"system": FNR, "value": "1"}], contact=[{"name": {"family": "X"}}])
    assert v.validate(good, [sd["url"]]) == []
    bad = patient(identifier=[{"system": FNR, "value": "1"}, {"value": "2"}], contact=[{"gender": "male"}])
    issues = v.validate(bad, [sd["url"]])
    assert sorted(i.expression for i in errors(issues)) == ["Patient.contact[0].name", "Patient.identifier[1].system"]


def test_prohibited_element_max_zero(registry):
    sd = profile("nophoto", "Patient", el("Patient.photo", max="0"))
    v = validator(registry, sd)
    assert v.validate(patient(), [sd["url"]]) == []
    assert rules(v.validate(patient(photo=[{"contentType": "image/png"}]), [sd["url"]])) == ["profile-max"]


# -- fixed and pattern ----------------------------------------------------------------------------


def test_fixed_value(registry):
    sd = profile(
        "fixed", "Patient", el("Patient.gender", fixedCode="female"), el("Patient.identifier.system", fixedUri=FNR)
    )
    v = validator(registry, sd)
    assert v.validate(patient(gender="female", identifier=[{"system": FNR}]), [sd["url"]]) == []
    issues = v.validate(patient(gender="male", identifier=[{"system": DNR}]), [sd["url"]])
    assert rules(issues) == ["profile-fixed", "profile-fixed"]
    assert {i.expression for i in issues} == {"Patient.gender", "Patient.identifier[0].system"}


def test_fixed_complex_value_is_exact(registry):
    fixed = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}
    sd = profile("fixedcc", "Patient", el("Patient.maritalStatus", fixedCodeableConcept=fixed))
    v = validator(registry, sd)
    assert v.validate(patient(maritalStatus=fixed), [sd["url"]]) == []
    extra = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}], "text": "more"}
    assert rules(v.validate(patient(maritalStatus=extra), [sd["url"]])) == ["profile-fixed"]


def test_pattern_allows_more_but_not_different(registry):
    pattern = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}
    sd = profile("pattern", "Patient", el("Patient.maritalStatus", patternCodeableConcept=pattern))
    v = validator(registry, sd)
    richer = {
        "coding": [
            {"system": "http://example.org/other", "code": "x"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"},
        ],
        "text": "gift",
    }
    assert v.validate(patient(maritalStatus=richer), [sd["url"]]) == []
    wrong = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "S"}]}
    assert rules(v.validate(patient(maritalStatus=wrong), [sd["url"]])) == ["profile-pattern"]


# -- slicing --------------------------------------------------------------------------------------


def identifier_slices(rules_: str, **slice_kw) -> dict:
    return profile(
        f"ids-{rules_}",
        "Patient",
        el("Patient.identifier", slicing={"discriminator": [{"type": "value", "path": "system"}], "rules": rules_}),
        el("Patient.identifier:fnr", **({"min": 1, "max": "1"} | slice_kw)),
        el("Patient.identifier:fnr.system", min=1, fixedUri=FNR),
        el("Patient.identifier:dnr", min=0, max="1"),
        el("Patient.identifier:dnr.system", min=1, fixedUri=DNR),
    )


def test_value_discriminator_slice_min_and_max(registry):
    sd = identifier_slices("open")
    v = validator(registry, sd)
    assert v.validate(patient(identifier=[{"system": FNR, "value": "1"}]), [sd["url"]]) == []
    missing = v.validate(patient(identifier=[{"system": DNR, "value": "1"}]), [sd["url"]])
    assert rules(missing) == ["slice-min"]
    assert "'fnr'" in missing[0].diagnostics and missing[0].expression == "Patient.identifier"
    twice = v.validate(patient(identifier=[{"system": FNR, "value": "1"}, {"system": FNR, "value": "2"}]), [sd["url"]])
    assert rules(twice) == ["slice-max"]


def test_open_slicing_accepts_other_items(registry):
    sd = identifier_slices("open")
    v = validator(registry, sd)
    ok = patient(identifier=[{"system": FNR, "value": "1"}, {"system": "http://local", "value": "x"}])
    assert v.validate(ok, [sd["url"]]) == []


def test_closed_slicing_rejects_other_items(registry):
    sd = identifier_slices("closed")
    v = validator(registry, sd)
    assert v.validate(patient(identifier=[{"system": FNR, "value": "1"}, {"system": DNR}]), [sd["url"]]) == []
    issues = v.validate(patient(identifier=[{"system": FNR, "value": "1"}, {"system": "http://local"}]), [sd["url"]])
    assert rules(issues) == ["slice-closed"]
    assert issues[0].expression == "Patient.identifier[1]"


def test_open_at_end_slicing(registry):
    sd = identifier_slices("openAtEnd")
    v = validator(registry, sd)
    at_end = patient(identifier=[{"system": FNR, "value": "1"}, {"system": "http://local"}])
    assert v.validate(at_end, [sd["url"]]) == []
    before = patient(identifier=[{"system": "http://local"}, {"system": FNR, "value": "1"}])
    assert rules(v.validate(before, [sd["url"]])) == ["slice-open-at-end"]


def test_pattern_discriminator(registry):
    referral = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}
    sd = profile(
        "cat",
        "ServiceRequest",
        el(
            "ServiceRequest.category",
            slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"},
        ),
        el("ServiceRequest.category:referral", min=1, max="1", patternCodeableConcept=referral),
    )
    v = validator(registry, sd)
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    good = dict(
        sr, category=[{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Referral"}]}]
    )
    assert v.validate(good, [sd["url"]]) == []
    bad = dict(sr, category=[{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}])
    assert rules(v.validate(bad, [sd["url"]])) == ["slice-min"]


def test_type_discriminator(registry):
    sd = profile(
        "comp",
        "Observation",
        el("Observation.component", slicing={"discriminator": [{"type": "type", "path": "value"}], "rules": "closed"}),
        el("Observation.component:quantity", min=1, max="1"),
        el("Observation.component:quantity.value[x]", type=[{"code": "Quantity"}]),
        el("Observation.component:text", min=0, max="*"),
        el("Observation.component:text.value[x]", type=[{"code": "string"}]),
    )
    v = validator(registry, sd)
    code = {"text": "x"}
    obs = {"resourceType": "Observation", "status": "final", "code": code}
    good = dict(obs, component=[{"code": code, "valueQuantity": {"value": 1}}, {"code": code, "valueString": "a"}])
    assert v.validate(good, [sd["url"]]) == []
    bad = dict(obs, component=[{"code": code, "valueString": "a"}, {"code": code, "valueBoolean": True}])
    assert rules(v.validate(bad, [sd["url"]])) == ["slice-closed", "slice-min"]


def test_profile_discriminator(registry):
    with_birth = profile("with-birth", "Patient", el("Patient.birthDate", min=1))
    sd = profile(
        "bundle",
        "Bundle",
        el("Bundle.entry", slicing={"discriminator": [{"type": "profile", "path": "resource"}], "rules": "open"}),
        el("Bundle.entry:patient", min=1, max="1"),
        el("Bundle.entry:patient.resource", type=[{"code": "Patient", "profile": [with_birth["url"]]}]),
    )
    v = validator(registry, with_birth, sd)
    good = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient(birthDate="2000-01-01")}]}
    assert v.validate(good, [sd["url"]]) == []
    bad = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient(gender="male")}]}
    assert rules(v.validate(bad, [sd["url"]])) == ["slice-min"]


def test_exists_discriminator(registry):
    sd = profile(
        "assigned",
        "Patient",
        el("Patient.identifier", slicing={"discriminator": [{"type": "exists", "path": "assigner"}], "rules": "open"}),
        el("Patient.identifier:assigned", min=1, max="1"),
        el("Patient.identifier:assigned.assigner", min=1),
    )
    v = validator(registry, sd)
    good = patient(identifier=[{"value": "1", "assigner": {"display": "Sykehuset"}}, {"value": "2"}])
    assert v.validate(good, [sd["url"]]) == []
    assert rules(v.validate(patient(identifier=[{"value": "2"}]), [sd["url"]])) == ["slice-min"]


# -- types and references -------------------------------------------------------------------------


def test_choice_type_restricted(registry):
    sd = profile("qty", "Observation", el("Observation.value[x]", type=[{"code": "Quantity"}]))
    v = validator(registry, sd)
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "vekt"}}
    assert v.validate(dict(obs, valueQuantity={"value": 72.5, "unit": "kg"}), [sd["url"]]) == []
    issues = v.validate(dict(obs, valueString="72.5 kg"), [sd["url"]])
    assert rules(issues) == ["profile-type"]
    assert issues[0].expression == "Observation.valueString"


def test_reference_target_type(registry):
    sd = profile(
        "subj",
        "ServiceRequest",
        el(
            "ServiceRequest.subject",
            type=[{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}],
        ),
    )
    v = validator(registry, sd)
    sr = {"resourceType": "ServiceRequest", "status": "active", "intent": "order"}
    assert v.validate(dict(sr, subject={"reference": "Patient/1"}), [sd["url"]]) == []
    assert v.validate(dict(sr, subject={"reference": "http://x.no/fhir/Patient/1/_history/2"}), [sd["url"]]) == []
    issues = v.validate(dict(sr, subject={"reference": "Group/7"}), [sd["url"]])
    assert rules(issues) == ["ref-target-type"]
    assert issues[0].expression == "ServiceRequest.subject"


def test_reference_target_profile_with_resolver_and_contained(registry):
    with_birth = profile("with-birth", "Patient", el("Patient.birthDate", min=1))
    sd = profile(
        "subj2",
        "ServiceRequest",
        el("ServiceRequest.subject", type=[{"code": "Reference", "targetProfile": [with_birth["url"]]}]),
    )
    v = validator(registry, with_birth, sd)
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "urn:uuid:1"},
    }
    good_target = patient(id="1", birthDate="2000-01-01")
    assert v.validate(sr, [sd["url"]], resolver={"urn:uuid:1": good_target}.get) == []
    issues = v.validate(sr, [sd["url"]], resolver={"urn:uuid:1": patient(id="1")}.get)
    assert rules(issues) == ["ref-target-profile"]
    contained = dict(sr, contained=[patient(id="p")], subject={"reference": "#p"})
    assert rules(v.validate(contained, [sd["url"]])) == ["ref-target-profile"]
    contained_ok = dict(sr, contained=[patient(id="p", birthDate="2001-02-03")], subject={"reference": "#p"})
    assert v.validate(contained_ok, [sd["url"]]) == []


# -- bindings -------------------------------------------------------------------------------------

VS = {
    "resourceType": "ValueSet",
    "url": "http://example.org/fhir/ValueSet/colours",
    "status": "active",
    "compose": {"include": [{"system": "http://example.org/colour", "concept": [{"code": "red"}, {"code": "blue"}]}]},
}


@pytest.mark.parametrize("strength, severity", [("required", "error"), ("extensible", "warning")])
def test_binding_strengths(registry, strength, severity):
    sd = profile(
        f"bind-{strength}",
        "Patient",
        el("Patient.maritalStatus", binding={"strength": strength, "valueSet": VS["url"]}),
    )
    v = validator(registry, VS, sd)
    good = patient(maritalStatus={"coding": [{"system": "http://example.org/colour", "code": "red"}]})
    assert v.validate(good, [sd["url"]]) == []
    bad = patient(maritalStatus={"coding": [{"system": "http://example.org/colour", "code": "green"}]})
    issues = v.validate(bad, [sd["url"]])
    assert [(i.severity, i.rule) for i in issues] == [(severity, f"binding-{strength}")]
    assert "green" in issues[0].diagnostics


def test_preferred_binding_is_not_checked(registry):
    sd = profile(
        "bind-pref", "Patient", el("Patient.maritalStatus", binding={"strength": "preferred", "valueSet": VS["url"]})
    )
    v = validator(registry, VS, sd)
    assert v.validate(patient(maritalStatus={"coding": [{"system": "x", "code": "green"}]}), [sd["url"]]) == []


def test_required_binding_on_code_and_core_value_set(registry):
    sd = profile(
        "bind-code",
        "ServiceRequest",
        el(
            "ServiceRequest.priority",
            binding={"strength": "required", "valueSet": "http://example.org/fhir/ValueSet/prio"},
        ),
    )
    prio = {
        "resourceType": "ValueSet",
        "url": "http://example.org/fhir/ValueSet/prio",
        "status": "active",
        "compose": {"include": [{"system": "http://hl7.org/fhir/request-priority", "concept": [{"code": "routine"}]}]},
    }
    v = validator(registry, prio, sd)
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert v.validate(dict(sr, priority="routine"), [sd["url"]]) == []
    assert rules(v.validate(dict(sr, priority="asap"), [sd["url"]])) == ["binding-required"]


def test_oid_binding_means_all_codes_of_that_code_system(registry):
    cs = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/CodeSystem/9060",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.578.1.12.4.1.1.9060"}],
        "status": "active",
        "content": "complete",
        "concept": [{"code": "LE"}, {"code": "SP"}],
    }
    sd = profile(
        "bind-oid",
        "Practitioner",
        el(
            "Practitioner.qualification.code",
            binding={"strength": "required", "valueSet": "urn:oid:2.16.578.1.12.4.1.1.9060"},
        ),
    )
    v = validator(registry, cs, sd)
    good = {
        "resourceType": "Practitioner",
        "qualification": [{"code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9060", "code": "LE"}]}}],
    }
    assert v.validate(good, [sd["url"]]) == []
    bad = {
        "resourceType": "Practitioner",
        "qualification": [{"code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9060", "code": "XX"}]}}],
    }
    assert rules(v.validate(bad, [sd["url"]])) == ["binding-required"]


# -- invariants -----------------------------------------------------------------------------------


def test_invariant_error_and_warning(registry):
    sd = profile(
        "inv",
        "Patient",
        el(
            "Patient",
            constraint=[
                {"key": "t-1", "severity": "error", "human": "needs a name", "expression": "name.exists()"},
                {"key": "t-2", "severity": "warning", "human": "should have gender", "expression": "gender.exists()"},
            ],
        ),
    )
    sd["differential"]["element"] = sd["differential"]["element"][1:]  # the root element carries the constraints
    v = validator(registry, sd)
    assert v.validate(patient(name=[{"family": "A"}], gender="other"), [sd["url"]]) == []
    issues = v.validate(patient(), [sd["url"]])
    assert [(i.severity, i.rule, i.expression) for i in issues] == [
        ("error", "t-1", "Patient"),
        ("warning", "t-2", "Patient"),
    ]


def test_invariant_outside_fast_subset_uses_fhirpathpy(registry):
    sd = profile(
        "inv-slow",
        "Patient",
        el(
            "Patient.birthDate",
            constraint=[
                {"key": "t-3", "severity": "error", "human": "not in the future", "expression": "$this <= today()"}
            ],
        ),
    )
    v = validator(registry, sd)
    assert v.validate(patient(birthDate="1985-03-15"), [sd["url"]]) == []
    assert rules(v.validate(patient(birthDate="2999-01-01"), [sd["url"]])) == ["t-3"]


def test_invariant_on_primitive_value_keyword(registry):
    """Helsenorge writes invariants on primitives as ``value='routine' or ...`` (as the HL7 validator reads them)."""
    sd = profile(
        "inv-prim",
        "ServiceRequest",
        el(
            "ServiceRequest.priority",
            constraint=[
                {
                    "key": "t-4",
                    "severity": "error",
                    "human": "routine or urgent",
                    "expression": "value='routine' or value='urgent'",
                }
            ],
        ),
    )
    v = validator(registry, sd)
    sr = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert v.validate(dict(sr, priority="urgent"), [sd["url"]]) == []
    assert rules(v.validate(dict(sr, priority="stat"), [sd["url"]])) == ["t-4"]


# -- extensions -----------------------------------------------------------------------------------


def extension_sd(context: str = "Patient") -> dict:
    return profile(
        "ext-colour",
        "Extension",
        el("Extension.url", fixedUri=BASE + "ext-colour"),
        el("Extension.value[x]", min=1, type=[{"code": "string"}]),
        context=[{"type": "element", "expression": context}],
    )


def test_extension_value_type(registry):
    v = validator(registry, extension_sd())
    good = patient(extension=[{"url": BASE + "ext-colour", "valueString": "blå"}])
    assert v.validate(good) == []
    issues = v.validate(patient(extension=[{"url": BASE + "ext-colour", "valueBoolean": True}]))
    assert rules(issues) == ["profile-type"]
    assert issues[0].expression == "Patient.extension[0].valueBoolean"
    assert rules(v.validate(patient(extension=[{"url": BASE + "ext-colour"}]))) == ["profile-min"]


def test_extension_context(registry):
    v = validator(registry, extension_sd("Patient"))
    on_name = patient(name=[{"family": "A", "extension": [{"url": BASE + "ext-colour", "valueString": "x"}]}])
    issues = v.validate(on_name)
    assert rules(issues) == ["ext-context"]
    assert issues[0].expression == "Patient.name[0].extension[0]"
    v2 = validator(registry, extension_sd("HumanName"))
    assert v2.validate(on_name) == []


def test_extension_on_primitive_checked_by_context_path(registry):
    sd = extension_sd("Address.district")
    v = validator(registry, sd)
    ext = {"extension": [{"url": BASE + "ext-colour", "valueString": "x"}]}
    assert v.validate(patient(address=[{"district": "Oslo", "_district": ext}])) == []
    assert rules(v.validate(patient(address=[{"city": "Oslo", "_city": ext}]))) == ["ext-context"]


def test_unknown_extension_is_a_warning(registry):
    v = validator(registry)
    issues = v.validate(patient(extension=[{"url": "http://example.org/unknown", "valueString": "x"}]))
    assert [(i.severity, i.rule) for i in issues] == [("warning", "ext-unknown")]


# -- profile claims -------------------------------------------------------------------------------


def test_meta_profile_claims_are_checked_and_unknown_profile_is_an_error(registry):
    sd = profile("claimed", "Patient", el("Patient.birthDate", min=1))
    v = validator(registry, sd)
    assert rules(v.validate(patient(meta={"profile": [sd["url"]]}))) == ["profile-min"]
    assert v.validate(patient(meta={"profile": [sd["url"]]}, birthDate="2000-01-01")) == []
    issues = v.validate(patient(), ["http://example.org/nope"])
    assert [(i.severity, i.rule) for i in issues] == [("error", "profile-unknown")]
    assert "not known to this server" in issues[0].diagnostics


def test_profile_for_another_type(registry):
    sd = profile("claimed", "Patient")
    v = validator(registry, sd)
    assert rules(v.validate({"resourceType": "Practitioner"}, [sd["url"]])) == ["profile-type"]


def test_versioned_profile_url(registry):
    sd = profile("ver", "Patient", el("Patient.birthDate", min=1))
    v = validator(registry, sd)
    assert rules(v.validate(patient(), [sd["url"] + "|1"])) == ["profile-min"]
    assert rules(v.validate(patient(), [sd["url"] + "|2"])) == ["profile-unknown"]


def test_unknown_modifier_extension_is_an_error(registry):
    v = validator(registry)
    issues = v.validate(patient(modifierExtension=[{"url": "http://example.org/unknown", "valueString": "x"}]))
    assert [(i.severity, i.rule, i.expression) for i in issues] == [
        ("error", "ext-unknown-modifier", "Patient.modifierExtension[0]")
    ]


def test_ordered_slicing(registry):
    sd = profile(
        "ordered",
        "Patient",
        el(
            "Patient.identifier",
            slicing={"discriminator": [{"type": "value", "path": "system"}], "rules": "open", "ordered": True},
        ),
        el("Patient.identifier:fnr", min=0, max="1"),
        el("Patient.identifier:fnr.system", min=1, fixedUri=FNR),
        el("Patient.identifier:dnr", min=0, max="1"),
        el("Patient.identifier:dnr.system", min=1, fixedUri=DNR),
    )
    v = validator(registry, sd)
    assert v.validate(patient(identifier=[{"system": FNR}, {"system": DNR}]), [sd["url"]]) == []
    assert rules(v.validate(patient(identifier=[{"system": DNR}, {"system": FNR}]), [sd["url"]])) == ["slice-order"]


def test_bundle_entries_resolve_references_by_full_url(registry):
    with_birth = profile("with-birth", "Patient", el("Patient.birthDate", min=1))
    sd = profile(
        "subj3",
        "ServiceRequest",
        el("ServiceRequest.subject", type=[{"code": "Reference", "targetProfile": [with_birth["url"]]}]),
    )
    v = validator(registry, with_birth, sd)
    sr = {
        "resourceType": "ServiceRequest",
        "meta": {"profile": [sd["url"]]},
        "status": "active",
        "intent": "order",
        "subject": {"reference": "urn:uuid:p1"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:p1", "resource": patient()}, {"fullUrl": "urn:uuid:s1", "resource": sr}],
    }
    issues = v.validate(bundle)
    assert [(i.rule, i.expression) for i in issues] == [("ref-target-profile", "Bundle.entry[1].resource.subject")]
    bundle["entry"][0]["resource"]["birthDate"] = "1990-01-01"
    assert v.validate(bundle) == []


def test_contained_resources_are_checked_for_claims_and_extensions(registry):
    sd = profile("with-birth", "Patient", el("Patient.birthDate", min=1))
    v = validator(registry, sd)
    inner = patient(id="p", meta={"profile": [sd["url"]]}, extension=[{"url": "http://example.org/unknown"}])
    sr = {"resourceType": "ServiceRequest", "contained": [inner], "subject": {"reference": "#p"}}
    issues = v.validate(sr)
    assert [(i.rule, i.expression) for i in issues] == [
        ("profile-min", "ServiceRequest.contained[0].birthDate"),
        ("ext-unknown", "ServiceRequest.contained[0].extension[0]"),
    ]
