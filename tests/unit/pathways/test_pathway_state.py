"""Milestone states of a pathway CarePlan and the per-CarePlan summary."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.parameters import Parameters

from fhir_server.domain.pathways.apply import apply_plan_definition
from fhir_server.domain.pathways.catalog import PathwayCatalog
from fhir_server.domain.pathways.state import complete_milestone, milestone_states, reschedule, summary

CATALOG = PathwayCatalog.load()
SR = {"resourceType": "ServiceRequest", "id": "sr1", "priority": "routine"}
OUTCOME = "https://fhir.referral-hub.no/CodeSystem/pathway-clinical-decision-outcome"


def careplan(name: str = "tvangslidelse-ocd") -> dict:
    plan = CATALOG.plan(f"https://fhir.referral-hub.no/PlanDefinition/{name}")
    result, _ = apply_plan_definition(plan, SR, "Patient/p1", date(2026, 4, 1), catalog=CATALOG)
    return result


def states(cp: dict, today: date) -> dict[str, str]:
    return {m.activity_id: m.state for m in milestone_states(cp, today)}


def test_fresh_careplan() -> None:
    assert states(careplan(), date(2026, 4, 2)) == {
        "referral-received": "done-on-time",
        "referral-assessed": "due",  # its clock runs from receipt
        "pathway-start": "done-on-time",  # 2019 rule: the start date is the received date
        "first-attendance": "due",
        "clinical-decision": "not-yet-due",  # first attendance not done
        "evaluation": "not-yet-due",
        "closing": "not-yet-due",
    }


def test_legal_assessment_deadline_overdue_after_ten_working_days() -> None:
    cp = careplan()
    assert states(cp, date(2026, 4, 20))["referral-assessed"] == "due"
    (assessed,) = [m for m in milestone_states(cp, date(2026, 4, 21)) if m.activity_id == "referral-assessed"]
    assert assessed.state == "overdue" and assessed.legal_deadline and assessed.days_past_due == 1


def test_done_on_time_and_done_late() -> None:
    cp = complete_milestone(careplan(), "referral-assessed", date(2026, 4, 20))
    assert states(cp, date(2026, 5, 1))["referral-assessed"] == "done-on-time"
    cp = complete_milestone(careplan(), "referral-assessed", date(2026, 4, 22))
    (late,) = [m for m in milestone_states(cp, date(2026, 5, 1)) if m.activity_id == "referral-assessed"]
    assert (late.state, late.completed, late.days_past_due) == ("done-late", date(2026, 4, 22), 2)


def test_completion_reschedules_from_the_actual_date_and_sets_outcome() -> None:
    cp = complete_milestone(careplan(), "first-attendance", date(2026, 4, 10))
    cp = complete_milestone(cp, "clinical-decision", date(2026, 5, 1), {"system": OUTCOME, "code": "treatment-phv"})
    CarePlan.model_validate(cp)
    by_id = {a.get("id"): a for a in cp["activity"]}
    assert by_id["clinical-decision"]["outcomeCodeableConcept"][0]["coding"][0]["code"] == "treatment-phv"
    decision = next(m for m in milestone_states(cp, date(2026, 5, 2)) if m.activity_id == "clinical-decision")
    assert decision.due == date(2026, 6, 5)  # 56 days after the actual first attendance, not after 13 May
    assert decision.state == "done-on-time"
    assert states(cp, date(2026, 5, 2))["evaluation"] == "due"


def test_complete_does_not_change_the_input() -> None:
    cp = careplan()
    complete_milestone(cp, "referral-assessed", date(2026, 4, 3))
    assert cp["activity"][2]["detail"]["status"] == "not-started"


def test_complete_unknown_milestone() -> None:
    with pytest.raises(KeyError):
        complete_milestone(careplan(), "nope", date(2026, 4, 3))


def test_cancelled_milestones_are_left_out() -> None:
    cp = careplan()
    cp["activity"][-1]["detail"]["status"] = "cancelled"
    assert "closing" not in states(cp, date(2026, 4, 2))


def test_reschedule_is_stable_without_completions() -> None:
    cp = careplan("spiseforstyrrelser-barn-og-unge")
    assert reschedule(cp) == cp


def test_summary_parameters() -> None:
    cp = careplan()
    cp["id"] = "cp1"
    result = summary(cp, date(2026, 4, 21))
    Parameters.model_validate(result)
    params = result["parameter"]
    assert params[0] == {"name": "carePlan", "valueReference": {"reference": "CarePlan/cp1"}}
    assert {"name": "overall", "valueCode": "overdue"} in params
    counts = {p["part"][0]["valueCode"]: p["part"][1]["valueInteger"] for p in params if p["name"] == "count"}
    assert counts == {"done-on-time": 2, "done-late": 0, "due": 1, "overdue": 1, "not-yet-due": 3}
    milestones = [p for p in params if p["name"] == "milestone"]
    assert len(milestones) == 7
    assessed = next(m["part"] for m in milestones if m["part"][0]["valueString"] == "referral-assessed")
    assert {"name": "due", "valueDate": "2026-04-20"} in assessed
    assert {"name": "legalDeadline", "valueBoolean": True} in assessed


def test_summary_on_track_and_complete() -> None:
    cp = careplan("ordinaer-henvisning")
    assert {"name": "overall", "valueCode": "on-track"} in summary(cp, date(2026, 4, 2))["parameter"]
    cp = complete_milestone(cp, "referral-assessed", date(2026, 4, 7))
    assert {"name": "overall", "valueCode": "complete"} in summary(cp, date(2026, 4, 30))["parameter"]
