"""FHIR operations (``$name``) at system, type and instance level, dispatched by name.

Each operation is a small function taking an :class:`OperationCall`; the registry below is
what the CapabilityStatement declares, so only what is really served is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from flask import Blueprint, Response, request

from fhir_server.api.formats import fhir_response, negotiate, parse_body
from fhir_server.api.rest import server
from fhir_server.core import jsonio
from fhir_server.core.capabilities import OperationInfo
from fhir_server.core.interactions import check_id, check_type
from fhir_server.core.issues import FhirError, Issue, operation_outcome
from fhir_server.domain.calendar import fhir_oslo_date, oslo_today
from fhir_server.security.policy import Need

bp = Blueprint("operations", __name__)

BASE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/"
OUR_DEFINITION = "https://fhir.referral-hub.no/OperationDefinition/"


@dataclass
class OperationCall:
    """An operation request: where it was called, and its parameters (from the query and a Parameters body)."""

    name: str
    resource_type: str | None
    resource_id: str | None
    params: dict[str, list] = field(default_factory=dict)
    body: object = None

    def first(self, name: str, default: object = None) -> object:
        values = self.params.get(name)
        return values[0] if values else default

    def text(self, name: str) -> str | None:
        value = self.first(name)
        return value if isinstance(value, str) else None


Handler = Callable[[OperationCall], Response]


@dataclass
class Operation:
    info: OperationInfo
    handler: Handler
    levels: tuple[str, ...]  # system | type | instance
    #: the handler reads the request body itself (e.g. non-FHIR XML)
    raw_body: bool = False
    #: the scopes a caller needs (any letter of each Need; an empty type means the URL's type)
    requires: tuple[Need, ...] = ()


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str,
    definition: str,
    types: tuple[str, ...],
    levels: tuple[str, ...],
    *,  # type: ignore[no-untyped-def]
    requires: tuple[Need, ...],
    raw_body: bool = False,
):
    """Register an operation handler and the scopes it needs."""

    def register(handler: Handler) -> Handler:
        info = OperationInfo(name, definition, types, "system" in levels)
        OPERATIONS[name] = Operation(info, handler, levels, raw_body, requires)
        return handler

    return register


def declared_operations() -> list[OperationInfo]:
    return [op.info for op in OPERATIONS.values()]


def operation_needs() -> dict[str, tuple[Need, ...]]:
    """Operation name → the scopes it needs (for the security gate)."""
    return {name: op.requires for name, op in OPERATIONS.items()}


# -- parameter parsing ------------------------------------------------------------------------


def _parameters_value(parameter: dict) -> object:
    if "resource" in parameter:
        return parameter["resource"]
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    return parameter.get("part")


def read_call(name: str, rtype: str | None, rid: str | None, *, raw_body: bool = False) -> OperationCall:
    call = OperationCall(name, rtype, rid)
    for key, value in request.args.items(multi=True):
        if not key.startswith("_"):
            call.params.setdefault(key, []).append(value)
    if request.method == "POST" and request.get_data() and not raw_body:
        body = parse_body(request, server().settings.max_body_bytes)
        call.body = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            for i, parameter in enumerate(body.get("parameter", [])):
                if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
                    raise FhirError.single(
                        400, "structure", "each parameter needs a name", f"Parameters.parameter[{i}]"
                    )
                call.params.setdefault(parameter["name"], []).append(_parameters_value(parameter))
    return call


def dispatch(name: str, rtype: str | None, rid: str | None) -> Response:
    level = "instance" if rid else "type" if rtype else "system"
    op = OPERATIONS.get(name)
    if op is None or level not in op.levels or (rtype and op.info.types and rtype not in op.info.types):
        where = "/".join(p for p in (rtype, rid) if p) or "the system level"
        raise FhirError.single(404, "not-supported", f"the operation ${name} is not supported on {where}")
    if rtype:
        check_type(rtype)
    if rid:
        check_id(rid)
    return op.handler(read_call(name, rtype, rid, raw_body=op.raw_body))


@bp.route("/$<name>", methods=["GET", "POST"])
def system_operation(name: str) -> Response:
    return dispatch(name, None, None)


@bp.route("/<rtype>/$<name>", methods=["GET", "POST"])
def type_operation(rtype: str, name: str) -> Response:
    return dispatch(name, rtype, None)


@bp.route("/<rtype>/<rid>/$<name>", methods=["GET", "POST"])
def instance_operation(rtype: str, rid: str, name: str) -> Response:
    return dispatch(name, rtype, rid)


def outcome_response(issues: list[Issue], status: int = 200) -> Response:
    from fhir_server.api.errors import language

    return fhir_response(operation_outcome(issues, language()), status, negotiate(request))


def resource_response(resource: dict, status: int = 200) -> Response:
    return fhir_response(resource, status, negotiate(request))


# -- $validate ----------------------------------------------------------------------------------


@operation("validate", BASE_DEFINITION + "Resource-validate", (), ("type", "instance"), requires=(Need("", "cru"),))
def validate(call: OperationCall) -> Response:
    mode = call.text("mode") or "create"
    if mode not in ("create", "update", "delete", "profile"):
        raise FhirError.single(400, "value", f"mode must be create, update, delete or profile, not '{mode}'", "mode")
    resource = call.first("resource")
    if resource is None and isinstance(call.body, dict) and call.body.get("resourceType") != "Parameters":
        resource = call.body
    if resource is None and call.resource_id:
        resource = jsonio.loads(server().service.read(call.resource_type or "", call.resource_id).body or b"{}")
    if mode == "delete":
        if not call.resource_id:
            raise FhirError.single(400, "required", "mode=delete needs an instance ([type]/[id]/$validate)")
        server().service.read(call.resource_type or "", call.resource_id)
        return outcome_response([])
    if not isinstance(resource, dict):
        raise FhirError.single(400, "required", "$validate needs a resource (the body, or a 'resource' parameter)")
    if call.resource_type and resource.get("resourceType") != call.resource_type:
        raise FhirError.single(
            400,
            "invalid",
            f"the resource is a {resource.get('resourceType')}, not a {call.resource_type}",
            "resourceType",
        )
    if mode == "update" and call.resource_id and resource.get("id") != call.resource_id:
        raise FhirError.single(400, "invalid", "for mode=update the resource's id must match the URL", "id")
    profiles = [p for p in call.params.get("profile", []) if isinstance(p, str)]
    issues = server().validate_with_profiles(resource, profiles)
    return outcome_response(issues)


# -- pathways -----------------------------------------------------------------------------------


def _reference(call: OperationCall, name: str) -> str | None:
    value = call.first(name)
    if isinstance(value, dict):
        value = value.get("reference")
    return value if isinstance(value, str) and value else None


def _read_json(reference: str, expression: str) -> dict:
    rtype, _, rid = reference.partition("/")
    try:
        return jsonio.loads(server().service.read(rtype, rid).body or b"{}")
    except FhirError as error:
        raise FhirError.single(
            error.status if error.status != 404 else 400, "not-found", f"{reference} is not known", expression
        ) from error


def _conditions_of(service_request: dict) -> list[dict]:
    found = []
    for i, ref in enumerate(service_request.get("reasonReference", [])):
        reference = ref.get("reference", "") if isinstance(ref, dict) else ""
        if reference.startswith("Condition/"):
            found.append(_read_json(reference, f"ServiceRequest.reasonReference[{i}]"))
    return found


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
    OUR_DEFINITION + "ServiceRequest-suggest-pathway",
    ("ServiceRequest",),
    ("instance",),
    requires=(Need("ServiceRequest", "r"),),
)
def suggest_pathway(call: OperationCall) -> Response:
    from fhir_server.domain.pathways import suggest_pathways

    service_request = _read_json(f"ServiceRequest/{call.resource_id}", "ServiceRequest")
    subject = (service_request.get("subject") or {}).get("reference", "")
    patient = _read_json(subject, "ServiceRequest.subject") if subject.startswith("Patient/") else {}
    pregnant = call.text("pregnant")
    suggestions = suggest_pathways(
        service_request,
        patient,
        _conditions_of(service_request),
        server().pathways,
        pregnant=None if pregnant is None else pregnant == "true",
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

    plan = _read_json(f"PlanDefinition/{call.resource_id}", "PlanDefinition")
    subject = _reference(call, "subject")
    if not subject or not subject.startswith("Patient/"):
        raise FhirError.single(400, "required", "$apply needs subject=Patient/[id]", "subject")
    _read_json(subject, "subject")
    referral_ref = _reference(call, "referral") or _reference(call, "serviceRequest")
    if not referral_ref:
        raise FhirError.single(400, "required", "$apply needs referral=ServiceRequest/[id]", "referral")
    referral = _read_json(referral_ref, "referral")
    received = call.text("receivedDate")
    try:
        when = date.fromisoformat(received) if received else received_date(referral)
    except ValueError as exc:
        raise FhirError.single(400, "value", f"receivedDate '{received}' is not a date", "receivedDate") from exc
    careplan, _request_group = apply_plan_definition(
        plan, referral, subject, when, catalog=server().pathways, service_request_ref=referral_ref
    )
    organization = _reference(call, "organization")  # the R4 $apply parameter: who carries out the plan
    if organization:
        if not organization.startswith("Organization/"):
            raise FhirError.single(400, "value", "organization must be Organization/[id]", "organization")
        _read_json(organization, "organization")
        careplan["author"] = {"reference": organization}
        for activity in careplan.get("activity", []):
            if "detail" in activity:
                activity["detail"]["performer"] = [{"reference": organization}]
    if call.text("persist") == "true":
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
    OUR_DEFINITION + "CarePlan-milestones",
    ("CarePlan",),
    ("instance",),
    requires=(Need("CarePlan", "r"),),
)
def milestones(call: OperationCall) -> Response:
    from fhir_server.domain.pathways import summary

    careplan = _read_json(f"CarePlan/{call.resource_id}", "CarePlan")
    on = call.text("date")
    try:
        today = date.fromisoformat(on) if on else oslo_today()
    except ValueError as exc:
        raise FhirError.single(400, "value", f"date '{on}' is not a date", "date") from exc
    return resource_response(summary(careplan, today))
