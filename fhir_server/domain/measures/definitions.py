"""The named population definitions and stratifiers a Measure may name: SQL over ``referral_facts``.

A Measure's ``group.population.criteria`` (language :data:`LANGUAGE`) names one definition below;
its ``description`` says the same in words. Each definition is a SQL condition (or, for a
``measure-observation``, a value) over one row of :data:`~.facts.referral_facts`, with the
parameters ``:start`` and ``:end`` (the period, day numbers, inclusive) and ``:asof`` (the day the
report is "as of": the period end, or today when the period has not ended). A recorded date counts as
recorded; ``:asof`` only decides whether a deadline has passed for something not recorded yet.

Columns hold day numbers; ``assessed`` is the CarePlan's referral-assessed milestone, ``decided``
the routing Task's decision (used when no CarePlan records the assessment).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.domain.measures.facts import MILESTONE_COLUMNS, PATHWAY_TYPE_SYSTEM
from fhir_server.naming import ORGNR_SYSTEM

#: ``Expression.language`` of the criteria this server evaluates (named definitions, not FHIRPath).
LANGUAGE = "text/x-referral-hub-measure"

_ACTIVE = "status IS NULL OR status NOT IN ('revoked', 'entered-in-error')"
_ASSESSED = "COALESCE(assessed, decided)"
_WAITING_AT_END = "(first_attendance IS NULL OR first_attendance > :end)"

#: Population definitions: name → SQL condition on one fact row.
POPULATIONS: dict[str, str] = {
    "referral-received-in-period": f"received BETWEEN :start AND :end AND ({_ACTIVE})",
    "assessed-or-assessment-deadline-passed": (f"{_ASSESSED} IS NOT NULL OR assessment_deadline < :asof"),
    "assessed-within-assessment-deadline": (f"{_ASSESSED} IS NOT NULL AND {_ASSESSED} <= assessment_deadline"),
    "health-care-started-in-period": (
        f"first_attendance BETWEEN :start AND :end AND received IS NOT NULL AND ({_ACTIVE})"
    ),
    "started-in-period-or-waiting-at-end-with-care-deadline": (
        f"care_deadline IS NOT NULL AND received <= :end AND ({_ACTIVE}) "
        f"AND (first_attendance BETWEEN :start AND :end OR {_WAITING_AT_END})"
    ),
    "care-deadline-missed": (
        f"(first_attendance BETWEEN :start AND :end AND first_attendance > care_deadline) "
        f"OR ({_WAITING_AT_END} AND care_deadline < :asof)"
    ),
}
for _activity, _col in MILESTONE_COLUMNS.items():
    POPULATIONS[f"{_activity}-due-in-period"] = f"{_col}_due BETWEEN :start AND :end AND ({_ACTIVE})"
    POPULATIONS[f"{_activity}-done-or-overdue"] = f"{_col} IS NOT NULL OR {_col}_due < :asof"
    POPULATIONS[f"{_activity}-done-within-time"] = f"{_col} IS NOT NULL AND {_col} <= {_col}_due"

#: Measure-observation definitions: name → SQL value (whole days) on one fact row.
OBSERVATIONS: dict[str, str] = {
    "days-received-to-first-attendance": "waiting_days",
}


@dataclass(frozen=True)
class Stratifier:
    """A stratifier a Measure may name: the fact column, and the coding system of its values."""

    column: str
    system: str | None = None


#: Stratifier definitions: name → column (and the system its values are codes of).
STRATIFIERS: dict[str, Stratifier] = {
    "region": Stratifier("region", ORGNR_SYSTEM),
    "health-trust": Stratifier("health_trust", ORGNR_SYSTEM),
    "pathway": Stratifier("pathway", PATHWAY_TYPE_SYSTEM),
    "age-group": Stratifier("age_group"),
    "sex": Stratifier("sex", "http://hl7.org/fhir/administrative-gender"),
}
