"""``PlanDefinition/$apply`` for pathways as a pure function: PlanDefinition + referral → CarePlan.

Result shape (R4 $apply returns a CarePlan whose activity references the RequestGroup):
* ``CarePlan.contained[0]`` is the RequestGroup (id ``requestgroup``); ``CarePlan.activity[0]``
  references it (``#requestgroup``). The RequestGroup keeps each milestone's rule (relatedAction,
  ``timingDuration``/``timingTiming`` after choosing the variant, the working-days extension) so due
  dates can be recomputed later from actual completion dates.
* ``CarePlan.activity[1..]`` has one ``detail`` per milestone; ``activity.id`` is the milestone's
  action id (the same id as in the PlanDefinition and the RequestGroup). ``detail.scheduledPeriod.end``
  is the due date; milestones without a time target have no ``scheduledPeriod``.
* The anchor milestone (no relatedAction: referral received), and any milestone ``concurrent`` /
  ``concurrent-with-start`` with it (the pathway start under the 2019 rule: start = received date), is
  ``completed`` on the received date; every other milestone is ``not-started``.
* The referral: R4 ``CarePlan.basedOn`` may only reference a CarePlan, so the ServiceRequest is
  referenced from ``RequestGroup.basedOn`` (Reference(Any)) and ``CarePlan.supportingInfo``.
* The pathway type code (action[0].code of the PlanDefinition) goes to ``CarePlan.category``: the NPR
  type-forløp code (kodeverk 9321: D01, D11, D12) first where the plan has one, then the project's code.
* ``CarePlan.period.start`` is the pathway's start date ("Nasjonalt pasientforløp start"): the date the
  ``pathway-start`` milestone is reached. Under the current rule for the general pathways that is the date
  the referral is assessed and the right to health care granted (pathway-start ``concurrent-with-end`` with
  referral-assessed); under the 2019 rule kept by some plans, the received date. A pathway not started yet
  has no ``period``. A plan without a pathway-start milestone (the ordinary referral) starts when received.
  The received date itself stays on the RequestGroup (``authoredOn``), where rescheduling reads it.
* ``assessed`` (optional): the referral was already assessed on that date; the referral-assessed milestone,
  and the milestones concurrent with it (the pathway start), are completed on it.

The function does not evaluate applicability (use :func:`~fhir_server.domain.pathway_suggest.suggest_pathways`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import date

from fhir_server.domain.pathways.catalog import (
    ASSESSED_MILESTONE,
    EXT_DEADLINE_WORKING_DAYS,
    PathwayCatalog,
    iter_milestones,
)
from fhir_server.domain.pathways.schedule import due_dates, predecessor, resolve_variants
from fhir_server.naming import structure_definition

#: Extension (project's own) on CarePlan.activity.detail: the date the milestone was reached (valueDate).
EXT_MILESTONE_COMPLETED = structure_definition("milestone-completed")
REQUEST_GROUP_ID = "requestgroup"
#: The milestone "Nasjonalt pasientforløp start": its date is the CarePlan's ``period.start``.
PATHWAY_START = "pathway-start"
#: ServiceRequest priorities that select the ``serious`` timing variant (e.g. eating disorders: 7 days, not 28).
SERIOUS_PRIORITIES = frozenset({"urgent", "asap", "stat"})

_RG_ACTION_KEYS = (
    "id",
    "extension",
    "title",
    "description",
    "documentation",
    "code",
    "relatedAction",
    "timingDuration",
    "timingTiming",
    "selectionBehavior",
)


def apply_plan_definition(
    plan: dict,
    service_request: dict,
    patient_ref: str,
    received: date,
    *,
    catalog: PathwayCatalog,
    variants: Iterable[str] | None = None,
    service_request_ref: str | None = None,
    assessed: date | None = None,
) -> tuple[dict, dict]:
    """Instantiate ``plan`` for a referral received on ``received``: (CarePlan, its contained RequestGroup).

    ``variants`` picks alternative time targets (``inpatient``, ``serious``); by default ``serious``
    when the ServiceRequest priority is urgent/asap/stat and none otherwise.
    ``service_request_ref`` defaults to ``ServiceRequest/<id>``.
    """
    if variants is None:
        variants = {"serious"} if service_request.get("priority") in SERIOUS_PRIORITIES else set()
    chosen = set(variants)
    milestones = [resolve_variants(a, chosen) for a in iter_milestones(plan)]
    due = due_dates(milestones, received)
    canonical = f"{plan['url']}|{plan['version']}" if plan.get("version") else plan["url"]
    sr_ref = _service_request_reference(service_request, service_request_ref)
    subject = {"reference": patient_ref}
    top = plan["action"][0]

    request_group: dict = {
        "resourceType": "RequestGroup",
        "id": REQUEST_GROUP_ID,
        "instantiatesCanonical": [canonical],
        "status": "active",
        "intent": "plan",
        "subject": subject,
        "authoredOn": received.isoformat(),
        "action": [
            {
                **{k: copy.deepcopy(top[k]) for k in ("id", "title", "code") if k in top},
                "action": [_request_group_action(a) for a in milestones],
            }
        ],
    }
    if sr_ref:
        request_group["basedOn"] = [sr_ref]
    if top.get("code"):
        request_group["code"] = copy.deepcopy(top["code"][0])

    reached = dict.fromkeys(
        _reached_with(milestones, {a["id"] for a in milestones if predecessor(a) is None}), received
    )
    if assessed is not None and any(a["id"] == ASSESSED_MILESTONE for a in milestones):
        reached.update(dict.fromkeys(_reached_with(milestones, {ASSESSED_MILESTONE}) - set(reached), assessed))
    activities: list[dict] = [{"reference": {"reference": f"#{REQUEST_GROUP_ID}"}}]
    for action in milestones:
        activities.append(_activity(action, due[action["id"]], catalog, reached.get(action["id"])))

    careplan: dict = {
        "resourceType": "CarePlan",
        "contained": [request_group],
        "instantiatesCanonical": [canonical],
        "status": "active",
        "intent": "plan",
    }
    if top.get("code"):
        careplan["category"] = copy.deepcopy(top["code"])
    careplan["title"] = plan.get("title", plan.get("name", ""))
    careplan["subject"] = subject
    has_start = any(a["id"] == PATHWAY_START for a in milestones)
    start = reached.get(PATHWAY_START) if has_start else received
    if start is not None:
        careplan["period"] = {"start": start.isoformat()}
    if sr_ref:
        careplan["supportingInfo"] = [sr_ref]
    careplan["activity"] = activities
    if assessed is not None:  # the due dates of what follows count from the actual assessment
        from fhir_server.domain.pathways.state import reschedule

        careplan = reschedule(careplan)
    return careplan, copy.deepcopy(request_group)


def _request_group_action(action: dict) -> dict:
    """A RequestGroup action; a leaf names what it is about (rqg-1: a resource or sub-actions, not both)."""
    out = {k: copy.deepcopy(action[k]) for k in _RG_ACTION_KEYS if k in action}
    if action.get("action"):
        out["action"] = [
            _leaf({k: copy.deepcopy(child[k]) for k in ("id", "title", "code") if k in child})
            for child in action["action"]
        ]
    else:
        _leaf(out)
    return out


def _leaf(action: dict) -> dict:
    action["resource"] = {"display": action.get("title") or action.get("id") or "milestone"}
    return action


def _reached_with(milestones: list[dict], reached: set[str]) -> set[str]:
    """``reached`` and the milestones reached at the same moment: ``concurrent*`` with one of them
    (the anchor's: the 2019-rule pathway start; referral-assessed's: the current rule's)."""
    reached = set(reached)
    for action in milestones:  # milestones are listed after the one they count from
        related = (action.get("relatedAction") or [{}])[0]
        if str(related.get("relationship", "")).startswith("concurrent") and related.get("actionId") in reached:
            reached.add(action["id"])
    return reached


def _activity(action: dict, due: date | None, catalog: PathwayCatalog, reached: date | None) -> dict:
    definition = catalog.activity_definition(action.get("definitionCanonical", "")) or {}
    detail: dict = {}
    extensions = [e for e in action.get("extension", []) if e.get("url") == EXT_DEADLINE_WORKING_DAYS]
    if reached:
        extensions.append({"url": EXT_MILESTONE_COMPLETED, "valueDate": reached.isoformat()})
    if extensions:
        detail["extension"] = copy.deepcopy(extensions)
    if definition.get("kind"):
        detail["kind"] = definition["kind"]
    if definition:
        version = definition.get("version")
        detail["instantiatesCanonical"] = [f"{definition['url']}|{version}" if version else definition["url"]]
    detail["code"] = copy.deepcopy(action["code"][0])
    detail["status"] = "completed" if reached else "not-started"
    if due is not None:
        detail["scheduledPeriod"] = {"end": due.isoformat()}
    detail["description"] = action.get("title", "")
    return {"id": action["id"], "detail": detail}


def _service_request_reference(service_request: dict, explicit: str | None) -> dict | None:
    if explicit:
        return {"reference": explicit}
    if service_request.get("id"):
        return {"reference": f"ServiceRequest/{service_request['id']}"}
    identifiers = service_request.get("identifier") or []
    if identifiers:
        ident = {k: identifiers[0][k] for k in ("system", "value") if k in identifiers[0]}
        return {"type": "ServiceRequest", "identifier": ident}
    return None
