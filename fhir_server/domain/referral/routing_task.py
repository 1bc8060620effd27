"""The routing Task of a referral and the Provenance that says why, built from the routing decision."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from fhir_server import naming
from fhir_server.core.issues import Issue, operation_outcome
from fhir_server.domain.referral.leniency import entry_of
from fhir_server.domain.routing.decision import RoutingDecision
from fhir_server.domain.routing.tables import TRIAGE_REASON_SYSTEM

ORGNR_SYSTEM = naming.ORGNR_SYSTEM
TASK_IDENTIFIER_SYSTEM = naming.naming_system("routing-task")
TASK_INPUT = naming.code_system("hub-task-input")
ROUTING_RULE = naming.code_system("routing-rule")
TASK_PROFILE = naming.structure_definition("hub-routing-task")
#: the id of the OperationOutcome a routing Task contains with the referral's validation warnings
WARNINGS_ID = "validation-warnings"
TRIAGE_ORGANIZATION = "Organization/hub-manual-triage"
HUB_ORGANIZATION = "Organization/referral-hub"


def build_task(
    referral: dict,
    referral_url: str,
    patient_ref: str | None,
    decision: RoutingDecision,
    suggestions: list,
    identifier: tuple[str, str],
    received: datetime,
    owner: dict,
    deadline: datetime,
) -> tuple[dict, str]:
    """The routing Task of a referral (owner: the RHF, or the manual-triage queue), and a fullUrl for it.
    ``deadline`` is the referral's legal assessment deadline (:func:`keep_deadline`)."""
    inputs: list[dict] = [{"type": task_code("suggested-pathway"), "valueCanonical": s.canonical} for s in suggestions]
    if decision.hf_orgnr:
        inputs.append(
            {
                "type": task_code("health-trust"),
                "valueReference": {
                    "identifier": {"system": ORGNR_SYSTEM, "value": decision.hf_orgnr},
                    "display": decision.hf_name,
                },
            }
        )
    inputs.append(
        {
            "type": task_code("routing-explanation"),
            "valueString": f"{decision.explanation.get('en', '')} / {decision.explanation.get('nb', '')}",
        }
    )
    task = {
        "resourceType": "Task",
        "meta": {"profile": [TASK_PROFILE]},
        "identifier": [{"system": TASK_IDENTIFIER_SYSTEM, "value": identifier[1]}],
        "status": "requested",
        "intent": "order",
        "priority": referral.get("priority", "routine"),
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": referral_url},
        "authoredOn": received.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "requester": referral.get("requester") or {"reference": HUB_ORGANIZATION},
        "owner": owner,
        "reasonCode": {"coding": [{"system": ROUTING_RULE, "code": routing_rule(decision)}]},
        "input": inputs,
    }
    keep_deadline(task, deadline)
    if patient_ref:
        task["for"] = {"reference": patient_ref}
    if decision.triage and not decision.rhf_orgnr:
        task["businessStatus"] = {"text": "manual-triage: " + (decision.triage_reason or "")}
    if decision.triage_reason:  # why a person must decide (the region, or only the health trust)
        code = decision.triage_reason
        reason = {"system": TRIAGE_REASON_SYSTEM, "code": code, "display": decision.triage_display}
        task["statusReason"] = {"coding": [reason], "text": decision.triage_display or code}
    return task, f"urn:uuid:{uuid4()}"


def same_routing(task: dict, decision: RoutingDecision) -> bool:
    """True when ``task`` already names the owner and health trust ``decision`` routes to."""
    owner = task.get("owner") or {}
    if decision.rhf_orgnr:
        if (owner.get("identifier") or {}).get("value") != decision.rhf_orgnr:
            return False
    elif owner.get("reference") != TRIAGE_ORGANIZATION:
        return False
    health_trusts = [
        (i.get("valueReference") or {}).get("identifier", {}).get("value")
        for i in task.get("input") or []
        if (i.get("type") or {}).get("coding", [{}])[0].get("code") == "health-trust"
    ]
    return health_trusts == ([decision.hf_orgnr] if decision.hf_orgnr else [])


def routing_rule(decision: RoutingDecision) -> str:
    """The rule that chose the owner: a region known but its health trust undecided still routes by home."""
    if decision.triage and decision.rhf_orgnr:
        inputs = decision.inputs
        renumbered = inputs.get("kommunenummer") != inputs.get("kommunenummer_2024")
        return "pre2024-municipality" if renumbered else "home-municipality"
    return decision.rule


def task_deadline(task: dict) -> str | None:
    """The assessment deadline a routing Task carries (``Task.restriction.period.end``)."""
    restriction = task.get("restriction")
    period = restriction.get("period") if isinstance(restriction, dict) else None
    end = period.get("end") if isinstance(period, dict) else None
    return end if isinstance(end, str) else None


def keep_deadline(task: dict, deadline: datetime) -> bool:
    """Put the referral's legal assessment deadline on its routing Task: ``Task.restriction.period.end``
    (R4: the period over which fulfilment is sought), the same instant as the referral's
    ``no-frist-for-vurdering``, so queues sort and filter Tasks by it (search parameter
    ``assessment-deadline`` on Task). True when the Task changed."""
    end = deadline.isoformat()
    if task_deadline(task) == end:
        return False
    found = task.get("restriction")
    restriction: dict = found if isinstance(found, dict) else {}
    period: dict = restriction["period"] if isinstance(restriction.get("period"), dict) else {}
    task["restriction"] = {**restriction, "period": {**period, "end": end}}
    return True


def keep_warnings(task: dict, warnings: list[Issue], entries: list[dict]) -> bool:
    """Keep the referral's warnings with its routing Task, for the region: an OperationOutcome contained
    in the Task (its paths in the stored resources, ``Patient.address``), referenced from ``Task.output``;
    those of an earlier version are replaced. True when the Task changed."""
    issues = []
    for issue in warnings:
        position = entry_of(issue)
        resource = entries[position].get("resource") if position is not None and position < len(entries) else None
        if isinstance(resource, dict) and resource.get("resourceType"):
            prefix = f"Bundle.entry[{position}].resource"
            tail = (issue.expression or "")[len(prefix) :] if (issue.expression or "").startswith(prefix) else ""
            issue = Issue(
                issue.severity,
                issue.code,
                issue.diagnostics,
                resource["resourceType"] + tail,
                issue.diagnostics_nb,
                issue.rule,
            )
        issues.append(issue)
    reference = "#" + WARNINGS_ID
    before = [c for c in task.get("contained") or [] if c.get("id") == WARNINGS_ID]
    after = [{**operation_outcome(issues), "id": WARNINGS_ID}] if issues else []
    if before == after:
        return False
    contained = [c for c in task.get("contained") or [] if c.get("id") != WARNINGS_ID] + after
    output = [o for o in task.get("output") or [] if (o.get("valueReference") or {}).get("reference") != reference]
    if after:
        output.append({"type": task_code("validation-warnings"), "valueReference": {"reference": reference}})
    for key, value in (("contained", contained), ("output", output)):
        if value:
            task[key] = value
        else:
            task.pop(key, None)
    return True


def task_code(code: str) -> dict:
    return {"coding": [{"system": TASK_INPUT, "code": code}]}


def provenance(
    task_url: str,
    referral_url: str,
    decision: RoutingDecision,
    received: datetime,
    action: str,
    evidence_urls: list[str],
) -> dict:
    """The Provenance of a routing: why the Task's owner was chosen, and what the referral brought
    (its evidence, role source: :mod:`fhir_server.domain.pathways.evidence` reads it back)."""
    inputs = ", ".join(f"{k}={v}" for k, v in decision.inputs.items())
    return {
        "resourceType": "Provenance",
        "target": [{"reference": task_url}, {"reference": referral_url}],
        "recorded": received.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE" if action == "create" else "UPDATE",
                }
            ]
        },
        "reason": [
            {
                "coding": [{"system": ROUTING_RULE, "code": routing_rule(decision)}],
                "text": f"rule {routing_rule(decision)}; inputs: {inputs or 'none'}"
                + (f"; {decision.triage_reason}" if decision.triage_reason else ""),
            }
        ],
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {"reference": HUB_ORGANIZATION},
            }
        ],
        "entity": [
            {"role": "source", "what": {"reference": referral_url}},
            *({"role": "source", "what": {"reference": url}} for url in evidence_urls),
        ],
    }


def carried_task(entries: list[dict], referral_url: str, referral_id: str | None) -> dict | None:
    """The entry of a routing Task the Bundle itself carries for the referral (e.g. a region's copy
    pushed by another hub), if any."""
    names = {referral_url, *([f"ServiceRequest/{referral_id}"] if referral_id else [])}
    for entry in entries:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "Task":
            continue
        if (resource.get("focus") or {}).get("reference") in names and any(
            isinstance(i, dict) and i.get("system") == TASK_IDENTIFIER_SYSTEM for i in resource.get("identifier") or []
        ):
            return entry
    return None


def evidence_urls(entries: list[dict], evidence: list[dict]) -> list[str]:
    """The references (fullUrl, else ``Type/id``) of the Bundle entries holding ``evidence``."""
    wanted = {id(r) for r in evidence}
    found = []
    for entry in entries:
        resource = entry.get("resource") or {}
        if id(resource) in wanted:
            url = entry.get("fullUrl") or (
                f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else None
            )
            if url:
                found.append(url)
    return found
