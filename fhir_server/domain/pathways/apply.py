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
* The pathway type code (action[0].code of the PlanDefinition) goes to ``CarePlan.category``.

The function does not evaluate applicability (use :func:`~fhir_server.domain.pathway_suggest.suggest_pathways`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import date

from fhir_server.domain.pathways.catalog import EXT_DEADLINE_WORKING_DAYS, PathwayCatalog, iter_milestones
from fhir_server.domain.pathways.schedule import due_dates, predecessor, resolve_variants
from fhir_server.naming import structure_definition

#: Extension (project's own) on CarePlan.activity.detail: the date the milestone was reached (valueDate).
EXT_MILESTONE_COMPLETED = structure_definition("milestone-completed")
REQUEST_GROUP_ID = "requestgroup"
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

    reached = _reached_on_receipt(milestones)
    activities: list[dict] = [{"reference": {"reference": f"#{REQUEST_GROUP_ID}"}}]
    for action in milestones:
        activities.append(_activity(action, due[action["id"]], received, catalog, action["id"] in reached))

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
    careplan["period"] = {"start": received.isoformat()}
    if sr_ref:
        careplan["supportingInfo"] = [sr_ref]
    careplan["activity"] = activities
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


def _reached_on_receipt(milestones: list[dict]) -> set[str]:
    """Ids of the anchor and of milestones concurrent with it (e.g. the 2019-rule pathway start)."""
    reached = {a["id"] for a in milestones if predecessor(a) is None}
    for action in milestones:  # milestones are listed after the one they count from
        related = (action.get("relatedAction") or [{}])[0]
        same_moment = related.get("relationship") in ("concurrent", "concurrent-with-start")
        if same_moment and related.get("actionId") in reached:
            reached.add(action["id"])
    return reached


def _activity(action: dict, due: date | None, received: date, catalog: PathwayCatalog, reached: bool) -> dict:
    definition = catalog.activity_definition(action.get("definitionCanonical", "")) or {}
    detail: dict = {}
    extensions = [e for e in action.get("extension", []) if e.get("url") == EXT_DEADLINE_WORKING_DAYS]
    if reached:
        extensions.append({"url": EXT_MILESTONE_COMPLETED, "valueDate": received.isoformat()})
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
