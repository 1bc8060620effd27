"""What refuses a referral and what only warns (lenient where the national standard is lenient).

A referral is refused only when it cannot be processed at all: base R4 errors, no identifiable patient (a
national identity number that passes its checks, or name and birth date), no sender (``requester``).
Deviations from the Norwegian and hub profiles and identifier check-digit problems become warnings, kept with
the referral and returned to the sender; a resource that breaks a profile no longer claims it. A sender that
asks for strict handling (``Prefer: handling=strict``) is refused on every error, as before.

The whole Bundle is validated once here; the transaction then runs without validating again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fhir_server import naming
from fhir_server.core.interactions import Validator
from fhir_server.core.issues import FhirError, Issue, is_error, refusal_status

if TYPE_CHECKING:
    from fhir_server.core.validation.profile.validator import ProfileValidator

PATIENT_SYSTEMS = frozenset({naming.FNR_SYSTEM, naming.DNR_SYSTEM, naming.FHN_SYSTEM})


@dataclass(frozen=True)
class ReferralChecks:
    """The write checks, kept apart so that the intake can tell refusals from warnings."""

    base: Validator
    identifiers: Validator
    profiles: ProfileValidator


@dataclass
class Verdict:
    """The outcome of checking a referral Bundle: the warnings to keep and return (errors refuse)."""

    warnings: list[Issue] = field(default_factory=list)


def check_referral(
    checks: ReferralChecks,
    entries: list[dict],
    index: int,
    patient: dict | None,
    *,
    strict: bool,
    sent: int,
) -> Verdict:
    """Validate the referral's Bundle once; raise :class:`FhirError` for what refuses it.

    The first ``sent`` entries are the sender's; what the intake added (the routing Task, its Provenance) is
    checked against its profiles too (base R4 only for the sender's entries: the intake's own are built by
    tested code), but its problems (a Task whose focus breaks a profile) are the referral's, told there.
    Profile claims a resource breaks are removed from it (in place)."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    # base R4 for what the sender sent; what the intake built from it is the server's own tested shape
    base = checks.base({**bundle, "entry": entries[:sent]})
    if any(is_error(i) for i in base):
        raise FhirError(refusal_status(base), base)
    identifiers = checks.identifiers(bundle)
    verdicts: dict = {}
    profiles = checks.profiles.validate(bundle, verdicts=verdicts)
    found = [i for i in [*base, *identifiers, *profiles] if _sender_entry(i, sent)]
    if strict and any(is_error(i) for i in found):
        raise FhirError(refusal_status(found), found)
    _require_identity(entries, index, patient, identifiers)
    _drop_broken_claims(entries, verdicts)
    return Verdict([_as_warning(i) for i in found])


def entry_of(issue: Issue) -> int | None:
    """The Bundle entry an issue is about (``Bundle.entry[i]...``), if any."""
    expression = issue.expression or ""
    if not expression.startswith("Bundle.entry["):
        return None
    number = expression[len("Bundle.entry[") :].split("]", 1)[0]
    return int(number) if number.isdigit() else None


def _sender_entry(issue: Issue, sent: int) -> bool:
    """True unless the issue is about an entry past the sender's first ``sent`` (one the intake added)."""
    position = entry_of(issue)
    return position is None or position < sent


def _as_warning(issue: Issue) -> Issue:
    if not is_error(issue):
        return issue
    return Issue("warning", issue.code, issue.diagnostics, issue.expression, issue.diagnostics_nb, issue.rule)


def _require_identity(entries: list[dict], index: int, patient: dict | None, identifier_issues: list[Issue]) -> None:
    """Refuse a referral whose patient cannot be identified or that names no sender."""
    referral = entries[index]["resource"]
    where = f"Bundle.entry[{index}].resource"
    requester = referral.get("requester")
    if not isinstance(requester, dict) or not (requester.get("reference") or requester.get("identifier")):
        raise FhirError.single(
            422,
            "required",
            "the referral names no sender: ServiceRequest.requester (the referring practitioner or organisation)",
            f"{where}.requester",
            diagnostics_nb="henvisningen mangler avsender: ServiceRequest.requester (henvisende behandler eller "
            "virksomhet)",
        )
    if patient is None:
        raise FhirError.single(
            422,
            "required",
            "the referral names no patient that can be found: ServiceRequest.subject",
            f"{where}.subject",
            diagnostics_nb="henvisningen mangler en pasient som kan finnes: ServiceRequest.subject",
        )
    position = next((i for i, e in enumerate(entries) if e.get("resource") is patient), None)
    if position is None:  # a stored patient, identified when it was stored
        return
    path = f"Bundle.entry[{position}].resource"
    faulty = {i.expression for i in identifier_issues if is_error(i)}
    for i, identifier in enumerate(patient.get("identifier") or []):
        if (
            isinstance(identifier, dict)
            and identifier.get("system") in PATIENT_SYSTEMS
            and identifier.get("value")
            and f"{path}.identifier[{i}].value" not in faulty
        ):
            return
    if patient.get("name") and patient.get("birthDate"):
        return
    raise FhirError.single(
        422,
        "required",
        "the patient cannot be identified: give a valid national identity number (fødselsnummer, D-nummer or "
        "FH-nummer), or the patient's name and birth date",
        f"{path}.identifier",
        diagnostics_nb="pasienten kan ikke identifiseres: oppgi gyldig fødselsnummer, D-nummer eller FH-nummer, "
        "eller pasientens navn og fødselsdato",
    )


def _drop_broken_claims(entries: list[dict], verdicts: dict) -> None:
    """Remove every ``meta.profile`` claim the resource was found not to conform to."""
    for entry in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        meta = resource.get("meta")
        if not isinstance(meta, dict) or not isinstance(meta.get("profile"), list):
            continue
        kept = [url for url in meta["profile"] if verdicts.get((id(resource), url)) is not False]
        if len(kept) == len(meta["profile"]):
            continue
        if kept:
            meta["profile"] = kept
        else:
            del meta["profile"]
            if not meta:
                del resource["meta"]
