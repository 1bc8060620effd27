"""National pathways (nasjonale pasientforløp psykisk helse og rus): the public API in one place.

* :class:`PathwayCatalog` — the PlanDefinitions/ActivityDefinitions/CodeSystems in ``pathways/``.
* :func:`suggest_pathways` — which pathways apply to a referral (rules are FHIRPath in the data).
* :func:`apply_plan_definition` — ``$apply``: PlanDefinition + referral → CarePlan with due dates.
* :func:`milestone_states`, :func:`summary`, :func:`complete_milestone`, :func:`reschedule` — where a
  CarePlan stands on a given day.
"""

from fhir_server.domain.pathways.apply import EXT_MILESTONE_COMPLETED, apply_plan_definition
from fhir_server.domain.pathways.catalog import (
    EXT_DEADLINE_WORKING_DAYS,
    EXT_SUGGESTION_RANK,
    EXT_TIMING_VARIANT,
    PathwayCatalog,
    PathwayCatalogError,
)
from fhir_server.domain.pathways.schedule import ScheduleError
from fhir_server.domain.pathways.state import (
    STATES,
    MilestoneState,
    complete_milestone,
    milestone_states,
    reschedule,
    summary,
)
from fhir_server.domain.pathways.suggest import Suggestion, suggest_pathways

__all__ = [
    "EXT_DEADLINE_WORKING_DAYS",
    "EXT_MILESTONE_COMPLETED",
    "EXT_SUGGESTION_RANK",
    "EXT_TIMING_VARIANT",
    "STATES",
    "MilestoneState",
    "PathwayCatalog",
    "PathwayCatalogError",
    "ScheduleError",
    "Suggestion",
    "apply_plan_definition",
    "complete_milestone",
    "milestone_states",
    "reschedule",
    "suggest_pathways",
    "summary",
]
