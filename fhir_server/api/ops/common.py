"""What the operation families share: reading a resource a parameter names, answering in the asked format."""

from __future__ import annotations

from flask import Response, request

from fhir_server.api.formats import fhir_response, negotiate
from fhir_server.api.rest import server
from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError, Issue, operation_outcome


def read_resource(reference: str, expression: str) -> dict:
    """The resource ``Type/id`` names; an unknown one is a 400 naming ``expression`` (the parameter)."""
    rtype, _, rid = reference.partition("/")
    try:
        return jsonio.loads(server().service.read(rtype, rid).body or b"{}")
    except FhirError as error:
        raise FhirError.single(
            error.status if error.status != 404 else 400, "not-found", f"{reference} is not known", expression
        ) from error


def resource_response(resource: dict, status: int = 200) -> Response:
    return fhir_response(resource, status, negotiate(request))


def outcome_response(issues: list[Issue], status: int = 200) -> Response:
    from fhir_server.api.errors import language

    return fhir_response(operation_outcome(issues, language()), status, negotiate(request))
