"""Milestone state of a pathway CarePlan (pure functions over the CarePlan dict).

Where things are recorded (as written by :func:`~fhir_server.domain.pathway_apply.apply_plan_definition`):
* due date: ``activity.detail.scheduledPeriod.end``;
* done: ``activity.detail.status = completed``; the date it was reached: the extension
  ``https://fhir.referral-hub.no/StructureDefinition/milestone-completed`` (valueDate) on ``activity.detail``;
* the outcome of a milestone (e.g. the clinical decision): ``activity.outcomeCodeableConcept``;
* the milestone it counts from: ``relatedAction`` of the same-id action in the contained RequestGroup.

States:
* ``done-on-time``: completed on or before the due date (or completed and no due date / no completion date);
* ``done-late``: completed after the due date;
* ``overdue``: not completed and today is after the due date;
* ``due``: not completed, not overdue, and its clock is running (the milestone it counts from is
  completed, or it has none);
* ``not-yet-due``: not completed and the milestone it counts from is not completed yet.
Activities with status cancelled, stopped or entered-in-error are left out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date

from fhir_server.domain.calendar import fhir_oslo_date
from fhir_server.domain.pathways.apply import EXT_MILESTONE_COMPLETED, PATHWAY_START, REQUEST_GROUP_ID
from fhir_server.domain.pathways.catalog import working_days_rule
from fhir_server.domain.pathways.schedule import due_dates, predecessor

STATES = ("done-on-time", "done-late", "due", "overdue", "not-yet-due")
_LEFT_OUT = frozenset({"cancelled", "stopped", "entered-in-error"})


@dataclass(frozen=True)
class MilestoneState:
    """One milestone of a CarePlan and where it stands on a given day."""

    activity_id: str
    code: dict
    title: str
    state: str
    due: date | None
    completed: date | None
    #: True when the deadline is the legal one in working days (pbrl. § 2-2), not a forløpstid.
    legal_deadline: bool
    #: Calendar days after the due date (overdue: until today; done-late: until completion); else 0.
    days_past_due: int

    def as_json(self) -> dict:
        out: dict = {
            "id": self.activity_id,
            "code": self.code,
            "title": self.title,
            "state": self.state,
            "legalDeadline": self.legal_deadline,
            "daysPastDue": self.days_past_due,
        }
        if self.due:
            out["due"] = self.due.isoformat()
        if self.completed:
            out["completed"] = self.completed.isoformat()
        return out


def milestone_states(careplan: dict, today: date) -> list[MilestoneState]:
    """The state of every milestone activity (those with a ``detail``) on ``today``."""
    rules = _request_group_actions(careplan)
    activities = [a for a in careplan.get("activity", []) if "detail" in a]
    done = {a.get("id"): a["detail"].get("status") == "completed" for a in activities}
    states: list[MilestoneState] = []
    for activity in activities:
        detail = activity["detail"]
        if detail.get("status") in _LEFT_OUT:
            continue
        aid = activity.get("id", "")
        due = fhir_oslo_date(detail.get("scheduledPeriod", {}).get("end"))
        completed = completion_date(activity)
        before = predecessor(rules[aid]) if aid in rules else None
        legal = working_days_rule(detail) is not None
        if done[aid]:
            late = bool(due and completed and completed > due)
            state = "done-late" if late else "done-on-time"
            past = (completed - due).days if late and due and completed else 0
        elif due and today > due:
            state, past = "overdue", (today - due).days
        elif before is None or done.get(before, False):
            state, past = "due", 0
        else:
            state, past = "not-yet-due", 0
        coding = (detail.get("code", {}).get("coding") or [{}])[0]
        states.append(MilestoneState(aid, coding, detail.get("description", ""), state, due, completed, legal, past))
    return states


def summary(careplan: dict, today: date) -> dict:
    """A Parameters resource summarising the CarePlan's milestones on ``today`` (for a summary operation)."""
    states = milestone_states(careplan, today)
    counts = {s: sum(1 for m in states if m.state == s) for s in STATES}
    open_due = sorted((m for m in states if m.state in ("due", "overdue") and m.due), key=lambda m: m.due or date.max)
    if counts["overdue"]:
        overall = "overdue"
    elif all(m.state.startswith("done") for m in states):
        overall = "complete"
    else:
        overall = "on-track"
    params: list[dict] = []
    if careplan.get("id"):
        params.append({"name": "carePlan", "valueReference": {"reference": f"CarePlan/{careplan['id']}"}})
    params.append({"name": "date", "valueDate": today.isoformat()})
    params.append({"name": "overall", "valueCode": overall})
    for state, count in counts.items():
        params.append(
            {"name": "count", "part": [{"name": "state", "valueCode": state}, {"name": "count", "valueInteger": count}]}
        )
    if open_due:
        params.append({"name": "nextDue", "valueString": open_due[0].activity_id})
    for m in states:
        part = [
            {"name": "id", "valueString": m.activity_id},
            {"name": "state", "valueCode": m.state},
            {"name": "legalDeadline", "valueBoolean": m.legal_deadline},
        ]
        if m.code:
            part.insert(1, {"name": "code", "valueCoding": m.code})
        if m.due:
            part.append({"name": "due", "valueDate": m.due.isoformat()})
        if m.completed:
            part.append({"name": "completed", "valueDate": m.completed.isoformat()})
        if m.days_past_due:
            part.append({"name": "daysPastDue", "valueInteger": m.days_past_due})
        params.append({"name": "milestone", "part": part})
    return {"resourceType": "Parameters", "parameter": params}


def complete_milestone(careplan: dict, activity_id: str, on: date, outcome: dict | None = None) -> dict:
    """A copy of ``careplan`` with the milestone completed on ``on`` (and its outcome Coding, if given).

    Open milestones ``concurrent*`` with it are completed on the same day (the pathway start with the
    referral's assessment, under the current rule); when the pathway start is reached, ``period.start``
    becomes its date. The due dates of the milestones not yet completed are recomputed from actual
    completion dates.
    """
    updated = copy.deepcopy(careplan)
    activities = {a.get("id"): a for a in updated.get("activity", []) if "detail" in a}
    if activity_id not in activities:
        raise KeyError(f"CarePlan has no milestone activity {activity_id!r}")
    rules = _request_group_actions(updated)
    done = {activity_id}
    for aid, rule in rules.items():  # milestones are listed after the one they count from
        related = (rule.get("relatedAction") or [{}])[0]
        open_ = activities.get(aid, {}).get("detail", {}).get("status") != "completed"
        if open_ and str(related.get("relationship", "")).startswith("concurrent") and related.get("actionId") in done:
            done.add(aid)
    for aid in done:
        if aid in activities:
            _mark_completed(activities[aid]["detail"], on)
    if outcome is not None:
        activities[activity_id]["outcomeCodeableConcept"] = [{"coding": [copy.deepcopy(outcome)]}]
    if PATHWAY_START in done:
        updated["period"] = {**(updated.get("period") or {}), "start": on.isoformat()}
    return reschedule(updated)


def _mark_completed(detail: dict, on: date) -> None:
    detail["status"] = "completed"
    others = [e for e in detail.get("extension", []) if e.get("url") != EXT_MILESTONE_COMPLETED]
    detail["extension"] = [*others, {"url": EXT_MILESTONE_COMPLETED, "valueDate": on.isoformat()}]


def reschedule(careplan: dict) -> dict:
    """A copy of ``careplan`` whose open milestones' due dates count from actual completion dates."""
    updated = copy.deepcopy(careplan)
    rules = _request_group_actions(updated)
    received = received_date(updated)
    if not rules or received is None:
        return updated
    activities = {a.get("id"): a for a in updated.get("activity", []) if "detail" in a}
    completed = {aid: d for aid, a in activities.items() if (d := completion_date(a))}
    due = due_dates(list(rules.values()), received, completed)
    for aid, activity in activities.items():
        if activity["detail"].get("status") == "completed" or aid not in due:
            continue
        due_date = due[aid]
        if due_date is None:
            activity["detail"].pop("scheduledPeriod", None)
        else:
            activity["detail"]["scheduledPeriod"] = {"end": due_date.isoformat()}
    return updated


def received_date(careplan: dict) -> date | None:
    """The referral's received date the plan counts from: the contained RequestGroup's ``authoredOn``
    (CarePlans written before the pathway start moved to ``period.start``: that date)."""
    for res in careplan.get("contained", []):
        if res.get("resourceType") == "RequestGroup" and res.get("id") == REQUEST_GROUP_ID and res.get("authoredOn"):
            return fhir_oslo_date(res["authoredOn"])
    return fhir_oslo_date((careplan.get("period") or {}).get("start"))


def completion_date(activity: dict) -> date | None:
    """The date recorded in the milestone-completed extension of ``activity.detail``, if any."""
    for ext in activity.get("detail", {}).get("extension", []):
        if ext.get("url") == EXT_MILESTONE_COMPLETED:
            return fhir_oslo_date(ext.get("valueDate") or ext.get("valueDateTime"))
    return None


def _request_group_actions(careplan: dict) -> dict[str, dict]:
    for res in careplan.get("contained", []):
        if res.get("resourceType") == "RequestGroup" and res.get("id") == REQUEST_GROUP_ID:
            top = (res.get("action") or [{}])[0]
            return {a["id"]: a for a in top.get("action", []) if a.get("id")}
    return {}
