"""Care pathway operations: ``ServiceRequest/[id]/$suggest-pathway``, ``PlanDefinition/[id]/$apply``
and ``CarePlan/[id]/$milestones``."""

from __future__ import annotations

from datetime import date

from flask import Response, request

from fhir_server.api.formats import fhir_response, negotiate
from fhir_server.api.ops.common import read_resource, resource_response
from fhir_server.api.ops.registry import BASE_DEFINITION, OperationCall, operation
from fhir_server.api.rest import server
from fhir_server.core.issues import FhirError
from fhir_server.domain.calendar import fhir_oslo_date, oslo_today
from fhir_server.naming import operation_definition
from fhir_server.security.policy import Need


def _reference(call: OperationCall, name: str) -> str | None:
    value = call.first(name)
    if isinstance(value, dict):
        value = value.get("reference")
    return value if isinstance(value, str) and value else None


def received_date(service_request: dict) -> date:
    """The referral's received date: the Helsenorge mottatt-dato extension, else authoredOn, else today
    (Norwegian dates: a dateTime counts on its Europe/Oslo date)."""
    for ext in service_request.get("extension", []):
        if isinstance(ext, dict) and str(ext.get("url", "")).lower().replace("-", "").endswith("mottattdato"):
            received = fhir_oslo_date(ext.get("valueDate") or ext.get("valueDateTime"))
            if received:
                return received
    return fhir_oslo_date(service_request.get("authoredOn")) or oslo_today()


@operation(
    "suggest-pathway",
    operation_definition("ServiceRequest-suggest-pathway"),
    ("ServiceRequest",),
    ("instance",),
    requires=(Need("ServiceRequest", "r"),),
)
def suggest_pathway(call: OperationCall) -> Response:
    from fhir_server.domain.pathways import suggest_pathways
    from fhir_server.domain.pathways.evidence import stored_referral_evidence

    service_request = read_resource(f"ServiceRequest/{call.resource_id}", "ServiceRequest")
    subject = (service_request.get("subject") or {}).get("reference", "")
    patient = read_resource(subject, "ServiceRequest.subject") if subject.startswith("Patient/") else {}
    suggestions = suggest_pathways(
        service_request,
        patient,
        stored_referral_evidence(server().service, call.resource_id or "", service_request),
        server().pathways,
        pregnant=call.boolean("pregnant"),
    )
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "suggestion",
                "part": [
                    {"name": "pathway", "valueCanonical": s.canonical},
                    {"name": "title", "valueString": s.title},
                    {"name": "reason", "valueString": s.reason_en},
                    {"name": "reason-nb", "valueString": s.reason_nb},
                ],
            }
            for s in suggestions
        ],
    }
    return resource_response(parameters)


@operation(
    "apply",
    BASE_DEFINITION + "PlanDefinition-apply",
    ("PlanDefinition",),
    ("instance",),
    requires=(Need("PlanDefinition", "r"), Need("CarePlan", "c")),
)
def apply(call: OperationCall) -> Response:
    from fhir_server.domain.pathways import apply_plan_definition

    plan = read_resource(f"PlanDefinition/{call.resource_id}", "PlanDefinition")
    subject = _reference(call, "subject")
    if not subject or not subject.startswith("Patient/"):
        raise FhirError.single(400, "required", "$apply needs subject=Patient/[id]", "subject")
    read_resource(subject, "subject")
    referral_ref = _reference(call, "referral") or _reference(call, "serviceRequest")
    if not referral_ref:
        raise FhirError.single(400, "required", "$apply needs referral=ServiceRequest/[id]", "referral")
    referral = read_resource(referral_ref, "referral")
    received = call.text("receivedDate")
    try:
        when = date.fromisoformat(received) if received else received_date(referral)
    except ValueError as exc:
        raise FhirError.single(400, "value", f"receivedDate '{received}' is not a date", "receivedDate") from exc
    assessed_text = call.text("assessedDate")  # the project's own: the referral was assessed on this date
    try:
        assessed = date.fromisoformat(assessed_text) if assessed_text else None
    except ValueError as exc:
        raise FhirError.single(400, "value", f"assessedDate '{assessed_text}' is not a date", "assessedDate") from exc
    careplan, _request_group = apply_plan_definition(
        plan, referral, subject, when, catalog=server().pathways, service_request_ref=referral_ref, assessed=assessed
    )
    organization = _reference(call, "organization")  # the R4 $apply parameter: who carries out the plan
    if organization:
        if not organization.startswith("Organization/"):
            raise FhirError.single(400, "value", "organization must be Organization/[id]", "organization")
        read_resource(organization, "organization")
        careplan["author"] = {"reference": organization}
        for activity in careplan.get("activity", []):
            if "detail" in activity:
                activity["detail"]["performer"] = [{"reference": organization}]
    if call.boolean("persist"):
        result = server().service.create(careplan)
        return fhir_response(
            result.stored.body,
            201,
            negotiate(request),
            {"Location": f"{request.host_url.rstrip('/')}{server().settings.base_path}/{result.stored.location}"},
        )
    return resource_response(careplan)


@operation(
    "milestones",
    operation_definition("CarePlan-milestones"),
    ("CarePlan",),
    ("instance",),
    requires=(Need("CarePlan", "r"),),
)
def milestones(call: OperationCall) -> Response:
    from fhir_server.domain.pathways import summary

    careplan = read_resource(f"CarePlan/{call.resource_id}", "CarePlan")
    on = call.text("date")
    try:
        today = date.fromisoformat(on) if on else oslo_today()
    except ValueError as exc:
        raise FhirError.single(400, "value", f"date '{on}' is not a date", "date") from exc
    return resource_response(summary(careplan, today))
