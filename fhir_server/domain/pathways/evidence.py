"""What a pathway suggestion is decided on, gathered in one place for the intake and ``$suggest-pathway``.

The evidence is the referral itself (its reasonCode), its patient (age, gender) and the Conditions and
Observations about that patient that the referral brought: those it links (``reasonReference``,
``supportingInfo``) and those that arrived in the same Bundle without a link. The intake records the
latter as entities of its Provenance, so a stored referral is judged on exactly what it brought.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError

#: The resource types a suggestion reads besides the referral and its patient.
EVIDENCE_TYPES = ("Condition", "Observation")


def _references(referral: dict) -> list[str]:
    found = []
    for key in ("reasonReference", "supportingInfo"):
        for item in referral.get(key) or []:
            reference = item.get("reference") if isinstance(item, dict) else None
            if isinstance(reference, str):
                found.append(reference)
    return found


def _about(resource: dict, patient_reference: str | None) -> bool:
    """True for a Condition or Observation about the referral's patient (or naming no subject at all)."""
    if resource.get("resourceType") not in EVIDENCE_TYPES:
        return False
    subject = (resource.get("subject") or {}).get("reference")
    return subject is None or patient_reference is None or subject == patient_reference


def evidence_in_bundle(entries: Iterable[dict], referral: dict) -> list[dict]:
    """The Conditions and Observations about the referral's patient that its Bundle carries (linked or not)."""
    patient_reference = (referral.get("subject") or {}).get("reference")
    resources = (e.get("resource") for e in entries if isinstance(e, dict))
    return [r for r in resources if isinstance(r, dict) and _about(r, patient_reference)]


def evidence_of_stored(referral: dict, brought: Iterable[str], read: Callable[[str], dict | None]) -> list[dict]:
    """The evidence of a stored referral: what it links, and what arrived with it (``brought``: references
    recorded by the intake), read with ``read`` (``Type/id`` → the resource, or None when not visible)."""
    patient_reference = (referral.get("subject") or {}).get("reference")
    seen: set[str] = set()
    found = []
    for reference in [*_references(referral), *brought]:
        if reference in seen or reference.partition("/")[0] not in EVIDENCE_TYPES:
            continue
        seen.add(reference)
        resource = read(reference)
        if resource is not None and _about(resource, patient_reference):
            found.append(resource)
    return found


def brought_references(provenances: Iterable[dict], referral_reference: str) -> list[str]:
    """The evidence references the intake's Provenance of a referral lists as entities (role source)."""
    found = []
    for provenance in provenances:
        targets = {(t or {}).get("reference") for t in provenance.get("target") or []}
        if referral_reference not in targets:
            continue
        for entity in provenance.get("entity") or []:
            reference = ((entity or {}).get("what") or {}).get("reference")
            if isinstance(reference, str) and reference.partition("/")[0] in EVIDENCE_TYPES:
                found.append(reference)
    return found


def stored_referral_evidence(service: FhirService, referral_id: str, referral: dict) -> list[dict]:
    """The evidence of the stored referral ``ServiceRequest/[referral_id]``, as far as the caller may see it."""
    reference = f"ServiceRequest/{referral_id}"
    _request, page = service.search("Provenance", [("target", reference), ("_count", "20")])
    provenances = [jsonio.loads(s.body or b"{}") for s in page.matches]

    def read(ref: str) -> dict | None:
        rtype, _, rid = ref.partition("/")
        try:
            return jsonio.loads(service.read(rtype, rid).body or b"{}")
        except FhirError:
            return None

    return evidence_of_stored(referral, brought_references(provenances, reference), read)
