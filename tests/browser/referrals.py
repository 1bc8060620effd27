"""Referral Bundles for the web app's tests and benchmark: the sample referral with another patient, another
home municipality (or none: manual triage), and its own identifier."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from functools import cache
from pathlib import Path

from tests.api.fhirhttp import fnr

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "referral-transaction.json"
UNKNOWN_MUNICIPALITY = "9999"
MUNICIPALITY_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"


@cache
def _sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def referral_bundle(n: int, family: str, municipality: str | None, given: str = "Ola") -> dict:
    """The ``n``-th test referral: patient ``given family`` (a fødselsnummer of their own) living in
    ``municipality`` (None: an unknown municipality number, so manual triage)."""
    bundle = copy.deepcopy(_sample())
    birth = (date(1950, 1, 1) + timedelta(days=n // 400)).isoformat()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = fnr(birth, f"{n % 400:x}")
            resource["birthDate"] = birth
            resource["name"] = [{"use": "official", "family": family, "given": [given]}]
            coding = resource["address"][0]["_district"]["extension"][0]["valueCoding"]
            coding["code"] = municipality or UNKNOWN_MUNICIPALITY
            coding.pop("display", None)
            resource["address"][0].pop("district", None)
            resource["address"][0]["_district"] = {"extension": [{"url": MUNICIPALITY_EXT, "valueCoding": coding}]}
        elif resource["resourceType"] == "ServiceRequest":
            resource["identifier"][0]["value"] = f"WEB-{n}-{family}"
            resource.pop("performer", None)
    return bundle
