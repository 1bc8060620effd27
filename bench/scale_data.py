"""Synthetic referral data as Bulk Data NDJSON, deterministic for a count and a seed (for the import and
the scale benchmark).

``write_referrals(folder, count, seed)`` writes ``Organization.ndjson`` (GP offices), ``Practitioner.ndjson``
(their GPs), ``Patient.ndjson``, ``Condition.ndjson`` and ``ServiceRequest.ndjson`` (one referral per patient,
its reason a Condition; the patient names its GP and GP office, the referral its GP as requester). Every
resource has an id (the import keeps it) and claims the project's profiles;
identity numbers have valid check digits (the server's own rules pick them). Patients live in municipalities
spread over every region (the project's municipality table); about 5 % of the referrals ask for a treatment
place in another region (free choice), about 4 % cannot be routed (no municipality code, or a foreign
address: manual triage). Reasons are mostly ICD-10 F codes (mental health and substance use), some Z and R.

Run:  python bench/scale_data.py FOLDER [--count 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server import naming  # noqa: E402
from fhir_server.core.validation.identifiers import IdentifierKind, check_number  # noqa: E402
from fhir_server.domain.referral.intake import PROFILES  # noqa: E402
from fhir_server.domain.routing.tables import default_tables  # noqa: E402
from tests.api.fhirhttp import fnr  # noqa: E402

ICD10 = "urn:oid:2.16.578.1.12.4.1.1.7110"
MUNICIPALITY_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
MUNICIPALITY_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.3402"
REFERRAL_ID = naming.naming_system("referral-id")
#: (code, display, weight): mostly mental health (F2x-F9x) and substance use (F1x), some Z and R codes
REASONS = (
    ("F32.1", "Moderat depressiv episode", 18),
    ("F41.1", "Generalisert angstlidelse", 14),
    ("F43.1", "Posttraumatisk stresslidelse", 8),
    ("F20.0", "Paranoid schizofreni", 4),
    ("F31.1", "Bipolar affektiv lidelse", 4),
    ("F50.0", "Anoreksi", 3),
    ("F60.3", "Emosjonelt ustabil personlighetsforstyrrelse", 4),
    ("F90.0", "Forstyrrelse av aktivitet og oppmerksomhet", 8),
    ("F84.0", "Barneautisme", 2),
    ("F10.2", "Alkoholavhengighet", 9),
    ("F11.2", "Opioidavhengighet", 3),
    ("F12.2", "Cannabisavhengighet", 4),
    ("F19.2", "Blandingsmisbruk", 4),
    ("Z63.0", "Problemer i forholdet til ektefelle eller partner", 3),
    ("R45.8", "Andre symptomer og tegn med tilknytning til emosjonell tilstand", 3),
)
REFERRALS_PER_OFFICE = 40
GPS_PER_OFFICE = 2
FILES = ("Organization", "Practitioner", "Patient", "Condition", "ServiceRequest")


def _valid(kind: IdentifierKind, candidates: Iterator[str]) -> str:
    """The first candidate the server's identifier rules accept."""
    for value in candidates:
        if check_number(kind, value) is None:
            return value
    raise ValueError(f"no valid {kind.value}")


def _numbers(rng: random.Random, digits: int) -> Iterator[str]:
    while True:
        yield str(rng.randrange(10 ** (digits - 1), 10**digits))


def _office(n: int, rng: random.Random) -> dict:
    return {
        "resourceType": "Organization",
        "id": f"gp-office-{n}",
        "meta": {"profile": [PROFILES["Organization"]]},
        "identifier": [
            {"system": naming.ORGNR_SYSTEM, "value": _valid(IdentifierKind.ORGNR, _numbers(rng, 9))},
            {"system": naming.HER_SYSTEM, "value": str(100000 + n)},
        ],
        "active": True,
        "name": f"Legekontoret {n}",
    }


def _gp(n: int, office: int, rng: random.Random) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": f"gp-{n}",
        "meta": {"profile": [PROFILES["Practitioner"]]},
        "identifier": [{"system": naming.HPR_SYSTEM, "value": _valid(IdentifierKind.HPR, _numbers(rng, 7))}],
        "active": True,
        "name": [{"family": f"Lege{n}", "given": ["Kari" if n % 2 else "Per"]}],
        "_office": office,  # removed before writing: which office the GP works at
    }


class Referrals:
    """The referral set of one seed: patients, conditions and referrals by number."""

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.seed = seed
        self.rng = random.Random(seed)
        tables = default_tables()
        self.municipalities = sorted(tables.municipalities)
        self.municipality_names = {code: m.name for code, m in tables.municipalities.items()}
        self.trusts = sorted(o.orgnr for o in tables.organizations.values() if o.kind == "hf")
        self.rhf_of_trust = {o.orgnr: o.rhf_orgnr for o in tables.organizations.values()}
        self.rhf_of_municipality = tables.rhf_of_municipality
        self.offices = max(1, count // REFERRALS_PER_OFFICE)
        self.gps = self.offices * GPS_PER_OFFICE
        self.weights = [w for _, _, w in REASONS]
        self.authored_start = date(2026, 1, 5)

    def parties(self) -> tuple[list[dict], list[dict]]:
        offices = [_office(n, self.rng) for n in range(1, self.offices + 1)]
        gps = [_gp(n, 1 + (n - 1) // GPS_PER_OFFICE, self.rng) for n in range(1, self.gps + 1)]
        return offices, gps

    def referral(self, n: int) -> tuple[dict, dict, dict]:
        """Patient, Condition and ServiceRequest of referral ``n`` (from 1): the same for a seed, whatever is
        written before it."""
        rng = random.Random(self.seed * 10_000_019 + n)
        child = rng.random() < 0.2
        age_days = rng.randrange(6 * 365, 17 * 365) if child else rng.randrange(18 * 365, 85 * 365)
        birth = date(2026, 6, 1) - timedelta(days=age_days)
        key = f"{n:07d}"
        municipality = rng.choice(self.municipalities)
        address: dict = {"use": "home", "line": [f"Gate {n % 200 + 1}"], "postalCode": f"{rng.randrange(1, 9999):04d}"}
        kind = rng.random()
        if kind < 0.03:  # no municipality code: manual triage
            address["city"] = "Ukjent"
        elif kind < 0.04:  # abroad: manual triage
            address.update(city="Göteborg", country="SE")
        else:
            address.update(district=self.municipality_names[municipality], country="NO")
            address["_district"] = {
                "extension": [
                    {"url": MUNICIPALITY_EXT, "valueCoding": {"system": MUNICIPALITY_SYSTEM, "code": municipality}}
                ]
            }
        patient = {
            "resourceType": "Patient",
            "id": f"p-{key}",
            "meta": {"profile": [PROFILES["Patient"]]},
            "identifier": [{"system": naming.FNR_SYSTEM, "value": fnr(birth.isoformat(), f"{n:x}")}],
            "name": [{"family": f"Pasient{n}", "given": ["Test"]}],
            "gender": rng.choice(("female", "male")),
            "birthDate": birth.isoformat(),
            "address": [address],
        }
        code, display, _ = rng.choices(REASONS, self.weights)[0]
        gp = 1 + rng.randrange(self.gps)
        patient["generalPractitioner"] = [
            {"reference": f"Practitioner/gp-{gp}"},
            {"reference": f"Organization/gp-office-{1 + (gp - 1) // GPS_PER_OFFICE}"},
        ]
        authored = self.authored_start + timedelta(days=rng.randrange(300), minutes=rng.randrange(600))
        condition = {
            "resourceType": "Condition",
            "id": f"c-{key}",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/p-{key}"},
            "recordedDate": authored.isoformat(),
        }
        referral = {
            "resourceType": "ServiceRequest",
            "id": f"sr-{key}",
            "meta": {"profile": [PROFILES["ServiceRequest"]]},
            "identifier": [{"system": REFERRAL_ID, "value": f"henv-scale-{key}"}],
            "status": "active",
            "intent": "order",
            "priority": "urgent" if rng.random() < 0.1 else "routine",
            "category": [
                {"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}
            ],
            "code": {"text": "Henvisning til spesialisthelsetjenesten"},
            "subject": {"reference": f"Patient/p-{key}"},
            "authoredOn": f"{authored.isoformat()}T{8 + n % 8:02d}:{n % 60:02d}:00+01:00",
            "requester": {"reference": f"Practitioner/gp-{gp}"},
            "reasonCode": [{"coding": [{"system": ICD10, "code": code, "display": display}]}],
            "reasonReference": [{"reference": f"Condition/c-{key}"}],
        }
        home = self.rhf_of_municipality(municipality) if "_district" in address else None
        if rng.random() < 0.05:  # free choice of treatment place: a health trust in another region
            away = [t for t in self.trusts if self.rhf_of_trust[t] != home] or self.trusts
            referral["performer"] = [{"identifier": {"system": naming.ORGNR_SYSTEM, "value": rng.choice(away)}}]
        return patient, condition, referral


def write_referrals(
    folder: Path, count: int, seed: int = 1, *, first: int = 1, total: int | None = None
) -> dict[str, int]:
    """Write ``count`` referrals and what they name as NDJSON files in ``folder``; returns lines per type.

    A slice of a larger set: referrals ``first`` .. ``first + count - 1`` of ``total`` (the GP offices and
    GPs, sized by ``total``, are written with the slice that starts at 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = Referrals(total or count, seed)
    lines = {name: 0 for name in FILES}
    handles = {name: (folder / f"{name}.ndjson").open("w", encoding="utf-8") for name in FILES}
    try:

        def write(resource: dict) -> None:
            handles[resource["resourceType"]].write(json.dumps(resource, ensure_ascii=False) + "\n")
            lines[resource["resourceType"]] += 1

        if first == 1:
            offices, gps = data.parties()
            for office in offices:
                write(office)
            for gp in gps:
                gp.pop("_office")
                write(gp)
        for n in range(first, first + count):
            for resource in data.referral(n):
                write(resource)
    finally:
        for handle in handles.values():
            handle.close()
    return {name: n for name, n in lines.items() if n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    lines = write_referrals(args.folder, args.count, args.seed)
    print(json.dumps(lines))


if __name__ == "__main__":
    main()
