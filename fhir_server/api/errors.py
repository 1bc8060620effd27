"""Every refusal as an OperationOutcome with the right HTTP status; never a bare 500 page."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from fhir_server.api.formats import JSON, Negotiated, fhir_response, negotiate
from fhir_server.core.issues import FhirError, Issue, operation_outcome
from fhir_server.core.storage.statement_timeout import is_statement_timeout

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}


def language() -> str:
    """``nb`` when the client asks for Norwegian (bokmål), else English."""
    accept = request.headers.get("Accept-Language", "")
    best = request.accept_languages.best_match(["en", "nb", "no", "nn"]) if accept else None
    return "nb" if best in ("nb", "no", "nn") else "en"


def _format_for_errors() -> Negotiated:
    try:
        return negotiate(request)
    except FhirError:
        return Negotiated(JSON, False)


def error_response(error: FhirError) -> Response:
    outcome = operation_outcome(error.issues, language())
    return fhir_response(outcome, error.status, _format_for_errors(), error.headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FhirError)
    def _fhir_error(error: FhirError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 404:
            message = f"there is nothing at {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        issue = Issue("error", _HTTP_CODES.get(status, "exception"), message)
        response = error_response(FhirError(status, [issue]))
        allowed = getattr(error, "valid_methods", None)
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(RecursionError)
    def _too_deep(_error: RecursionError) -> Response:
        return error_response(FhirError.single(400, "structure", "the content is nested too deeply"))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if is_statement_timeout(error):
            log.warning("statement timeout handling %s %s", request.method, request.path)
            message = "the request took the database too long and was stopped; narrow the search or try later"
            return error_response(FhirError(503, [Issue("error", "timeout", message)], {"Retry-After": "5"}))
        log.exception("unexpected error handling %s %s", request.method, request.path)
        issue = Issue("fatal", "exception", f"internal error ({type(error).__name__}); the request was not completed")
        return error_response(FhirError(500, [issue]))
