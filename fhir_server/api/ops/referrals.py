"""The referral doors: FHIR messaging and the national XML at ``$process-message``, the JSON form.

(The FHIR REST door, a transaction Bundle or a plain ``POST ServiceRequest``, is in ``system.py`` and
``rest.py``.) Every door hands a transaction-like Bundle to the one intake pipeline.
"""

from __future__ import annotations

from uuid import uuid4

from flask import Response, request

from fhir_server.api.formats import fhir_response, negotiate
from fhir_server.api.ops.registry import OperationCall, operation
from fhir_server.api.rest import server, strict_handling
from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError, has_errors, operation_outcome
from fhir_server.domain.referral.intake import IntakeResult
from fhir_server.domain.referral.mapping.model import MappedReferral
from fhir_server.naming import code_system, operation_definition
from fhir_server.security.policy import Need

MESSAGE_EVENTS = code_system("message-event")
EVENT_ACTIONS = {
    "referral": "create",
    "referral-new": "create",
    "referral-update": "update",
    "referral-revoke": "revoke",
}
XML_TYPES = ("application/xml", "text/xml")


def intake_response(result: IntakeResult, request_header_id: str | None, event: dict) -> Response:
    """A response message: MessageHeader (response ok) plus the outcome and what was stored."""
    issues = [*result.issues]
    header = {
        "resourceType": "MessageHeader",
        "id": str(uuid4()),
        "eventCoding": event,
        "source": {"endpoint": request.host_url.rstrip("/") + server().settings.base_path},
        "response": {"identifier": request_header_id or str(uuid4()), "code": "ok"},
        "focus": [{"reference": ref} for ref in (result.service_request, result.task) if ref],
    }
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "type": "message",
        "timestamp": result.response_bundle.get("meta", {}).get("lastUpdated") or _now(),
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            {"fullUrl": f"urn:uuid:{uuid4()}", "resource": operation_outcome(issues)},
        ],
    }
    return fhir_response(bundle, 200, negotiate(request))


def _now() -> str:
    from fhir_server.core.indexing.values import now_instant

    return now_instant()


@operation(
    "process-message",
    "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
    (),
    ("system",),
    requires=(Need("ServiceRequest", "c"),),
    raw_body=True,
)
def process_message(call: OperationCall) -> Response:
    if (request.mimetype or "").lower() in XML_TYPES:
        return _henvisning_xml()
    from fhir_server.api.formats import parse_body

    message = parse_body(request, server().settings.max_body_bytes)
    if not isinstance(message, dict) or message.get("resourceType") != "Bundle" or message.get("type") != "message":
        raise FhirError.single(
            400,
            "invalid",
            "$process-message takes a Bundle of type message (or a Henvisning "
            "XML message with Content-Type application/xml)",
            "Bundle.type",
        )
    entries = [e for e in message.get("entry", []) if isinstance(e, dict)]
    header = entries[0].get("resource") if entries else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise FhirError.single(
            400, "invalid", "the first entry of a message must be its MessageHeader", "Bundle.entry[0].resource"
        )
    event = header.get("eventCoding") or {}
    action = EVENT_ACTIONS.get(event.get("code", "")) if event.get("system") in (MESSAGE_EVENTS, None) else None
    if action is None:
        raise FhirError.single(
            422,
            "not-supported",
            f"message event '{event.get('code')}' is not handled; send {MESSAGE_EVENTS} "
            "referral-new, referral-update or referral-revoke",
            "Bundle.entry[0].resource.event",
        )
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": e.get("fullUrl") or f"urn:uuid:{uuid4()}",
                "resource": e["resource"],
                "request": {"method": "POST", "url": e["resource"].get("resourceType", "")},
            }
            for e in entries[1:]
            if isinstance(e.get("resource"), dict)
        ],
    }
    result = server().intake.submit(transaction, action=action, strict=strict_handling())
    return intake_response(result, header.get("id"), event)


def _henvisning_xml() -> Response:
    from fhir_server.domain.referral.mapping import parse_henvisning

    data = request.get_data()
    if len(data) > server().settings.max_body_bytes:
        raise FhirError.single(413, "too-costly", "the message is larger than the body limit")
    mapped = parse_henvisning(data, test_mode=server().settings.test_mode)
    result = _submit_mapped(mapped, strict=strict_handling())
    event = {"system": MESSAGE_EVENTS, "code": f"referral-{'new' if mapped.action == 'create' else mapped.action}"}
    return intake_response(result, mapped.message_id, event)


@operation(
    "referral-form",
    operation_definition("referral-form"),
    (),
    ("system",),
    requires=(Need("ServiceRequest", "c"),),
    raw_body=True,
)
def referral_form(call: OperationCall) -> Response:
    """A plain JSON referral form (see mappings/examples/referral-form-example.json)."""
    from fhir_server.domain.referral.mapping import form_to_bundle

    try:
        data = jsonio.loads(request.get_data())
    except jsonio.JsonError as exc:
        raise FhirError.single(400, "structure", str(exc)) from exc
    if not isinstance(data, dict):
        raise FhirError.single(400, "structure", "the form must be a JSON object")
    result = _submit_mapped(form_to_bundle(data, test_mode=server().settings.test_mode), strict=strict_handling())
    return intake_response(result, None, {"system": MESSAGE_EVENTS, "code": "referral-new"})


def _submit_mapped(mapped: MappedReferral, *, strict: bool = False) -> IntakeResult:
    """A referral mapped from another format through the intake; 422 with the mapping's issues if it failed.
    Every issue names the element of the sender's input (an XPath, a form field), never the internal Bundle."""
    if has_errors(mapped.issues) or not mapped.bundle:
        raise FhirError(422, mapped.issues)
    try:
        result = server().intake.submit(mapped.bundle, action=mapped.action or "create", strict=strict)
    except FhirError as error:
        raise FhirError(error.status, mapped.located_in_input(error.issues), error.headers) from error
    told = {(i.expression, i.rule) for i in mapped.issues}
    found = [i for i in mapped.located_in_input(result.issues) if not i.rule or (i.expression, i.rule) not in told]
    result.issues = [*mapped.issues, *found]
    return result
