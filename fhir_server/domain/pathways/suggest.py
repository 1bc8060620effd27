"""Suggest national pathways for a referral by evaluating each PlanDefinition's applicability condition.

The rules live in the PlanDefinitions (``action[0].condition``, FHIRPath); this module only builds
the variables they read and runs them in catalog order:

``%age``       whole years on the reference date (empty when unknown)
``%icd10``     ICD-10 codes, upper case without dot or spaces (``F20.0`` → ``F200``)
``%icpc2``     ICPC-2 codes, upper case (``P72``)
``%pregnant``  true / false
``%gender``    Patient.gender (empty when absent)
``%suggested`` urls of the plans already suggested (plans that read it run after the others)

Codes come from ``ServiceRequest.reasonCode`` and from the ``code`` of each Condition passed in
(Conditions whose verificationStatus is refuted or entered-in-error are skipped).

Reference date for the age: ``ServiceRequest.authoredOn``; else ``on_date`` (the received date);
else the Helsenorge received-date extension on the ServiceRequest; else today.
Age: ``Patient.birthDate`` (a partial date counts from its latest possible day, giving the lowest
possible age); without it, the birth date in a valid fødselsnummer or D-number identifier.

Pregnancy (``%pregnant``) is true when any of these holds, unless ``pregnant=`` is passed explicitly:
* an active (not resolved/inactive, not refuted/entered-in-error) Condition or a ServiceRequest
  reasonCode with ICD-10 Z33, Z34, Z35 or O10-O48, ICPC-2 W78, W79 or W84, or SNOMED CT 77386006;
* an Observation (passed in the same list) with LOINC 82810-3 "Pregnancy status" and
  valueCodeableConcept SNOMED CT 77386006 "Pregnant" (60001007 "Not pregnant" makes it false).
  The first such Observation in the list wins over any codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from stdnum.no import fodselsnummer

from fhir_server.domain.pathways.catalog import PathwayCatalog
from fhir_server.naming import DNR_SYSTEM, FNR_SYSTEM

ICD10_SYSTEMS = frozenset(
    {
        "urn:oid:2.16.578.1.12.4.1.1.7110",
        "http://hl7.org/fhir/sid/icd-10-no",
        "http://hl7.org/fhir/sid/icd-10",
        "http://helsenorge.no/fhir/CodeSystem/no-kodeverk-ICD-10.codesystem",
    }
)
ICPC2_SYSTEMS = frozenset(
    {"http://hl7.org/fhir/sid/icpc-2", "urn:oid:2.16.578.1.12.4.1.1.7170", "urn:oid:2.16.840.1.113883.6.139"}
)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
LOINC_PREGNANCY_STATUS = "82810-3"
SNOMED_PREGNANT = "77386006"
SNOMED_NOT_PREGNANT = "60001007"
PREGNANCY_ICD10 = re.compile(r"^(Z3[345]|O(1[0-9]|2[0-9]|3[0-9]|4[0-8]))")
PREGNANCY_ICPC2 = frozenset({"W78", "W79", "W84"})
FNR_SYSTEMS = frozenset({FNR_SYSTEM, DNR_SYSTEM})
RECEIVED_DATE_EXT = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
_SKIP_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_INACTIVE_CLINICAL = frozenset({"inactive", "resolved", "remission"})


@dataclass(frozen=True)
class Suggestion:
    """One suggested pathway, why, and which codes made it apply."""

    url: str
    version: str
    title: str
    reason_en: str
    reason_nb: str
    #: The Codings (as given) that on their own satisfy the plan's condition.
    codes: tuple[dict, ...]

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"

    def as_json(self) -> dict:
        return {
            "planDefinition": self.canonical,
            "title": self.title,
            "reason": {"en": self.reason_en, "nb": self.reason_nb},
            "codes": list(self.codes),
        }


@dataclass(frozen=True)
class _Code:
    kind: str  # icd10 | icpc2
    code: str
    coding: dict


def suggest_pathways(
    service_request: dict,
    patient: dict,
    conditions: list[dict],
    catalog: PathwayCatalog,
    on_date: date | None = None,
    *,
    pregnant: bool | None = None,
) -> list[Suggestion]:
    """The pathways whose applicability condition holds for this referral, in catalog (rank) order."""
    codes = _collect_codes(service_request, conditions)
    reference = reference_date(service_request, on_date)
    age = age_on(patient, reference)
    is_pregnant = pregnancy(service_request, conditions) if pregnant is None else pregnant
    base_env: dict[str, Any] = {
        "age": [] if age is None else age,
        "pregnant": is_pregnant,
        "gender": patient.get("gender") or [],
    }
    suggestions: list[Suggestion] = []
    ordered = sorted(catalog.plans, key=lambda p: catalog.applicability[p["url"]].needs_suggested)
    for plan in ordered:
        rule = catalog.applicability[plan["url"]]

        def holds(selected: Iterable[_Code], rule=rule) -> bool:
            selected = list(selected)
            env = dict(base_env)
            env["icd10"] = [c.code for c in selected if c.kind == "icd10"]
            env["icpc2"] = [c.code for c in selected if c.kind == "icpc2"]
            env["suggested"] = [s.url for s in suggestions]
            return rule.evaluate(service_request, env) == [True]

        if not holds(codes):
            continue
        # With one code, evaluating it alone is the evaluation just done.
        matched = tuple(c.coding for c in codes if len(codes) == 1 or holds([c]))
        suggestions.append(
            Suggestion(plan["url"], plan.get("version", ""), plan["title"], rule.reason_en, rule.reason_nb, matched)
        )
    rank = {p["url"]: i for i, p in enumerate(catalog.plans)}
    return sorted(suggestions, key=lambda s: rank[s.url])


def normalise_code(code: str) -> str:
    """``f20.0`` → ``F200``: upper case, no dot, no spaces."""
    return re.sub(r"[\s.]", "", code).upper()


def reference_date(service_request: dict, on_date: date | None = None) -> date:
    """The date the age is computed on: authoredOn, else on_date, else the received-date extension, else today."""
    authored = _date_prefix(service_request.get("authoredOn"))
    if authored:
        return authored
    if on_date:
        return on_date
    for ext in service_request.get("extension", []):
        if ext.get("url") == RECEIVED_DATE_EXT:
            received = _date_prefix(ext.get("valueDateTime"))
            if received:
                return received
    return date.today()


def age_on(patient: dict, on: date) -> int | None:
    """Whole years on ``on``; None when neither birthDate nor a valid fnr/D-number gives a birth date."""
    born = _birth_date(patient)
    if born is None:
        return None
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return max(years, 0)


def pregnancy(service_request: dict, resources: Iterable[dict]) -> bool:
    """True when a Condition, a reasonCode or a pregnancy-status Observation says the patient is pregnant."""
    found = any(_is_pregnancy_coding(c) for cc in service_request.get("reasonCode", []) for c in cc.get("coding", []))
    for res in resources:
        kind = res.get("resourceType")
        if kind == "Observation":
            status = _observation_pregnancy(res)
            if status is not None:
                return status
        elif kind == "Condition" and _condition_counts(res) and not _is_inactive(res):
            found = found or any(_is_pregnancy_coding(c) for c in res.get("code", {}).get("coding", []))
    return found


def _collect_codes(service_request: dict, conditions: Iterable[dict]) -> list[_Code]:
    concepts = list(service_request.get("reasonCode", []))
    for res in conditions:
        if res.get("resourceType") == "Condition" and _condition_counts(res):
            concepts.append(res.get("code", {}))
    out: list[_Code] = []
    seen: set[tuple[str, str]] = set()
    for concept in concepts:
        for coding in concept.get("coding", []):
            system, code = coding.get("system"), coding.get("code")
            if not code:
                continue
            kind = "icd10" if system in ICD10_SYSTEMS else "icpc2" if system in ICPC2_SYSTEMS else None
            if kind is None:
                continue
            key = (kind, normalise_code(code))
            if key not in seen:
                seen.add(key)
                out.append(_Code(kind, key[1], coding))
    return out


def _condition_counts(condition: dict) -> bool:
    codes = {c.get("code") for c in condition.get("verificationStatus", {}).get("coding", [])}
    return not codes & _SKIP_VERIFICATION


def _is_inactive(condition: dict) -> bool:
    codes = {c.get("code") for c in condition.get("clinicalStatus", {}).get("coding", [])}
    return bool(codes & _INACTIVE_CLINICAL) or any(k.startswith("abatement") for k in condition)


def _is_pregnancy_coding(coding: dict) -> bool:
    system, code = coding.get("system"), normalise_code(coding.get("code") or "")
    if system in ICD10_SYSTEMS:
        return bool(PREGNANCY_ICD10.match(code))
    if system in ICPC2_SYSTEMS:
        return code in PREGNANCY_ICPC2
    return system == SNOMED and code == SNOMED_PREGNANT


def _observation_pregnancy(observation: dict) -> bool | None:
    if observation.get("status") in ("entered-in-error", "cancelled"):
        return None
    coded = {(c.get("system"), c.get("code")) for c in observation.get("code", {}).get("coding", [])}
    if (LOINC, LOINC_PREGNANCY_STATUS) not in coded:
        return None
    values = {(c.get("system"), c.get("code")) for c in observation.get("valueCodeableConcept", {}).get("coding", [])}
    if (SNOMED, SNOMED_PREGNANT) in values:
        return True
    if (SNOMED, SNOMED_NOT_PREGNANT) in values:
        return False
    return None


def _birth_date(patient: dict) -> date | None:
    text = patient.get("birthDate")
    if isinstance(text, str) and re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", text):
        parts = [int(p) for p in text.split("-")]
        if len(parts) == 3:
            return date(*parts)
        if len(parts) == 2:  # latest day of the month: lowest possible age
            year, month = parts
            return date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        return date(parts[0], 12, 31)
    for ident in patient.get("identifier", []):
        if ident.get("system") in FNR_SYSTEMS and ident.get("value"):
            try:
                return fodselsnummer.get_birth_date(fodselsnummer.validate(ident["value"]))
            except Exception:  # invalid numbers give no birth date (stdnum raises several types)
                continue
    return None


def _date_prefix(value: Any) -> date | None:
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
        return date.fromisoformat(value[:10])
    return None
