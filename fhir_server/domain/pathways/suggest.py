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
  reasonCode with a code in the ValueSet ``pregnancy-diagnoses`` (ICD-10 and ICPC-2 codes match under
  any of the system URIs accepted for them);
* an Observation (passed in the same list) whose code is in ``pregnancy-status-observations`` and
  whose valueCodeableConcept is in ``pregnancy-status-pregnant`` (``pregnancy-status-not-pregnant``
  makes it false). The first such Observation in the list wins over any codes.
The code lists are data (``pathways/ValueSet-pregnancy-*.json``), read by the pathway catalog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from stdnum.no import fodselsnummer

from fhir_server.domain.calendar import fhir_oslo_date, oslo_today
from fhir_server.domain.pathways.catalog import (
    PREGNANCY_DIAGNOSES,
    PREGNANCY_STATUS_NOT_PREGNANT,
    PREGNANCY_STATUS_OBSERVATIONS,
    PREGNANCY_STATUS_PREGNANT,
    PathwayCatalog,
)
from fhir_server.domain.pathways.code_lists import normalise_code
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
    is_pregnant = pregnancy(service_request, conditions, catalog) if pregnant is None else pregnant
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


def reference_date(service_request: dict, on_date: date | None = None) -> date:
    """The date the age is computed on: authoredOn, else on_date, else the received-date extension, else today
    (Norwegian dates: a dateTime counts on its Europe/Oslo date)."""
    authored = fhir_oslo_date(service_request.get("authoredOn"))
    if authored:
        return authored
    if on_date:
        return on_date
    for ext in service_request.get("extension", []):
        if ext.get("url") == RECEIVED_DATE_EXT:
            received = fhir_oslo_date(ext.get("valueDateTime"))
            if received:
                return received
    return oslo_today()


def age_on(patient: dict, on: date) -> int | None:
    """Whole years on ``on``; None when neither birthDate nor a valid fnr/D-number gives a birth date."""
    born = _birth_date(patient)
    if born is None:
        return None
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return max(years, 0)


def pregnancy(service_request: dict, resources: Iterable[dict], catalog: PathwayCatalog | None = None) -> bool:
    """True when a Condition, a reasonCode or a pregnancy-status Observation says the patient is pregnant
    (by the catalog's pregnancy code lists; the default catalog's when none is given)."""
    catalog = catalog or _default_catalog()
    found = any(
        _in_list(catalog, PREGNANCY_DIAGNOSES, c)
        for cc in service_request.get("reasonCode", [])
        for c in cc.get("coding", [])
    )
    for res in resources:
        kind = res.get("resourceType")
        if kind == "Observation":
            status = _observation_pregnancy(res, catalog)
            if status is not None:
                return status
        elif kind == "Condition" and _condition_counts(res) and not _is_inactive(res):
            found = found or any(
                _in_list(catalog, PREGNANCY_DIAGNOSES, c) for c in res.get("code", {}).get("coding", [])
            )
    return found


@lru_cache(maxsize=1)
def _default_catalog() -> PathwayCatalog:
    return PathwayCatalog.load()


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


def _in_list(catalog: PathwayCatalog, url: str, coding: dict) -> bool:
    """The coding is in the code list; an ICD-10 or ICPC-2 code under any of the URIs accepted for it."""
    system, code = coding.get("system"), coding.get("code")
    systems = ICD10_SYSTEMS if system in ICD10_SYSTEMS else ICPC2_SYSTEMS if system in ICPC2_SYSTEMS else (system,)
    codes = catalog.code_list(url)
    return any(codes.contains(s, code) for s in systems)


def _observation_pregnancy(observation: dict, catalog: PathwayCatalog) -> bool | None:
    if observation.get("status") in ("entered-in-error", "cancelled"):
        return None
    if not any(
        _in_list(catalog, PREGNANCY_STATUS_OBSERVATIONS, c) for c in observation.get("code", {}).get("coding", [])
    ):
        return None
    values = observation.get("valueCodeableConcept", {}).get("coding", [])
    if any(_in_list(catalog, PREGNANCY_STATUS_PREGNANT, c) for c in values):
        return True
    if any(_in_list(catalog, PREGNANCY_STATUS_NOT_PREGNANT, c) for c in values):
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
