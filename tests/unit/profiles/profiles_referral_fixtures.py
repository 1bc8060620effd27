"""A valid referral (henvisning) as FHIR resources conforming to the project's profiles.

Numbers are synthetic: the fødselsnummer and HPR-nummer pass their check digits but belong to no
one; the organisation numbers are the public numbers of Helse Vest RHF and Helse Bergen HF.
"""

from __future__ import annotations

import copy

HUB = "https://fhir.referral-hub.no/StructureDefinition/"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ENH = "urn:oid:2.16.578.1.12.4.1.4.101"
HER = "urn:oid:2.16.578.1.12.4.1.2"
MUNICIPALITY = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"

PATIENT = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {"profile": [HUB + "hub-referral-patient"]},
    "identifier": [{"system": FNR, "value": "15038512363"}],
    "name": [{"family": "Nordmann", "given": ["Kari"]}],
    "gender": "female",
    "birthDate": "1985-03-15",
    "address": [
        {
            "line": ["Storgata 1"],
            "postalCode": "5003",
            "city": "Bergen",
            "district": "Bergen",
            "_district": {
                "extension": [
                    {"url": MUNICIPALITY, "valueCoding": {"system": "urn:oid:2.16.578.1.12.4.1.1.3402", "code": "4601"}}
                ]
            },
        }
    ],
}

PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "prac-1",
    "meta": {"profile": [HUB + "hub-referral-practitioner"]},
    "identifier": [{"system": HPR, "value": "9144889"}],
    "name": [{"family": "Lege", "given": ["Ola"]}],
}

ORGANIZATION = {
    "resourceType": "Organization",
    "id": "org-1",
    "meta": {"profile": [HUB + "hub-referral-organization"]},
    "identifier": [{"system": ENH, "value": "983974724"}, {"system": HER, "value": "12345"}],
    "name": "Helse Bergen HF",
}

SERVICE_REQUEST = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "meta": {"profile": [HUB + "hub-referral-servicerequest"]},
    "extension": [
        {
            "url": "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato",
            "valueDateTime": "2026-11-20T10:00:00+01:00",
        }
    ],
    "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:8a3e4f0c-6a8e-4a7b-9a55-4d3c2b1a0f9e"}],
    "status": "active",
    "intent": "order",
    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}],
    "priority": "routine",
    "subject": {"reference": "Patient/pat-1"},
    "authoredOn": "2026-11-20",
    "requester": {"reference": "Practitioner/prac-1"},
    "performer": [{"reference": "Organization/org-1"}],
    "reasonCode": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110", "code": "F32.1"}]}],
}

TASK = {
    "resourceType": "Task",
    "id": "task-1",
    "meta": {"profile": [HUB + "hub-routing-task"]},
    "status": "requested",
    "intent": "order",
    "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
    "focus": {"reference": "ServiceRequest/sr-1"},
    "owner": {"reference": "Organization/org-1"},
}


def fresh(resource: dict) -> dict:
    """A deep copy to modify in a test."""
    return copy.deepcopy(resource)


def referral_bundle() -> dict:
    """An 8-entry transaction Bundle of the referral (two organisations, an extra Patient-less entry set)."""
    org2 = fresh(ORGANIZATION)
    org2.update(id="org-2", name="Helse Vest RHF", identifier=[{"system": ENH, "value": "983658725"}])
    org3 = fresh(ORGANIZATION)
    org3.update(id="org-3", name="Fastlegekontoret", identifier=[{"system": HER, "value": "720"}])
    prac2 = fresh(PRACTITIONER)
    prac2.update(id="prac-2", identifier=[{"system": HPR, "value": "9144897"}])
    resources = [
        fresh(PATIENT),
        fresh(PRACTITIONER),
        prac2,
        fresh(ORGANIZATION),
        org2,
        org3,
        fresh(SERVICE_REQUEST),
        fresh(TASK),
    ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"http://example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
