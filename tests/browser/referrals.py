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
ICD10_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.7110"
BIRTH_DAYS = 20_000


@cache
def _sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def referral_bundle(
    n: int, family: str, municipality: str | None, given: str = "Ola", diagnosis: tuple[str, str] | None = None
) -> dict:
    """The ``n``-th test referral: patient ``given family`` (a fødselsnummer of their own) living in
    ``municipality`` (None: an unknown municipality number, so manual triage); ``diagnosis`` (ICD-10 code,
    text) instead of the sample's F32.1."""
    bundle = copy.deepcopy(_sample())
    # a birth date of their own (adults born 1950-2004), so each has a fødselsnummer of their own: for one
    # birth date, seeds ten apart never meet (a seed whose check digit fails takes the next number)
    birth = (date(1950, 1, 1) + timedelta(days=n % BIRTH_DAYS)).isoformat()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = fnr(birth, f"{n // BIRTH_DAYS * 10:x}")
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
        if diagnosis and resource["resourceType"] in ("ServiceRequest", "Condition"):
            for concept in [*resource.get("reasonCode", []), resource.get("code", {})]:
                for coding in concept.get("coding", []):
                    if coding.get("system") == ICD10_SYSTEM:
                        coding.update(code=diagnosis[0], display=diagnosis[1])
    return bundle
