"""``$validate`` at type and instance level: base rules, claimed profiles and the profiles asked for."""

from __future__ import annotations

from flask import Response

from fhir_server.api.ops.common import outcome_response
from fhir_server.api.ops.registry import BASE_DEFINITION, OperationCall, operation
from fhir_server.api.rest import server
from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError
from fhir_server.security.policy import Need


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
