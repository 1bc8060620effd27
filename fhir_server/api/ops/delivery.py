"""Push delivery operations: an administrator re-sends a routing Task's dead-lettered deliveries."""

from __future__ import annotations

from flask import Response

from fhir_server.api.ops.common import resource_response
from fhir_server.api.ops.registry import OperationCall, operation
from fhir_server.api.rest import server
from fhir_server.api.security_edge import require_admin
from fhir_server.domain.delivery.outbox import resend as resend_deliveries
from fhir_server.naming import operation_definition
from fhir_server.security.policy import Need


@operation(
    "resend",
    operation_definition("Task-resend"),
    ("Task",),
    ("instance",),
    requires=(Need("Task", "u"),),
)
def resend(call: OperationCall) -> Response:
    require_admin("$resend")
    service = server().service
    service.read("Task", str(call.resource_id))  # 404 for an unknown Task
    count = resend_deliveries(service.store, str(call.resource_id))
    return resource_response({"resourceType": "Parameters", "parameter": [{"name": "resent", "valueInteger": count}]})
