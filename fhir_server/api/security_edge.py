"""The security gate at the Flask edge: admit every request, set its access, audit its outcome.

Request hooks wrap every route like interceptors: ``before_request`` asks the gate (token, rate
limit, scopes) and sets the caller's access for storage and search; ``after_request`` records the
AuditEvent; ``teardown_request`` clears the access. Handlers that learn more from the body (Bundles,
paged searches) call :func:`check_bundle` and :func:`require`.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request

from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.security.audit import AuditRecord
from fhir_server.security.gate import Admission, SecurityGate
from fhir_server.security.policy import PUBLIC_PATHS, Need, describe


def gate() -> SecurityGate:
    return current_app.extensions["fhir_gate"]


def install(app: Flask, security_gate: SecurityGate, base_path: str) -> None:
    """Register the hooks on ``app`` (FHIR paths under ``base_path``)."""
    app.extensions["fhir_gate"] = security_gate
    prefix = base_path.rstrip("/")

    def relative_path() -> str | None:
        path = request.path
        if path != prefix and not path.startswith(prefix + "/"):
            return None
        return path[len(prefix) :].strip("/")

    @app.before_request
    def _admit() -> None:
        path = relative_path()
        g.fhir_path = path
        if path is None or path in PUBLIC_PATHS:
            return
        g.info = describe(request.method, path)
        g.caller = security_gate.authenticate(request.headers.get("Authorization"))
        g.admission = security_gate.admit(g.info, g.caller)
        g.access_token = access.enter(g.admission.access)

    @app.after_request
    def _audit(response: Response) -> Response:
        path = g.get("fhir_path")
        if path is None or path in PUBLIC_PATHS:
            return response
        admission: Admission | None = g.get("admission")
        info = admission.info if admission else g.get("info") or describe(request.method, path)
        query = request.query_string.decode(errors="replace") or None
        if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
            query = request.get_data(as_text=True) or query  # POST _search: the query is the form
        security_gate.audit(AuditRecord(info, g.get("caller"), response.status_code, request.remote_addr, query))
        return response

    @app.teardown_request
    def _clear(_error: BaseException | None) -> None:
        token = g.pop("access_token", None)
        if token is not None:
            access.leave(token)


def check_bundle(bundle: dict, *, referral: bool) -> None:
    """Check a batch or transaction's entries against the caller's scopes (before anything runs)."""
    admission: Admission | None = g.get("admission")
    if admission is not None and isinstance(bundle, dict):
        g.admission = gate().check_bundle(admission, bundle, referral=referral)


def require(resource_type: str, letters: str) -> None:
    """Raise 403 unless the caller may do ``letters`` on ``resource_type`` (e.g. paging a stored search)."""
    admission: Admission | None = g.get("admission")
    if admission is not None:
        gate().check(admission.caller, Need(resource_type, letters))


def require_admin(what: str) -> None:
    """Raise 403 unless the caller is an administrator (operations that act for the whole server)."""
    admission: Admission | None = g.get("admission")
    if admission is not None and not gate().policy.is_admin(admission.caller):
        raise FhirError.single(403, "forbidden", f"only administrators may call {what}")
