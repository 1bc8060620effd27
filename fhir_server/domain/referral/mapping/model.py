"""What every inbound door (Henvisning XML, the JSON referral form) extracts from a referral, and what it returns.

The doors fill a :class:`ReferralFacts`; :mod:`.bundle_builder` turns the facts into one FHIR transaction Bundle,
so every door produces the same shape of Bundle. ``where`` fields hold the location of a fact in the input
(an XPath-like path for XML, a field path for the form) so that problems found later point back to the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fhir_server.core.issues import Issue
from fhir_server.naming import naming_system

Action = Literal["create", "update", "revoke"]

#: The project's own system for referral ids of inbound messages (no national NamingSystem is known).
REFERRAL_ID_SYSTEM = naming_system("henvisning-id")
#: The project's own system for the diagnoses of a referral, as ``<referral id>-<n>`` (makes re-sends idempotent).
DIAGNOSIS_ID_SYSTEM = naming_system("henvisning-diagnose")


@dataclass
class Ident:
    """One identifier: FHIR system and value, plus where it came from."""

    system: str
    value: str
    where: str | None = None


@dataclass
class AddressFacts:
    use: str | None = None
    lines: list[str] = field(default_factory=list)
    postal_code: str | None = None
    city: str | None = None
    municipality: str | None = None  # kommunenummer (Volven 3402)
    municipality_name: str | None = None
    bydel: str | None = None  # bydelsnummer (Volven 3403)


@dataclass
class PersonFacts:
    """A patient or a health professional."""

    identifiers: list[Ident] = field(default_factory=list)
    family: str | None = None
    given: list[str] = field(default_factory=list)
    text: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    addresses: list[AddressFacts] = field(default_factory=list)
    profession: str | None = None  # Volven 9060 (LE, TL ...)
    where: str | None = None  # the element of the input the person was read from


@dataclass
class OrgFacts:
    name: str | None = None
    identifiers: list[Ident] = field(default_factory=list)
    department: OrgFacts | None = None
    where: str | None = None


@dataclass
class DiagnosisFacts:
    system: str | None  # FHIR Coding.system, None when the input's code system is not a diagnosis code system
    code: str
    display: str | None = None
    where: str | None = None


@dataclass
class ReferralFacts:
    """Everything a door found; the bundle builder needs nothing else."""

    referral_id: str | None = None
    action: Action | None = None
    status: str | None = None  # ServiceRequest.status
    authored_on: str | None = None
    priority: str | None = None  # routine | urgent | stat
    code: dict | None = None  # Coding for ServiceRequest.code: the referral type (Volven 8455)
    order_details: list[dict] = field(default_factory=list)  # Codings (8306/8304, 8480)
    patient: PersonFacts | None = None
    referrer: PersonFacts | None = None
    general_practitioner: PersonFacts | None = None
    requester_org: OrgFacts | None = None
    receiver_org: OrgFacts | None = None
    diagnoses: list[DiagnosisFacts] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    date_extensions: list[tuple[str, str]] = field(default_factory=list)  # (extension url, dateTime)
    pregnant: bool | None = None
    where: str | None = None  # the referral's element in the input (e.g. the Henvisning element)
    requester_where: str | None = None  # where the input names its sender (when it names none)


@dataclass
class MappedReferral:
    """The result of mapping one inbound referral.

    ``bundle`` is a FHIR R4 transaction Bundle (``{}`` when nothing could be mapped, then ``issues`` holds an
    error). ``action`` says what the message does to the stored ServiceRequest; ``referral_identifier`` is
    the (system, value) that finds it. ``issues`` lists problems and rewrites, located in the input.
    """

    action: Action | None
    bundle: dict
    referral_identifier: tuple[str, str] | None
    issues: list[Issue] = field(default_factory=list)
    message_id: str | None = None
    #: new | change | cancel
    message_type: str | None = None
    #: the message function (Volven 8279, e.g. HENVISNING_NYTILSTAND); None for the JSON form
    message_function: str | None = None
    #: "1.1", "2.0" or "form"
    source_format: str | None = None
    sender_her_id: str | None = None
    receiver_her_id: str | None = None
    conversation_id: str | None = None
    #: FHIRPath in ``bundle`` (``Bundle.entry[i].resource...``, or ``ServiceRequest.identifier`` for the
    #: stored referral) -> the element of the input it was mapped from
    sources: dict[str, str] = field(default_factory=dict)

    def located_in_input(self, issues: list[Issue]) -> list[Issue]:
        """``issues`` about the Bundle, each located at the input element its FHIR element came from (the
        longest mapped prefix of its expression; the referral's element when none is mapped)."""
        out = []
        for issue in issues:
            expression = issue.expression or ""
            where = next(
                (
                    self.sources[key]
                    for key in sorted(self.sources, key=len, reverse=True)
                    if expression == key or expression.startswith((key + ".", key + "["))
                ),
                self.sources.get("Bundle") if expression.startswith("Bundle") else None,
            )
            if where is None:
                out.append(issue)
                continue
            named = self._fhir_name(expression)  # the texts name the FHIR element, not the internal Bundle
            en, nb = (t.replace(expression, named) if t else t for t in (issue.diagnostics, issue.diagnostics_nb))
            out.append(Issue(issue.severity, issue.code, en or "", where, nb, issue.rule))
        return out

    def _fhir_name(self, expression: str) -> str:
        """``Bundle.entry[7].resource.reasonCode[0]`` -> ``ServiceRequest.reasonCode[0]``."""
        head, found, tail = expression.partition("].resource")
        if not found or not head.startswith("Bundle.entry["):
            return expression
        entries = self.bundle.get("entry") or []
        number = head[len("Bundle.entry[") :]
        position = int(number) if number.isdigit() else len(entries)
        resource = entries[position].get("resource") if position < len(entries) else None
        return (resource or {}).get("resourceType", "Resource") + tail
