"""Reading a referral Bundle: its referral entry and identifier, its patient, the parties it names."""

from __future__ import annotations

from typing import Any

from fhir_server import naming
from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError

REFERRAL_CATEGORY = ("http://snomed.info/sct", "3457005")
#: identifiers that name one party: fødselsnummer, D-nummer, FH-nummer; HPR; organisasjonsnummer, HER-id
PARTY_SYSTEMS = {
    "Patient": frozenset({naming.FNR_SYSTEM, naming.DNR_SYSTEM, naming.FHN_SYSTEM}),
    "Practitioner": frozenset({naming.HPR_SYSTEM}),
    "Organization": frozenset({naming.ORGNR_SYSTEM, naming.HER_SYSTEM}),
}


def is_referral(resource: Any) -> bool:
    """A ServiceRequest whose category says patient referral (SNOMED CT 3457005)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
        return False
    for category in resource.get("category", []) or []:
        for coding in (category or {}).get("coding", []) or []:
            if (coding.get("system"), coding.get("code")) == REFERRAL_CATEGORY:
                return True
    return False


def referral_index(entries: list) -> int:
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and is_referral(entry.get("resource")):
            return i
    raise FhirError.single(
        422,
        "required",
        "the Bundle holds no referral: a ServiceRequest with category SNOMED CT 3457005",
        "Bundle.entry",
    )


def referral_identifier(referral: dict, index: int) -> tuple[str, str]:
    for identifier in referral.get("identifier", []) or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return identifier["system"], identifier["value"]
    raise FhirError.single(
        422,
        "required",
        "a referral needs an identifier (system and value) so that it is never stored twice",
        f"Bundle.entry[{index}].resource.identifier",
        diagnostics_nb="en henvisning må ha en identifikator (system og verdi)",
    )


def patient_reference(referral: dict) -> str | None:
    reference = (referral.get("subject") or {}).get("reference")
    return reference if isinstance(reference, str) else None


def resolve_patient(entries: list[dict], referral: dict, service: FhirService) -> dict | None:
    reference = patient_reference(referral)
    if not reference:
        return None
    found = entries_by_reference(entries).get(reference)
    if found is not None:
        return found
    if reference.startswith("Patient/"):
        try:
            return jsonio.loads(service.read("Patient", reference.split("/")[1]).body or b"{}")
        except FhirError:
            return None
    return None


def reuse_known_parties(entries: list[dict]) -> None:
    """Patients, practitioners and organisations with a national identifier are created only if new:
    a POST becomes a conditional create on that identifier."""
    for entry in entries:
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        systems = PARTY_SYSTEMS.get(resource.get("resourceType", ""))
        if not systems or request.get("method") != "POST" or request.get("ifNoneExist"):
            continue
        for identifier in resource.get("identifier", []) or []:
            if isinstance(identifier, dict) and identifier.get("system") in systems and identifier.get("value"):
                request["ifNoneExist"] = f"identifier={identifier['system']}|{identifier['value']}"
                break


def entries_by_reference(entries: list[dict]) -> dict[str, dict]:
    """The Bundle's resources by the references that name them: fullUrl, and ``Type/id`` of those with an id."""
    found: dict[str, dict] = {}
    for entry in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        if resource.get("id") and resource.get("resourceType"):
            found[f"{resource['resourceType']}/{resource['id']}"] = resource
        if entry.get("fullUrl"):
            found[entry["fullUrl"]] = resource
    return found
