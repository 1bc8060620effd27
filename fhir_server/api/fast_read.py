"""A WSGI fast path for the hottest request of a FHIR server: ``GET [base]/[type]/[id]`` of JSON.

It answers only the plain case (no query string, no conditional headers, JSON acceptable, the
caller admitted by the security gate and allowed to see the resource, the resource exists and is
not deleted) straight from the stored bytes, with the same headers the Flask route sends, and
records the same AuditEvent; everything else passes through to the Flask application unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fhir_server.api.formats import SECURITY_HEADERS
from fhir_server.api.rest import http_date
from fhir_server.components import Components
from fhir_server.core.interactions import is_fhir_id
from fhir_server.core.issues import FhirError
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage import access
from fhir_server.core.urls import parse_rest_url
from fhir_server.security.audit import AuditRecord
from fhir_server.security.gate import SecurityGate
from fhir_server.security.policy import RequestInfo

_JSON_ACCEPTS = frozenset({"", "*/*", "application/fhir+json", "application/json", "application/json+fhir"})
_CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")
_BASE_HEADERS = [*SECURITY_HEADERS, ("Content-Type", "application/fhir+json;charset=utf-8")]

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class FastRead:
    """WSGI middleware: serves plain reads by id, delegates the rest."""

    def __init__(self, app: WsgiApp, server: Components, gate: SecurityGate, base_path: str) -> None:
        self.app = app
        self.server = server
        self.gate = gate
        self.prefix = base_path.rstrip("/") + "/"

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("QUERY_STRING")
            or not path.startswith(self.prefix)
            or environ.get("HTTP_ACCEPT", "").split(";")[0].strip() not in _JSON_ACCEPTS
            or any(environ.get(h) for h in _CONDITIONAL)
        ):
            return self.app(environ, start_response)
        url = parse_rest_url("GET", path[len(self.prefix) :])
        rtype, rid = url.resource_type, url.resource_id
        if (
            url.interaction != "read"
            or url.extra_segments
            or rtype not in STORABLE_TYPES
            or not rid
            or not is_fhir_id(rid)
        ):
            return self.app(environ, start_response)
        info = RequestInfo("read", rtype, rid)
        try:  # every refusal (401, 403, 404, 410, 429) is answered, and audited, by the application
            caller = self.gate.authenticate(environ.get("HTTP_AUTHORIZATION"))
            admission = self.gate.admit(info, caller)
            with access.acting_as(admission.access):
                stored = self.server.store.read(rtype, rid)
        except FhirError:
            return self.app(environ, start_response)
        self.gate.audit(AuditRecord(info, caller, 200, environ.get("REMOTE_ADDR")))
        body = stored.body or b""
        headers = [
            *_BASE_HEADERS,
            ("ETag", stored.etag),
            ("Last-Modified", http_date(stored.last_updated)),
            ("Content-Length", str(len(body))),
        ]
        start_response("200 OK", headers)
        return [body]
