"""Pathway suggestion: each rule with a case where it applies and one where it does not."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_server.domain.pathways.catalog import PathwayCatalog
from fhir_server.domain.pathways.suggest import age_on, pregnancy, reference_date, suggest_pathways

CATALOG = PathwayCatalog.load()
ICD10 = "urn:oid:2.16.578.1.12.4.1.1.7110"
ICPC2 = "http://hl7.org/fhir/sid/icpc-2"
SNOMED = "http://snomed.info/sct"
ADULT = {"resourceType": "Patient", "birthDate": "1996-03-10"}  # 30 on 2026-04-01
CHILD = {"resourceType": "Patient", "birthDate": "2014-01-01"}  # 12 on 2026-04-01
BORN_2008_04_02 = {"resourceType": "Patient", "birthDate": "2008-04-02"}  # 17 on 2026-04-01, 18 on 2026-04-02


def referral(*codes: str, system: str = ICD10, authored: str | None = "2026-04-01", priority: str = "routine") -> dict:
    sr: dict = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "priority": priority,
        "reasonCode": [{"coding": [{"system": system, "code": c}]} for c in codes],
    }
    if authored:
        sr["authoredOn"] = authored
    return sr


def condition(code: str, system: str = ICD10, **extra) -> dict:
    return {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}, **extra}


PREGNANT = condition("Z33")


def names(sr: dict, patient: dict, conditions: list[dict] | None = None, **kw) -> list[str]:
    return [s.url.rsplit("/", 1)[1] for s in suggest_pathways(sr, patient, conditions or [], CATALOG, **kw)]


@pytest.mark.parametrize("patient", [ADULT, CHILD], ids=["adult", "child"])
def test_f20_gives_psychosis_at_any_age(patient: dict) -> None:
    assert names(referral("F20.0"), patient) == ["psykoselidelser"]


def test_psychosis_not_for_depression() -> None:
    assert "psykoselidelser" not in names(referral("F32"), ADULT)


def test_f50_at_17_gives_eating_disorders() -> None:
    assert names(referral("F50.0"), BORN_2008_04_02) == ["spiseforstyrrelser-barn-og-unge"]


def test_f50_at_18_gives_the_adult_general_pathway() -> None:
    assert names(referral("F50.0", authored="2026-04-02"), BORN_2008_04_02) == ["psykisk-helsevern-voksne"]


def test_f42_gives_ocd_and_the_general_pathway_for_the_age() -> None:
    assert names(referral("F42"), ADULT) == ["tvangslidelse-ocd", "psykisk-helsevern-voksne"]
    assert names(referral("F42"), CHILD) == ["tvangslidelse-ocd", "psykisk-helsevern-barn-og-unge"]


def test_no_ocd_for_anxiety() -> None:
    assert "tvangslidelse-ocd" not in names(referral("F41"), ADULT)


def test_f10_pregnant_gives_pregnancy_pathway() -> None:
    assert names(referral("F10.2"), ADULT, [PREGNANT]) == ["gravide-og-rusmidler"]


def test_f10_not_pregnant_gives_tsb() -> None:
    assert names(referral("F10.2"), ADULT) == ["tsb"]
    assert names(referral("F10.2"), CHILD) == ["tsb"]


def test_f32_at_30_gives_d11() -> None:
    assert names(referral("F32"), ADULT) == ["psykisk-helsevern-voksne"]


def test_f32_at_12_gives_d12() -> None:
    assert names(referral("F32"), CHILD) == ["psykisk-helsevern-barn-og-unge"]


def test_non_f_code_gives_ordinary_referral_only() -> None:
    assert names(referral("J45"), ADULT) == ["ordinaer-henvisning"]
    assert names(referral(), ADULT) == ["ordinaer-henvisning"]


def test_ordinary_referral_not_when_a_pathway_applies() -> None:
    assert "ordinaer-henvisning" not in names(referral("J45", "F32"), ADULT)


def test_several_codes_give_several_pathways_with_their_own_codes() -> None:
    found = suggest_pathways(referral("F20", "F10", "J45"), ADULT, [], CATALOG)
    assert [(s.url.rsplit("/", 1)[1], [c["code"] for c in s.codes]) for s in found] == [
        ("psykoselidelser", ["F20"]),
        ("tsb", ["F10"]),
    ]


def test_codes_from_conditions_count_and_refuted_ones_do_not() -> None:
    assert names(referral(), ADULT, [condition("F20")]) == ["psykoselidelser"]
    refuted = condition("F20", verificationStatus={"coding": [{"code": "refuted"}]})
    assert names(referral(), ADULT, [refuted]) == ["ordinaer-henvisning"]


def test_codes_in_other_systems_are_ignored() -> None:
    assert names(referral("F20", system="http://example.org/local"), ADULT) == ["ordinaer-henvisning"]


@pytest.mark.parametrize(
    ("code", "patient", "expected"),
    [
        ("P72", ADULT, ["psykoselidelser"]),
        ("P98", CHILD, ["psykoselidelser"]),
        ("P15", ADULT, ["tsb"]),
        ("P16", ADULT, ["tsb"]),
        ("P86", CHILD, ["spiseforstyrrelser-barn-og-unge"]),
        ("P86", ADULT, ["psykisk-helsevern-voksne"]),
        ("P76", ADULT, ["psykisk-helsevern-voksne"]),
        ("P76", CHILD, ["psykisk-helsevern-barn-og-unge"]),
        ("P17", ADULT, ["ordinaer-henvisning"]),  # tobacco: not mapped to TSB
        ("P03", ADULT, ["ordinaer-henvisning"]),  # a symptom, not a diagnosis
        ("L88", ADULT, ["ordinaer-henvisning"]),
    ],
)
def test_icpc2_codes(code: str, patient: dict, expected: list[str]) -> None:
    assert names(referral(code, system=ICPC2), patient) == expected


def test_icpc2_alcohol_pregnant() -> None:
    sr = referral("P15", system="urn:oid:2.16.578.1.12.4.1.1.7170")
    assert names(sr, ADULT, [condition("W78", system=ICPC2)]) == ["gravide-og-rusmidler"]


def test_reason_in_english_and_norwegian() -> None:
    (suggestion,) = suggest_pathways(referral("F20"), ADULT, [], CATALOG)
    assert "F20" in suggestion.reason_en and "psychosis" in suggestion.reason_en
    assert "psykose" in suggestion.reason_nb
    assert suggestion.canonical == "https://fhir.referral-hub.no/PlanDefinition/psykoselidelser|0.1.0"
    assert suggestion.as_json()["codes"] == [{"system": ICD10, "code": "F20"}]


def test_unknown_age_suggests_only_age_independent_pathways() -> None:
    no_age = {"resourceType": "Patient"}
    assert names(referral("F32"), no_age) == []
    assert names(referral("F20"), no_age) == ["psykoselidelser"]


# --- the inputs: age, reference date, pregnancy ---


def test_age_from_fodselsnummer_when_birthdate_is_missing() -> None:
    fnr = "urn:oid:2.16.578.1.12.4.1.4.1"
    patient = {"resourceType": "Patient", "identifier": [{"system": fnr, "value": "15038512363"}]}  # 1985-03-15
    assert age_on(patient, date(2026, 4, 1)) == 41
    bad = {"resourceType": "Patient", "identifier": [{"system": fnr, "value": "15038512364"}]}  # wrong check digit
    assert age_on(bad, date(2026, 4, 1)) is None


def test_partial_birthdate_gives_the_lowest_possible_age() -> None:
    assert age_on({"birthDate": "2008"}, date(2026, 6, 1)) == 17
    assert age_on({"birthDate": "2008-05"}, date(2026, 5, 31)) == 18
    assert age_on({"birthDate": "2008-05"}, date(2026, 5, 30)) == 17


def test_reference_date_order() -> None:
    assert reference_date({"authoredOn": "2026-03-30T10:00:00+02:00"}, date(2026, 4, 1)) == date(2026, 3, 30)
    assert reference_date({}, date(2026, 4, 1)) == date(2026, 4, 1)
    ext = {"url": "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato", "valueDateTime": "2026-04-02"}
    assert reference_date({"extension": [ext]}) == date(2026, 4, 2)


def test_on_date_used_when_authored_on_is_missing() -> None:
    sr = referral("F50", authored=None)
    assert names(sr, BORN_2008_04_02, on_date=date(2026, 4, 1)) == ["spiseforstyrrelser-barn-og-unge"]
    assert names(sr, BORN_2008_04_02, on_date=date(2026, 4, 2)) == ["psykisk-helsevern-voksne"]


@pytest.mark.parametrize(
    "evidence",
    [
        condition("Z33"),
        condition("O36.5"),
        condition("77386006", system=SNOMED),
        condition("W78", system=ICPC2),
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "77386006"}]},
        },
    ],
    ids=["Z33", "O36", "snomed", "icpc2-W78", "observation"],
)
def test_pregnancy_evidence(evidence: dict) -> None:
    assert pregnancy({}, [evidence]) is True


@pytest.mark.parametrize(
    "evidence",
    [
        condition("Z33", clinicalStatus={"coding": [{"code": "resolved"}]}),
        condition("Z33", verificationStatus={"coding": [{"code": "entered-in-error"}]}),
        condition("O80"),  # delivery: not a pregnancy code here
        condition("F10"),
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "60001007"}]},
        },
    ],
    ids=["resolved", "entered-in-error", "O80", "F10", "observation-not-pregnant"],
)
def test_not_pregnancy_evidence(evidence: dict) -> None:
    assert pregnancy({}, [evidence]) is False


def test_pregnancy_from_reason_code_and_explicit_flag() -> None:
    assert pregnancy(referral("F10", "Z33"), []) is True
    assert names(referral("F10"), ADULT, pregnant=True) == ["gravide-og-rusmidler"]
    assert names(referral("F10"), ADULT, [PREGNANT], pregnant=False) == ["tsb"]
