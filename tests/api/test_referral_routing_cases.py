"""Routing over HTTP for the hard cases: retired municipality numbers (2013 on), Oslo bydel -> hospital for adult
mental health care, and manual triage with its reason on the Task (``Task.statusReason``)."""

from __future__ import annotations

import json

import pytest

from tests.api.fhirhttp import Fhir
from tests.api.test_referral_intake import HMN, HN, HSO, HV, referral, submit, task_of
from tests.unit.routing.test_routing_historic_and_triage import HELSE_BERGEN, OSLO_BYDELER, ST_OLAV

TRIAGE_REASON = "https://fhir.referral-hub.no/CodeSystem/triage-reason"
TASK_INPUT = "https://fhir.referral-hub.no/CodeSystem/hub-task-input"
URBAN_DISTRICT_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-urban-district"
BYDEL = "urn:oid:2.16.578.1.12.4.1.1.3403"
MANUAL_TRIAGE = "Organization/hub-manual-triage"


def health_trust(task: dict) -> str | None:
    """The organisasjonsnummer of the Task's 'health-trust' input, or None."""
    for item in task.get("input", []):
        if item["type"]["coding"][0] == {"system": TASK_INPUT, "code": "health-trust"}:
            return item["valueReference"]["identifier"]["value"]
    return None


def triage_reason(task: dict) -> str | None:
    coding = (task.get("statusReason") or {}).get("coding") or [{}]
    assert coding[0].get("system", TRIAGE_REASON) == TRIAGE_REASON
    if coding[0].get("code"):
        assert task["statusReason"]["text"] and coding[0]["display"] == task["statusReason"]["text"]
    return coding[0].get("code")


def patient_address(bundle: dict) -> dict:
    return bundle["entry"][0]["resource"]["address"][0]


def with_bydel(bundle: dict, bydel: str) -> dict:
    ext = {"url": URBAN_DISTRICT_EXT, "valueCoding": {"system": BYDEL, "code": bydel}}
    patient_address(bundle).setdefault("extension", []).append(ext)
    return bundle


# --- municipality numbers from 2013 on --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "rhf", "hf"),
    [
        ("1201", HV, HELSE_BERGEN),  # Bergen before 2020
        ("1601", HMN, ST_OLAV),  # Trondheim before 2018 (Sør-Trøndelag)
        ("1613", HMN, ST_OLAV),  # Snillfjord: split in 2020, every part St. Olavs
        ("0712", HSO, None),  # Larvik before 2018 (Vestfold): merged, renumbered twice
    ],
)
def test_retired_municipality_numbers_route_to_their_region(fhir, unique, old, rhf, hf):
    api = Fhir(fhir)
    submit(api, referral(unique, old))
    task = task_of(api, unique)
    assert task["owner"]["identifier"]["value"] == rhf
    assert task["reasonCode"]["coding"][0]["code"] == "pre2024-municipality"
    assert triage_reason(task) is None and "businessStatus" not in task
    if hf:
        assert health_trust(task) == hf
    stored = json.dumps(api.get(task["for"]["reference"]).json()).replace(" ", "")
    assert f'"code":"{old}"' in stored  # the number as sent is kept beside the 2024 number


def test_retired_number_split_between_trusts_names_the_region_and_the_reason(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "1850"))  # Tysfjord: Narvik (UNN) and Hamarøy (Nordlandssykehuset) since 2020
    task = task_of(api, unique)
    assert task["owner"]["identifier"]["value"] == HN
    assert triage_reason(task) == "retired-municipality-split"
    assert health_trust(task) is None


# --- manual triage, each case with its reason ----------------------------------------------------------------


def test_no_municipality_number_says_so_on_the_task(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, None))
    task = task_of(api, unique)
    assert task["owner"]["reference"] == MANUAL_TRIAGE
    assert triage_reason(task) == "no-municipality-code"
    assert task["businessStatus"]["text"] == "manual-triage: no-municipality-code"


def test_unknown_municipality_number_says_so_on_the_task(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "1999"))
    task = task_of(api, unique)
    assert task["owner"]["reference"] == MANUAL_TRIAGE and triage_reason(task) == "unknown-municipality-code"


def test_foreign_address_goes_to_manual_triage(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique, None)
    address = patient_address(bundle)
    address.update({"city": "Göteborg", "postalCode": "41101", "country": "SE", "district": "Göteborg"})
    submit(api, bundle)
    task = task_of(api, unique)
    assert task["owner"]["reference"] == MANUAL_TRIAGE and triage_reason(task) == "foreign-address"


def test_svalbard_goes_to_manual_triage(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "2100"))
    task = task_of(api, unique)
    assert task["owner"]["reference"] == MANUAL_TRIAGE and triage_reason(task) == "svalbard-jan-mayen"


def test_contradictory_home_addresses_go_to_manual_triage(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique, "4601")
    second = json.loads(json.dumps(patient_address(bundle)))
    second["_district"]["extension"][0]["valueCoding"].update({"code": "5001", "display": "Trondheim"})
    bundle["entry"][0]["resource"]["address"].append(second)
    submit(api, bundle)
    task = task_of(api, unique)
    assert task["owner"]["reference"] == MANUAL_TRIAGE and triage_reason(task) == "contradictory-addresses"


# --- Oslo bydel -> hospital (adult mental health care) --------------------------------------------------------


@pytest.mark.parametrize(("bydel", "hf"), sorted(OSLO_BYDELER.items()))
def test_each_oslo_bydel_names_its_hospital(fhir, unique, bydel, hf):
    api = Fhir(fhir)
    submit(api, with_bydel(referral(unique, "0301"), bydel))  # an adult with depression (F32.1): PHV voksne
    task = task_of(api, unique)
    assert task["owner"]["identifier"]["value"] == HSO
    assert health_trust(task) == hf
    assert task["reasonCode"]["coding"][0]["code"] == "home-municipality"
    assert triage_reason(task) is None


def test_oslo_adult_mental_health_without_bydel_names_the_region_and_says_the_hospital_is_undecided(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "0301"))
    task = task_of(api, unique)
    assert task["owner"]["identifier"]["value"] == HSO
    assert health_trust(task) is None
    assert triage_reason(task) == "bydel-missing"
    assert "businessStatus" not in task  # routed to the region, not to the manual-triage queue


def test_oslo_child_keeps_the_municipality_level_split(fhir, unique):
    api = Fhir(fhir)
    submit(api, with_bydel(referral(unique, "0301", birth="2014-03-02"), "030112"))
    task = task_of(api, unique)
    assert task["owner"]["identifier"]["value"] == HSO
    assert health_trust(task) is None and triage_reason(task) == "hf-split"


def test_the_2013_map_is_served_for_translate(fhir):
    api = Fhir(fhir)
    result = api.get(
        "ConceptMap/$translate?url=https://fhir.referral-hub.no/ConceptMap/kommunenummer-2013-2019-to-2024"
        "&system=https://fhir.referral-hub.no/CodeSystem/kommunenummer-2013-2019&code=1201"
    ).json()
    found = {p["name"]: p for p in result["parameter"]}
    assert found["result"]["valueBoolean"] is True
    concepts = [
        p["valueCoding"]["code"]
        for m in result["parameter"]
        if m["name"] == "match"
        for p in m["part"]
        if p["name"] == "concept"
    ]
    assert concepts == ["4601"]
