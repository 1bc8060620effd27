"""The routing decision: home municipality, pre-2024 numbers, exceptions, free choice, HF catchment, triage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fhir_server.domain.routing.decision import RoutingDecision, RoutingTables, route

REPO = Path(__file__).resolve().parents[3]
GEO = REPO / ".." / "shared" / "reference" / "geo"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
MUNICIPALITY_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"

HSO, HV, HMN, HN = "991324968", "983658725", "983658776", "883658752"
#: The 15 counties of 2024 and their RHF (project notes pathways-and-routing.md §3.1 and §6).
COUNTY_RHF = {
    "03": HSO,
    "31": HSO,
    "32": HSO,
    "33": HSO,
    "34": HSO,
    "39": HSO,
    "40": HSO,
    "42": HSO,
    "11": HV,
    "46": HV,
    "15": HMN,
    "50": HMN,
    "18": HN,
    "55": HN,
    "56": HN,
}
OUS, LOVISENBERG, DIAKONHJEMMET, AHUS = "993467049", "965985166", "982791952", "983971636"
SIV, VESTRE_VIKEN, HELSE_BERGEN, HELSE_FONNA = "983975259", "894166762", "983974724", "983974694"
UNN, HELGELAND, HNT, HMR = "983974899", "983974929", "983974791", "997005562"

TABLES = RoutingTables.load(REPO / "terminology", REPO / "mappings")
ALL_2024 = sorted(TABLES.municipalities)


def patient(*codes: str | None, uses: tuple[str | None, ...] | None = None, **extra) -> dict:
    """A Patient with one address per code, each carrying the no-basis municipality code on district."""
    addresses = []
    for i, code in enumerate(codes):
        address: dict = {"line": ["Storgata 1"], "postalCode": "0150"}
        use = uses[i] if uses else "home"
        if use:
            address["use"] = use
        if code is not None:
            address["district"] = "Kommune"
            address["_district"] = {
                "extension": [
                    {
                        "url": MUNICIPALITY_EXT,
                        "valueCoding": {
                            "system": "https://register.geonorge.no/subregister/sosi-kodelister/kartverket/kommunenummer-alle",
                            "code": code,
                        },
                    }
                ]
            }
        addresses.append(address)
    return {"resourceType": "Patient", "address": addresses, **extra}


def referral(*performers: dict, **extra) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "performer": list(performers),
        **extra,
    }


def by_orgnr(orgnr: str) -> dict:
    return {"identifier": {"system": ORGNR, "value": orgnr}}


def assert_explained(decision: RoutingDecision) -> None:
    assert decision.explanation["en"] and decision.explanation["nb"]


# --- every municipality, every county -------------------------------------------------------------------


@pytest.mark.parametrize("code", ALL_2024)
def test_every_2024_municipality_routes_to_the_rhf_of_its_county(code: str) -> None:
    decision = route(patient(code), referral(), TABLES)
    assert decision.rule == "home-municipality" and not decision.triage
    assert decision.rhf_orgnr == COUNTY_RHF[code[:2]]
    assert decision.inputs["fylke"] == code[:2]


def test_every_municipality_agrees_with_the_reference_csv() -> None:
    if not (GEO / "kommune-2024-til-hf-phv-tsb-derived.csv").is_file():
        pytest.skip(f"reference data not present at {GEO.resolve()}")
    with (GEO / "kommune-2024-til-hf-phv-tsb-derived.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 357
    for row in rows:
        decision = route(patient(row["kommunenummer_2024"]), None, TABLES, service_line="tsb")
        assert decision.rhf_orgnr == row["rhf_orgnr"], row["kommunenummer_2024"]
        if "|" not in row["tsb_hf_orgnr"]:
            assert decision.hf_orgnr == row["tsb_hf_orgnr"], row["kommunenummer_2024"]


@pytest.mark.parametrize(("fylke", "rhf"), sorted(COUNTY_RHF.items()))
def test_each_county_has_the_right_rhf(fylke: str, rhf: str) -> None:
    assert TABLES.county_rhf[fylke] == rhf
    assert TABLES.organizations[rhf].kind == "rhf"


def test_the_county_table_has_exactly_the_15_counties_of_2024() -> None:
    assert set(TABLES.county_rhf) == set(COUNTY_RHF)
    assert "39" in TABLES.county_rhf  # Vestfold, missed by SSB's own case_when
    assert "30" not in TABLES.county_rhf and "38" not in TABLES.county_rhf and "54" not in TABLES.county_rhf


# --- pre-2024 numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "rhf"),
    [
        ("3005", "3301", HSO),  # Drammen, Viken -> Buskerud (2024 reform)
        ("3024", "3201", HSO),  # Bærum, Viken -> Akershus
        ("3803", "3905", HSO),  # Tønsberg, Vestfold og Telemark -> Vestfold
        ("5401", "5501", HN),  # Tromsø, Troms og Finnmark -> Troms
        ("5406", "5603", HN),  # Hammerfest -> Finnmark
    ],
)
def test_pre2024_numbers_are_translated(old: str, new: str, rhf: str) -> None:
    assert TABLES.pre2024[old] == (new,)
    decision = route(patient(old), referral(), TABLES)
    assert decision.rule == "pre2024-municipality" and not decision.triage
    assert decision.inputs["kommunenummer"] == old and decision.inputs["kommunenummer_2024"] == new
    assert decision.rhf_orgnr == rhf


def test_alesund_split_of_2024_still_routes() -> None:
    decision = route(patient("1507"), referral(), TABLES, service_line="phv")
    assert decision.rule == "pre2024-municipality" and not decision.triage
    assert decision.inputs["kommunenummer_2024"] == "1508,1580"
    assert (decision.rhf_orgnr, decision.hf_orgnr) == (HMN, HMR)


def test_new_2024_numbers_are_not_treated_as_pre2024() -> None:
    decision = route(patient("1580"), referral(), TABLES)
    assert decision.rule == "home-municipality" and decision.rhf_orgnr == HMN


def test_pre2020_number_resolves_through_the_2013_table() -> None:
    # 1201 (Bergen before 2020): the 2013-2020 change table composed with the 2020-2023 map gives 4601.
    decision = route(patient("1201"), referral(), TABLES)
    assert decision.rule == "pre2024-municipality" and not decision.triage
    assert decision.inputs["kommunenummer_2024"] == "4601" and decision.rhf_orgnr == HV


# --- Bindal ---------------------------------------------------------------------------------------------


def test_bindal_somatic_care_goes_to_namsos_in_helse_midt_norge() -> None:
    decision = route(patient("1811"), referral(), TABLES, service_line="somatic")
    assert decision.rule == "municipality-exception" and not decision.triage
    assert (decision.rhf_orgnr, decision.hf_orgnr) == (HMN, HNT)
    assert "Helse Nord keeps the responsibility" in decision.explanation["en"]


@pytest.mark.parametrize("line", ["phv", "tsb"])
def test_bindal_mental_health_and_tsb_stay_in_helse_nord_with_namsos_flagged(line: str) -> None:
    decision = route(patient("1811"), referral(), TABLES, service_line=line)
    assert decision.rule == "home-municipality"
    assert (decision.rhf_orgnr, decision.hf_orgnr, decision.hf_name) == (HN, HELGELAND, "Helgelandssykehuset HF")
    assert "Namsos" in decision.explanation["en"]


def test_bindal_without_service_line_uses_the_county_and_notes_the_exception() -> None:
    decision = route(patient("1811"), referral(), TABLES)
    assert decision.rule == "home-municipality" and decision.rhf_orgnr == HN
    assert "somatic care only" in decision.explanation["en"]


def test_neighbour_of_bindal_has_no_exception() -> None:
    decision = route(patient("1812"), referral(), TABLES, service_line="somatic")  # Sømna
    assert decision.rule == "home-municipality" and decision.rhf_orgnr == HN


# --- free choice ----------------------------------------------------------------------------------------


def test_free_choice_of_an_hf_in_another_region_by_orgnr() -> None:
    decision = route(patient("0301"), referral(by_orgnr(HELSE_BERGEN)), TABLES, service_line="phv")
    assert decision.rule == "free-choice" and not decision.triage
    assert (decision.rhf_orgnr, decision.rhf_name) == (HV, "Helse Vest RHF")
    assert (decision.hf_orgnr, decision.hf_code) == (HELSE_BERGEN, "hf-helse-bergen")
    assert decision.inputs["performer_orgnr"] == HELSE_BERGEN
    assert "§ 2-4" in decision.explanation["en"] and "Fritt behandlingsvalg" in decision.explanation["nb"]


def test_free_choice_of_an_rhf_through_the_organization_resolver() -> None:
    store = {
        "Organization/abc": {
            "resourceType": "Organization",
            "id": "abc",
            "identifier": [{"system": ORGNR, "value": HN}],
        }
    }
    decision = route(patient("4601"), referral({"reference": "Organization/abc"}), TABLES, store.get)
    assert decision.rule == "free-choice" and decision.rhf_orgnr == HN and decision.hf_orgnr is None


def test_free_choice_through_a_contained_practitioner_role() -> None:
    request = referral(
        {"reference": "#role"},
        contained=[
            {"resourceType": "PractitionerRole", "id": "role", "organization": {"reference": "#org"}},
            {"resourceType": "Organization", "id": "org", "identifier": [{"system": ORGNR, "value": UNN}]},
        ],
    )
    decision = route(patient("0301"), request, TABLES)
    assert decision.rule == "free-choice" and (decision.rhf_orgnr, decision.hf_orgnr) == (HN, UNN)


def test_free_choice_of_another_hf_inside_the_home_region() -> None:
    decision = route(patient("3201"), referral(by_orgnr(OUS)), TABLES, service_line="phv")  # Bærum -> OUS
    assert decision.rule == "free-choice" and (decision.rhf_orgnr, decision.hf_orgnr) == (HSO, OUS)


def test_performer_that_is_the_home_catchment_trust_is_not_a_free_choice() -> None:
    decision = route(patient("4601"), referral(by_orgnr(HELSE_BERGEN)), TABLES, service_line="phv")
    assert decision.rule == "home-municipality" and decision.hf_orgnr == HELSE_BERGEN


def test_performer_settles_the_oslo_split() -> None:
    decision = route(patient("0301"), referral(by_orgnr(LOVISENBERG)), TABLES, service_line="phv")
    assert decision.rule == "home-municipality" and not decision.triage
    assert decision.hf_orgnr == LOVISENBERG


def test_unknown_performer_does_not_change_the_routing() -> None:
    decision = route(patient("4601"), referral(by_orgnr("915933149")), TABLES)  # Direktoratet for e-helse
    assert decision.rule == "home-municipality" and decision.rhf_orgnr == HV
    assert "915933149" in decision.explanation["en"]


def test_free_choice_routes_even_without_an_address() -> None:
    decision = route({"resourceType": "Patient"}, referral(by_orgnr(HMN)), TABLES)
    assert decision.rule == "free-choice" and not decision.triage and decision.rhf_orgnr == HMN


def test_failing_resolver_is_reported_not_raised() -> None:
    def broken(reference: str) -> dict | None:
        raise RuntimeError("database down")

    decision = route(patient("5001"), referral({"reference": "Organization/x"}), TABLES, broken)
    assert decision.rule == "home-municipality" and decision.rhf_orgnr == HMN
    assert "could not be resolved" in decision.explanation["en"]


# --- HF naming for PHV / TSB ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "line", "hf", "name"),
    [
        ("4601", "phv", HELSE_BERGEN, "Helse Bergen HF"),
        ("1106", "tsb", HELSE_FONNA, "Helse Fonna HF"),  # Haugesund, in Rogaland but Helse Fonna
        ("1806", "phv", UNN, "Universitetssykehuset Nord-Norge HF"),  # Narvik, Nordland but UNN
        ("3201", "tsb", VESTRE_VIKEN, "Vestre Viken HF"),  # Bærum, Akershus but Vestre Viken
        ("3401", "phv", AHUS, "Akershus universitetssykehus HF"),  # Kongsvinger, Innlandet but Ahus
        ("5001", "tsb", "883974832", "St. Olavs hospital HF"),
    ],
)
def test_hf_is_named_for_phv_and_tsb(code: str, line: str, hf: str, name: str) -> None:
    decision = route(patient(code), referral(), TABLES, service_line=line)
    assert (decision.hf_orgnr, decision.hf_name) == (hf, name) and not decision.triage
    assert decision.hf_code and decision.hf_code.startswith("hf-")


def test_no_hf_without_a_phv_or_tsb_service_line() -> None:
    decision = route(patient("4601"), referral(), TABLES)
    assert decision.hf_orgnr is None and decision.rhf_orgnr == HV


@pytest.mark.parametrize(
    ("code", "candidates"),
    [
        ("3903", {SIV, VESTRE_VIKEN}),  # Holmestrand
        ("0301", {OUS, LOVISENBERG, DIAKONHJEMMET, AHUS}),  # Oslo
    ],
)
def test_split_municipality_keeps_the_rhf_and_asks_for_triage_of_the_hf(code: str, candidates: set[str]) -> None:
    decision = route(patient(code), referral(), TABLES, service_line="phv")
    assert decision.triage and decision.rule == "manual-triage" and decision.triage_reason == "hf-split"
    assert decision.rhf_orgnr == HSO and decision.hf_orgnr is None
    assert {orgnr for orgnr, _ in decision.hf_candidates} == candidates


# --- triage ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (None, "no-patient"),
        ({"resourceType": "Patient"}, "no-address"),
        ({"resourceType": "Patient", "address": [{"city": "Oslo", "district": "Oslo"}]}, "no-municipality-code"),
        ("9999", "unknown-municipality-code"),
        ("03A1", "malformed-municipality-code"),
        ("2100", "svalbard-jan-mayen"),  # Svalbard
        ("2211", "svalbard-jan-mayen"),  # Jan Mayen
    ],
)
def test_manual_triage_when_the_home_region_cannot_be_decided(subject: object, reason: str) -> None:
    resource = patient(subject) if isinstance(subject, str) else subject
    decision = route(resource, referral(), TABLES)
    assert decision.triage and decision.rule == "manual-triage" and decision.triage_reason == reason
    assert decision.rhf_orgnr is None
    assert_explained(decision)


def test_svalbard_triage_mentions_the_usual_provider_as_unverified() -> None:
    decision = route(patient("2100"), referral(), TABLES)
    assert "Universitetssykehuset Nord-Norge" in decision.explanation["en"]
    assert "unverified" in decision.explanation["en"]


def test_invalid_service_line_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="service_line"):
        route(patient("0301"), referral(), TABLES, service_line="psych")


# --- reading the address ----------------------------------------------------------------------------------


def test_home_address_is_preferred_over_others() -> None:
    decision = route(patient("5001", "4601", uses=("work", "home")), referral(), TABLES)
    assert decision.rhf_orgnr == HV
    assert decision.inputs["source"] == "Patient.address[1].district.extension[0].valueCoding.code"


def test_old_address_is_never_used() -> None:
    decision = route(patient("4601", uses=("old",)), referral(), TABLES)
    assert decision.triage and decision.triage_reason == "no-municipality-code"


def test_next_address_is_used_when_home_has_no_code() -> None:
    decision = route(patient(None, "5001", uses=("home", "temp")), referral(), TABLES)
    assert decision.rhf_orgnr == HMN and decision.inputs["source"].startswith("Patient.address[1]")


def test_property_information_municipality_is_read() -> None:
    subject = {
        "resourceType": "Patient",
        "address": [
            {
                "use": "home",
                "extension": [
                    {
                        "url": "http://hl7.no/fhir/StructureDefinition/no-basis-propertyinformation",
                        "extension": [
                            {
                                "url": "municipality",
                                "valueCoding": {"system": "urn:oid:2.16.578.1.12.4.1.1.3402", "code": "1103"},
                            }
                        ],
                    }
                ],
            }
        ],
    }
    decision = route(subject, referral(), TABLES)
    assert decision.rhf_orgnr == HV
    assert decision.inputs["source"] == "Patient.address[0].extension[0].extension[0].valueCoding.code"


def test_lost_leading_zero_is_restored() -> None:
    decision = route(patient("301"), referral(), TABLES)
    assert decision.rhf_orgnr == HSO and "0301" in decision.explanation["en"]


def test_decision_never_carries_the_national_identity_number() -> None:
    fnr = "13031353453"
    subject = patient("0301", identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": fnr}])
    decision = route(subject, referral(), TABLES, service_line="phv")
    text = json.dumps(decision.as_json(), ensure_ascii=False)
    assert fnr not in text and fnr[:6] not in text
    assert decision.as_json()["rhf"] == {"orgnr": HSO, "name": "Helse Sør-Øst RHF"}
