"""Turn :class:`ReferralFacts` into one FHIR R4 transaction Bundle (the same shape for every inbound door).

Entries (``urn:uuid:`` fullUrls, references between them by fullUrl):

* Patient, Practitioner(s) and Organization(s): conditional create (``ifNoneExist`` on their first identifier),
  so a re-sent referral does not duplicate them;
* ServiceRequest: ``POST`` with ``ifNoneExist`` for a new referral; conditional ``PUT``
  (``ServiceRequest?identifier=system|value``) for a change or a cancellation (status ``revoked``);
* one Condition per diagnosis (conditional ``PUT`` on the project's own diagnosis identifier, so a change
  message replaces them) and, when the referral says the patient is pregnant, a pregnancy-status Observation
  (LOINC 82810-3 = SNOMED CT 77386006, what ``pathway_suggest.pregnancy`` reads).

The builder also returns ``sources``: FHIRPath in the Bundle -> location in the input, for identifiers, so that
identifier problems can be reported where the sender can find them.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from fhir_server.domain.referral.mapping.model import (
    DIAGNOSIS_ID_SYSTEM,
    REFERRAL_ID_SYSTEM,
    AddressFacts,
    OrgFacts,
    PersonFacts,
    ReferralFacts,
)
from fhir_server.domain.referral.mapping.volven import BYDEL_SYSTEM, KOMMUNE_SYSTEM, VOLVEN_9060
from fhir_server.naming import HNR_SYSTEM, ORGNR_SYSTEM

MUNICIPALITY_CODE_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
URBAN_DISTRICT_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-urban-district"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
REFERRAL_CATEGORY = {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}
HNR_TYPE = {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8327", "code": "HNR"}]}


class _Bundle:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.sources: dict[str, str] = {}

    def add(self, resource: dict, request: dict) -> str:
        full_url = f"urn:uuid:{uuid.uuid4()}"
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    def index(self) -> int:
        """Index the next entry will get."""
        return len(self.entries)


def _query(system: str, value: str) -> str:
    return "identifier=" + quote(f"{system}|{value}", safe=":/|")


def _identifiers(idents: list, bundle: _Bundle, path: str) -> list[dict]:
    out: list[dict] = []
    for i, ident in enumerate(idents):
        item: dict = {"system": ident.system, "value": ident.value}
        if ident.system == HNR_SYSTEM:
            item["type"] = HNR_TYPE
        out.append(item)
        if ident.where:
            bundle.sources[f"{path}.identifier[{i}].value"] = ident.where
    return out


def _name(person: PersonFacts) -> list[dict]:
    name: dict = {}
    if person.family:
        name["family"] = person.family
    if person.given:
        name["given"] = person.given
    if person.text and not name:
        name["text"] = person.text
    return [name] if name else []


def _address(facts: AddressFacts) -> dict:
    address: dict = {}
    if facts.use:
        address["use"] = facts.use
    if facts.lines:
        address["line"] = facts.lines
    if facts.city:
        address["city"] = facts.city
    if facts.municipality:
        if facts.municipality_name:
            address["district"] = facts.municipality_name
        coding = {"system": KOMMUNE_SYSTEM, "code": facts.municipality}
        if facts.municipality_name:
            coding["display"] = facts.municipality_name
        address["_district"] = {"extension": [{"url": MUNICIPALITY_CODE_EXT, "valueCoding": coding}]}
    if facts.postal_code:
        address["postalCode"] = facts.postal_code
    if facts.bydel:
        address["extension"] = [
            {"url": URBAN_DISTRICT_EXT, "valueCoding": {"system": BYDEL_SYSTEM, "code": facts.bydel}}
        ]
    return address


def _conditional(resource_type: str, resource: dict) -> dict:
    ident = (resource.get("identifier") or [None])[0]
    request = {"method": "POST", "url": resource_type}
    if ident:
        request["ifNoneExist"] = _query(ident["system"], ident["value"])
    return request


def _person(resource_type: str, person: PersonFacts, bundle: _Bundle) -> str:
    path = f"Bundle.entry[{bundle.index()}].resource"
    resource: dict = {"resourceType": resource_type}
    if person.where:
        bundle.sources[path] = person.where
    if person.identifiers:
        resource["identifier"] = _identifiers(person.identifiers, bundle, path)
    if name := _name(person):
        resource["name"] = name
    if person.gender:
        resource["gender"] = person.gender
    if person.birth_date:
        resource["birthDate"] = person.birth_date
    if person.addresses:
        resource["address"] = [_address(a) for a in person.addresses]
    if resource_type == "Practitioner" and person.profession:
        resource["qualification"] = [{"code": {"coding": [{"system": VOLVEN_9060, "code": person.profession}]}}]
    return bundle.add(resource, _conditional(resource_type, resource))


def _organization(org: OrgFacts, bundle: _Bundle, part_of: str | None = None) -> str:
    path = f"Bundle.entry[{bundle.index()}].resource"
    resource: dict = {"resourceType": "Organization"}
    if org.where:
        bundle.sources[path] = org.where
    if org.identifiers:
        resource["identifier"] = _identifiers(org.identifiers, bundle, path)
    if org.name:
        resource["name"] = org.name
    if part_of:
        resource["partOf"] = {"reference": part_of}
    return bundle.add(resource, _conditional("Organization", resource))


def _org_with_department(org: OrgFacts, bundle: _Bundle) -> tuple[str, str]:
    """(institution fullUrl, most specific fullUrl: the department when given)."""
    top = _organization(org, bundle)
    if org.department and (org.department.identifiers or org.department.name):
        return top, _organization(org.department, bundle, part_of=top)
    return top, top


def build_bundle(facts: ReferralFacts) -> tuple[dict, dict[str, str]]:
    """The transaction Bundle for ``facts`` and the identifier source map (FHIRPath -> input location)."""
    bundle = _Bundle()
    patient_ref = None
    gp_ref = None
    if facts.general_practitioner and facts.general_practitioner.identifiers:
        gp_ref = _person("Practitioner", facts.general_practitioner, bundle)
    if facts.patient:
        patient_index = bundle.index()
        patient_ref = _person("Patient", facts.patient, bundle)
        if gp_ref:
            bundle.entries[patient_index]["resource"]["generalPractitioner"] = [{"reference": gp_ref}]
    referrer_ref = _person("Practitioner", facts.referrer, bundle) if facts.referrer else None
    requester_org_ref = _org_with_department(facts.requester_org, bundle)[1] if facts.requester_org else None
    performer_ref = _org_with_department(facts.receiver_org, bundle)[1] if facts.receiver_org else None
    performer: dict[str, Any] | None = {"reference": performer_ref} if performer_ref else None
    if performer and facts.receiver_org:  # a logical identifier too: routing reads the orgnr without resolving
        org = facts.receiver_org
        chosen = next((i for o in (org.department, org) if o for i in o.identifiers if i.system == ORGNR_SYSTEM), None)
        chosen = chosen or next((i for o in (org.department, org) if o for i in o.identifiers), None)
        if chosen:
            performer["identifier"] = {"system": chosen.system, "value": chosen.value}
        name = (org.department.name if org.department and org.department.name else None) or org.name
        if name:
            performer["display"] = name

    sr: dict = {"resourceType": "ServiceRequest"}
    if facts.date_extensions:
        sr["extension"] = [{"url": url, "valueDateTime": value} for url, value in facts.date_extensions]
    if facts.referral_id:
        sr["identifier"] = [{"system": REFERRAL_ID_SYSTEM, "value": facts.referral_id}]
    sr["status"] = facts.status or "active"
    sr["intent"] = "order"
    sr["category"] = [REFERRAL_CATEGORY]
    if facts.priority:
        sr["priority"] = facts.priority
    if facts.code:  # the referral type; also needed because orderDetail requires a code (prr-1)
        sr["code"] = {"coding": [facts.code]}
    elif facts.order_details:
        sr["code"] = REFERRAL_CATEGORY
    if facts.order_details:
        sr["orderDetail"] = [{"coding": [c]} for c in facts.order_details]
    if patient_ref:
        sr["subject"] = {"reference": patient_ref}
    if facts.authored_on:
        sr["authoredOn"] = facts.authored_on
    if referrer_ref or requester_org_ref:
        sr["requester"] = {"reference": referrer_ref or requester_org_ref}
    if performer:
        sr["performer"] = [performer]
    reason_codes = []
    for d in facts.diagnoses:
        coding = {"system": d.system, "code": d.code} if d.system else None
        if coding and d.display:
            coding["display"] = d.display
        concept: dict = {"coding": [coding]} if coding else {}
        text = d.display if coding else " ".join(x for x in (d.code, d.display) if x)
        if text:
            concept["text"] = text
        reason_codes.append(concept)
    if reason_codes:
        sr["reasonCode"] = reason_codes
    if facts.notes:
        sr["note"] = [{"text": n} for n in facts.notes]

    sr_path = f"Bundle.entry[{bundle.index()}].resource"
    sender = facts.referrer or facts.requester_org
    for key, where in (
        ("Bundle", facts.where),
        (sr_path, facts.where),
        (f"{sr_path}.subject", facts.patient.where if facts.patient else None),
        (f"{sr_path}.requester", sender.where if sender else facts.requester_where),
        *((f"{sr_path}.reasonCode[{i}]", d.where) for i, d in enumerate(facts.diagnoses)),
    ):
        if where:
            bundle.sources[key] = where
    if facts.action in ("update", "revoke") and facts.referral_id:
        request = {"method": "PUT", "url": "ServiceRequest?" + _query(REFERRAL_ID_SYSTEM, facts.referral_id)}
    else:
        request = _conditional("ServiceRequest", sr)
    bundle.add(sr, request)

    condition_refs = []
    for n, concept in enumerate(reason_codes, start=1):
        if not patient_ref or not concept.get("coding"):
            continue
        condition: dict = {"resourceType": "Condition"}
        if facts.referral_id:
            condition["identifier"] = [{"system": DIAGNOSIS_ID_SYSTEM, "value": f"{facts.referral_id}-{n}"}]
        condition["clinicalStatus"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        }
        condition["code"] = concept
        condition["subject"] = {"reference": patient_ref}
        if facts.authored_on:
            condition["recordedDate"] = facts.authored_on
        if referrer_ref:
            condition["recorder"] = {"reference": referrer_ref}
        ident = condition.get("identifier")
        req = (
            {"method": "PUT", "url": "Condition?" + _query(ident[0]["system"], ident[0]["value"])}
            if ident
            else {"method": "POST", "url": "Condition"}
        )
        if diagnosis := facts.diagnoses[n - 1].where:
            bundle.sources[f"Bundle.entry[{bundle.index()}].resource"] = diagnosis
        condition_refs.append(bundle.add(condition, req))
    if condition_refs:
        sr["reasonReference"] = [{"reference": r} for r in condition_refs]

    if facts.pregnant is not None and patient_ref:
        value = ("77386006", "Pregnant") if facts.pregnant else ("60001007", "Not pregnant")
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "82810-3", "display": "Pregnancy status"}]},
            "subject": {"reference": patient_ref},
            "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": value[0], "display": value[1]}]},
        }
        if facts.authored_on:
            observation["effectiveDateTime"] = facts.authored_on
        obs_ref = bundle.add(observation, {"method": "POST", "url": "Observation"})
        sr["supportingInfo"] = [{"reference": obs_ref}]
    return {"resourceType": "Bundle", "type": "transaction", "entry": bundle.entries}, bundle.sources
