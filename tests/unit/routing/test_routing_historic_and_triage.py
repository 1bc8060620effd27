"""Routing of retired municipality numbers (2013 on), Oslo bydeler, and the manual-triage reason of each case."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fhir_server.domain.referral.mapping.fhir_aliases import normalise_referral
from fhir_server.domain.routing.decision import RoutingTables, route

REPO = Path(__file__).resolve().parents[3]
TABLES = RoutingTables.load(REPO / "terminology", REPO / "mappings")
MUNICIPALITY_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
URBAN_DISTRICT_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-urban-district"
KOMMUNE = "urn:oid:2.16.578.1.12.4.1.1.3402"
BYDEL = "urn:oid:2.16.578.1.12.4.1.1.3403"

HSO, HV, HMN, HN = "991324968", "983658725", "983658776", "883658752"
OUS, LOVISENBERG, DIAKONHJEMMET, AHUS = "993467049", "965985166", "982791952", "983971636"
HELSE_BERGEN, ST_OLAV, UNN, NLSH = "983974724", "883974832", "983974899", "983974910"
#: Oslo bydel -> hospital for adult mental health care: the facts of issue #14 (codes 0301 + 01..17).
OSLO_BYDELER = {
    "030101": LOVISENBERG,  # Gamle Oslo
    "030102": LOVISENBERG,  # Grünerløkka
    "030103": OUS,  # Sagene
    "030104": LOVISENBERG,  # St. Hanshaugen
    "030105": DIAKONHJEMMET,  # Frogner
    "030106": DIAKONHJEMMET,  # Ullern
    "030107": DIAKONHJEMMET,  # Vestre Aker
    "030108": OUS,  # Nordre Aker
    "030109": OUS,  # Bjerke
    "030110": AHUS,  # Grorud
    "030111": AHUS,  # Stovner
    "030112": AHUS,  # Alna
    "030113": OUS,  # Østensjø
    "030114": OUS,  # Nordstrand
    "030115": OUS,  # Søndre Nordstrand
    "030116": LOVISENBERG,  # Sentrum
    "030117": OUS,  # Marka
}
ADULT, CHILD = "1980-05-01", "2016-05-01"
REASONS = {
    c["code"]: c["display"]
    for c in json.loads((REPO / "terminology" / "CodeSystem-triage-reason.json").read_text(encoding="utf-8"))["concept"]
}


def address(code: str | None, use: str | None = "home", **extra) -> dict:
    item: dict = {"line": ["Storgata 1"], **extra}
    if use:
        item["use"] = use
    if code is not None:
        item["_district"] = {"extension": [{"url": MUNICIPALITY_EXT, "valueCoding": {"system": KOMMUNE, "code": code}}]}
    return item


def with_bydel(item: dict, bydel: str, on_district: bool = False) -> dict:
    ext = {"url": URBAN_DISTRICT_EXT, "valueCoding": {"system": BYDEL, "code": bydel}}
    if on_district:
        item["_district"]["extension"].append(ext)
    else:
        item.setdefault("extension", []).append(ext)
    return item


def patient(*addresses: dict, birth: str | None = ADULT) -> dict:
    resource: dict = {"resourceType": "Patient", "address": list(addresses)}
    if birth:
        resource["birthDate"] = birth
    return resource


SR = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "authoredOn": "2026-12-01"}


def assert_triage(decision, reason: str, rhf: str | None) -> None:
    assert decision.triage and decision.rule == "manual-triage"
    assert decision.triage_reason == reason
    assert decision.triage_display == REASONS[reason]
    assert decision.rhf_orgnr == rhf
    assert decision.explanation["en"] and decision.explanation["nb"]


# --- municipality numbers from 2013 on --------------------------------------------------------------------


def test_bergen_1201_routes_to_helse_vest_and_helse_bergen() -> None:
    decision = route(patient(address("1201")), SR, TABLES, service_line="phv")
    assert decision.rule == "pre2024-municipality" and not decision.triage
    assert (decision.rhf_orgnr, decision.hf_orgnr) == (HV, HELSE_BERGEN)
    assert decision.inputs["kommunenummer"] == "1201" and decision.inputs["kommunenummer_2024"] == "4601"
    assert "retired" in decision.explanation["en"]


OLD_TRONDELAG = sorted(c for c in TABLES.pre2024 if c[:2] in ("16", "17"))


def test_the_old_trondelag_numbers_are_all_there() -> None:
    # Sør-Trøndelag 16xx and Nord-Trøndelag 17xx until 2018: 48 numbers not in use since.
    assert len(OLD_TRONDELAG) == 48 and {"1601", "1702", "1613"} <= set(OLD_TRONDELAG)


@pytest.mark.parametrize("code", OLD_TRONDELAG)
def test_old_trondelag_numbers_route_to_helse_midt_norge(code: str) -> None:
    decision = route(patient(address(code)), SR, TABLES, service_line="phv")
    assert decision.rhf_orgnr == HMN and not decision.triage
    assert decision.rule == "pre2024-municipality"


@pytest.mark.parametrize("code", sorted(TABLES.pre2024))
def test_every_retired_number_resolves_to_its_region(code: str) -> None:
    decision = route(patient(address(code)), SR, TABLES)
    regions = {TABLES.rhf_of_municipality(c) for c in TABLES.pre2024[code]}
    assert decision.rule == "pre2024-municipality" and decision.rhf_orgnr == regions.pop()


def test_a_number_rewritten_by_the_intake_is_still_routed_as_renumbered() -> None:
    normalised, _ = normalise_referral(patient(address("1201")))
    coding = normalised["address"][0]["_district"]["extension"][0]["valueCoding"]
    assert coding["code"] == "4601"
    decision = route(normalised, SR, TABLES)
    assert decision.rule == "pre2024-municipality" and decision.inputs["kommunenummer"] == "1201"
    assert decision.rhf_orgnr == HV


def test_split_number_within_one_trust_routes_without_triage() -> None:
    # Snillfjord 1613 (5012 from 2018) was split into Heim, Hitra and Orkland: all St. Olavs for PHV.
    decision = route(patient(address("1613")), SR, TABLES, service_line="phv")
    assert not decision.triage and (decision.rhf_orgnr, decision.hf_orgnr) == (HMN, ST_OLAV)
    assert decision.inputs["kommunenummer_2024"] == "5055,5056,5059"


def test_split_number_between_trusts_routes_to_the_region_and_asks_for_the_trust() -> None:
    # Tysfjord 1850 was split in 2020 into Narvik (UNN) and Hamarøy (Nordlandssykehuset).
    decision = route(patient(address("1850")), SR, TABLES, service_line="phv")
    assert_triage(decision, "retired-municipality-split", HN)
    assert {orgnr for orgnr, _ in decision.hf_candidates} == {UNN, NLSH}
    somatic = route(patient(address("1850")), SR, TABLES, service_line="somatic")
    assert somatic.rhf_orgnr == HN and not somatic.triage


@pytest.mark.parametrize(("district", "hf"), [("Hamarøy", NLSH), ("Hábmer", NLSH), ("narvik", UNN)])
def test_split_number_is_settled_by_the_municipality_name_in_the_address(district: str, hf: str) -> None:
    decision = route(patient(address("1850", district=district)), SR, TABLES, service_line="phv")
    assert not decision.triage and (decision.rhf_orgnr, decision.hf_orgnr) == (HN, hf)


def test_split_number_with_an_unrelated_district_name_stays_undecided() -> None:
    decision = route(patient(address("1850", district="Tysfjord")), SR, TABLES, service_line="phv")
    assert_triage(decision, "retired-municipality-split", HN)


def test_split_number_across_regions_goes_to_manual_triage_without_a_region() -> None:
    # No such split exists in the data; a table with one shows the rule.
    tables = dataclasses.replace(TABLES, pre2024={**TABLES.pre2024, "1999": ("4601", "5001")})
    decision = route(patient(address("1999")), SR, tables)
    assert_triage(decision, "retired-municipality-split", None)
    settled = route(patient(address("1999", district="Bergen")), SR, tables)
    assert settled.rhf_orgnr == HV and not settled.triage


# --- manual triage: each case its reason -------------------------------------------------------------------


@pytest.mark.parametrize("country", ["SE", "Sverige", "DK"])
def test_foreign_address_goes_to_manual_triage(country: str) -> None:
    decision = route(patient(address(None, country=country)), SR, TABLES)
    assert_triage(decision, "foreign-address", None)
    assert decision.inputs["country"] == country


@pytest.mark.parametrize("country", ["NO", "Norge", "NOR", "norway", ""])
def test_norwegian_country_is_not_foreign(country: str) -> None:
    decision = route(patient(address("4601", country=country)), SR, TABLES)
    assert decision.rhf_orgnr == HV and not decision.triage


def test_foreign_home_address_wins_over_a_norwegian_temporary_one() -> None:
    decision = route(patient(address(None, country="SE"), address("4601", use="temp")), SR, TABLES)
    assert_triage(decision, "foreign-address", None)


def test_norwegian_and_foreign_home_addresses_route_by_the_norwegian_one() -> None:
    decision = route(patient(address(None, country="ES"), address("4601")), SR, TABLES)
    assert decision.rhf_orgnr == HV and not decision.triage
    assert "abroad" in decision.explanation["en"]


@pytest.mark.parametrize(
    "item", [address("2100"), address("2111"), address("2211"), address(None, country="SJ")], ids=str
)
def test_svalbard_and_jan_mayen_go_to_manual_triage(item: dict) -> None:
    assert_triage(route(patient(item), SR, TABLES), "svalbard-jan-mayen", None)


def test_contradictory_home_addresses_go_to_manual_triage() -> None:
    decision = route(patient(address("4601"), address("5001")), SR, TABLES)
    assert_triage(decision, "contradictory-addresses", None)
    assert "Helse Vest RHF" in decision.explanation["en"] and "Helse Midt-Norge RHF" in decision.explanation["en"]


def test_home_addresses_in_one_region_do_not_contradict() -> None:
    decision = route(patient(address("4601"), address("1201"), address("4602")), SR, TABLES)
    assert decision.rhf_orgnr == HV and not decision.triage


def test_an_exception_is_no_contradiction() -> None:
    # Bindal 1811 (somatic care: Helse Midt-Norge by exception) and Bodø 1804 are both in Nordland.
    decision = route(patient(address("1811"), address("1804")), SR, TABLES, service_line="somatic")
    assert decision.rule == "municipality-exception" and decision.rhf_orgnr == HMN and not decision.triage


def test_an_unusable_number_gives_way_to_a_usable_one_of_the_same_rank() -> None:
    decision = route(patient(address("9999"), address("4601")), SR, TABLES)
    assert decision.rhf_orgnr == HV and decision.inputs["source"].startswith("Patient.address[1]")


def test_a_home_address_outranks_another_region_in_a_work_address() -> None:
    decision = route(patient(address("4601"), address("5001", use="work")), SR, TABLES)
    assert decision.rhf_orgnr == HV and not decision.triage


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (None, "no-patient"),
        ({"resourceType": "Patient"}, "no-address"),
        (patient({"city": "Oslo"}), "no-municipality-code"),
        (patient(address("9999")), "unknown-municipality-code"),
        (patient(address("12A1")), "malformed-municipality-code"),
    ],
)
def test_the_other_triage_cases_carry_their_reason(subject: dict | None, reason: str) -> None:
    assert_triage(route(subject, SR, TABLES), reason, None)


def test_every_reason_code_of_the_decision_is_in_the_code_system() -> None:
    source = (REPO / "fhir_server" / "domain" / "routing" / "decision.py").read_text(encoding="utf-8")
    used = {code for code in REASONS if f'"{code}"' in source}
    assert used == set(REASONS), set(REASONS) - used
    assert TABLES.triage_reasons == REASONS


# --- Oslo bydel -> hospital (adult mental health care) -------------------------------------------------------


@pytest.mark.parametrize(("bydel", "hf"), sorted(OSLO_BYDELER.items()))
def test_each_oslo_bydel_routes_adult_mental_health_to_its_hospital(bydel: str, hf: str) -> None:
    decision = route(patient(with_bydel(address("0301"), bydel)), SR, TABLES, service_line="phv")
    assert not decision.triage and decision.rule == "home-municipality"
    assert (decision.rhf_orgnr, decision.hf_orgnr) == (HSO, hf)
    assert decision.inputs["bydel"] == bydel
    assert decision.hf_code and decision.hf_name == TABLES.organizations[hf].name


def test_the_bydel_map_holds_exactly_the_17_oslo_codes() -> None:
    assert {code: d.orgnr for code, d in TABLES.districts.items()} == OSLO_BYDELER


def test_bydel_on_address_district_is_read_too() -> None:
    item = with_bydel(address("0301"), "030112", on_district=True)
    decision = route(patient(item), SR, TABLES, service_line="phv")
    assert decision.hf_orgnr == AHUS and not decision.triage


def test_oslo_adult_mental_health_without_bydel_names_the_region_and_says_why() -> None:
    decision = route(patient(address("0301")), SR, TABLES, service_line="phv")
    assert_triage(decision, "bydel-missing", HSO)
    assert decision.hf_orgnr is None and len(decision.hf_candidates) == 4
    assert "could not be decided" in decision.explanation["en"]


def test_oslo_unknown_bydel_names_the_region_and_says_why() -> None:
    decision = route(patient(with_bydel(address("0301"), "030199")), SR, TABLES, service_line="phv")
    assert_triage(decision, "bydel-unknown", HSO)


@pytest.mark.parametrize(
    ("birth", "line"),
    [(CHILD, "phv"), (None, "phv"), (ADULT, "tsb")],
    ids=["child-phv", "age-unknown-phv", "adult-tsb"],
)
def test_children_tsb_and_unknown_age_keep_the_oslo_split(birth: str | None, line: str) -> None:
    decision = route(patient(with_bydel(address("0301"), "030112"), birth=birth), SR, TABLES, service_line=line)
    assert_triage(decision, "hf-split", HSO)
    assert decision.hf_orgnr is None


def test_a_bydel_outside_oslo_changes_nothing() -> None:
    decision = route(patient(with_bydel(address("4601"), "460101")), SR, TABLES, service_line="phv")
    assert decision.hf_orgnr == HELSE_BERGEN and not decision.triage


def test_free_choice_still_overrides_the_bydel() -> None:
    sr = {**SR, "performer": [{"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": OUS}}]}
    decision = route(patient(with_bydel(address("0301"), "030112")), sr, TABLES, service_line="phv")
    assert decision.rule == "free-choice" and decision.hf_orgnr == OUS


# --- the data ------------------------------------------------------------------------------------------------


def test_the_2013_map_says_how_each_number_relates_to_its_2024_municipality() -> None:
    cmap = json.loads(
        (REPO / "terminology" / "ConceptMap-kommunenummer-2013-2019-to-2024.json").read_text(encoding="utf-8")
    )
    targets = {e["code"]: [(t["code"], t["equivalence"]) for t in e["target"]] for e in cmap["group"][0]["element"]}
    assert targets["1201"] == [("4601", "equivalent")]  # Bergen: renumbered only
    assert targets["0709"] == [("3909", "wider")]  # Larvik 2013: merged with Lardal in 2018
    assert targets["0712"] == [("3909", "equivalent")]  # Larvik 2018: renumbered only since
    assert targets["1850"] == [("1806", "narrower"), ("1875", "narrower")]  # Tysfjord: split in 2020
    assert "gardenberg/kommunekoder" in cmap["description"] and "KLASS 131" in cmap["description"]
    assert set(targets) == set(TABLES.pre2024) - {
        e["code"]
        for e in json.loads(
            (REPO / "terminology" / "ConceptMap-kommunenummer-pre2024-to-2024.json").read_text(encoding="utf-8")
        )["group"][0]["element"]
    }


def test_a_bydel_of_an_unknown_trust_is_refused_at_load() -> None:
    broken = dict(TABLES.districts)
    broken["030112"] = dataclasses.replace(broken["030112"], orgnr="999999999")
    with pytest.raises(ValueError, match="030112"):
        dataclasses.replace(TABLES, districts=broken)._check()
