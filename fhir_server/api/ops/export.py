"""Bulk Data Access 2.0 at the edge: ``$export`` (system, ``Patient``, ``Group/[id]``) with the async
pattern, the status URL (``$export-status``: poll, ``DELETE`` to cancel) and the files (``$export-file``).

Kick-off answers 202 with ``Content-Location``; polling answers 202 with ``X-Progress`` and
``Retry-After`` while the job runs, 429 to a client polling faster than :data:`MIN_POLL_SECONDS`, and
the completion manifest (``requiresAccessToken: true``) when done. Only the client that started a
job may poll it or read its files, with a token (the gate checks it as on every request); the job
exports what that client's access labels let it see, of the types its scopes let it read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Response, g, request
from sqlalchemy import update

from fhir_server.api import security_edge
from fhir_server.api.ops.common import outcome_response
from fhir_server.api.ops.registry import OperationCall, operation
from fhir_server.api.rest import base_url, server
from fhir_server.core import jsonio
from fhir_server.core.export.jobs import ExportSpec, cancel_job, file_body, job_files, read_job, start_job
from fhir_server.core.interactions import check_type
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import export_jobs
from fhir_server.security.policy import Need

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")
#: A client polling a job more often than this is told to wait (429).
MIN_POLL_SECONDS = 0.5
RETRY_AFTER_SECONDS = 1
#: Types never exported: the server's own audit trail and its subscriptions' plumbing.
NOT_EXPORTED = frozenset({"AuditEvent", "Subscription"})


def _arg(name: str, call: OperationCall) -> str | None:
    value = request.args.get(name)
    if value is None and isinstance(call.body, dict):
        value = call.text(name)
    return value


def _caller() -> tuple[str, access.Access]:
    caller = g.get("caller")
    return (caller.client_id if caller else "anonymous"), access.current()


def _readable(rtype: str) -> bool:
    try:
        security_edge.require(rtype, "rs")
    except FhirError:
        return False
    return True


def _types(call: OperationCall) -> list[str]:
    asked = _arg("_type", call)
    if asked:
        types = [t.strip() for t in asked.split(",") if t.strip()]
        for t in types:
            check_type(t)
            security_edge.require(t, "rs")  # 403: asked for a type its scopes do not grant
        return types
    return [t for t in sorted(STORABLE_TYPES - NOT_EXPORTED) if _readable(t)]


def _type_filters(call: OperationCall, types: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for text in request.args.getlist("_typeFilter"):
        for item in text.split(","):
            rtype, sep, query = item.partition("?")
            if not sep or rtype not in types:
                raise FhirError.single(
                    400, "invalid", f"_typeFilter '{item}' must read 'Type?query' for an exported type", "_typeFilter"
                )
            pairs = [(key, value) for key, _, value in (p.partition("=") for p in query.split("&"))]
            server().service.parser.parse(rtype, pairs, strict=True)
            found.setdefault(rtype, []).append(query)
    return found


@operation(
    "export",
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    ("Patient", "Group"),
    ("system", "type", "instance"),
    requires=(Need("", "rs"),),
)
def export(call: OperationCall) -> Response:
    if "respond-async" not in request.headers.get("Prefer", ""):
        raise FhirError.single(400, "invalid", "a bulk export needs the header 'Prefer: respond-async'")
    output_format = _arg("_outputFormat", call) or NDJSON
    if output_format not in OUTPUT_FORMATS:
        raise FhirError.single(
            400, "not-supported", f"_outputFormat is one of {', '.join(OUTPUT_FORMATS)}", "_outputFormat"
        )
    level = "group" if call.resource_id else "patient" if call.resource_type else "system"
    if level == "system" or call.resource_type == "Patient":
        if call.resource_id:
            raise FhirError.single(404, "not-supported", "$export is served on the system, Patient and Group/[id]")
    elif call.resource_type != "Group" or not call.resource_id:
        raise FhirError.single(404, "not-supported", "$export is served on the system, Patient and Group/[id]")
    types = _types(call)
    patients = None
    if level == "group":
        group = jsonio.loads(server().service.read("Group", call.resource_id or "").body or b"{}")
        patients = [
            str((m.get("entity") or {}).get("reference", "")).partition("/")[2]
            for m in group.get("member") or []
            if str((m.get("entity") or {}).get("reference", "")).startswith("Patient/")
        ]
    owner, caller_access = _caller()
    spec = ExportSpec(
        types=types,
        since=_arg("_since", call),
        type_filters=_type_filters(call, types),
        patients=patients,
        patient_level=level != "system",
        labels=sorted(caller_access.labels),
        unrestricted=caller_access.unrestricted,
    )
    job_id = start_job(server().service, owner, request.url, spec)
    response = outcome_response([Issue("information", "informational", f"export {job_id} accepted")], 202)
    response.headers["Content-Location"] = f"{base_url()}/$export-status?{urlencode({'job': job_id})}"
    return response


def _own_job(call: OperationCall):  # type: ignore[no-untyped-def]
    job_id = call.text("job") or ""
    job = read_job(server().service, job_id)
    owner, caller_access = _caller()
    if job is None or job.status == "cancelled" or (job.owner != owner and not caller_access.unrestricted):
        raise FhirError.single(404, "not-found", f"no export job '{job_id}' of this client", "job")
    return job


@operation(
    "export-status",
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    (),
    ("system",),
    requires=(),
    methods=("GET", "DELETE"),
)
def export_status(call: OperationCall) -> Response:
    job = _own_job(call)
    if request.method == "DELETE":
        cancel_job(server().service, job.id)
        return outcome_response([Issue("information", "informational", f"export {job.id} cancelled")], 202)
    now = datetime.now(UTC)
    last = datetime.fromisoformat(job.last_poll_at) if job.last_poll_at else None
    if job.status == "accepted" and last is not None and (now - last).total_seconds() < MIN_POLL_SECONDS:
        response = outcome_response([Issue("error", "throttled", "polling too often; wait for Retry-After")], 429)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    with access.acting_as(access.SYSTEM):
        server().store.write(
            lambda unit: unit.execute(
                update(export_jobs).where(export_jobs.c.id == job.id).values(last_poll_at=now.isoformat())
            )
        )
    if job.status == "error":
        return outcome_response([Issue("error", "exception", f"the export failed: {job.error}")], 500)
    if job.status != "completed":
        spec = jsonio.loads(job.spec)
        index = jsonio.loads(job.cursor)[0]
        progress = (
            f"{job.exported} resources exported; type {min(index + 1, len(spec['types']))} of {len(spec['types'])}"
        )
        response = Response(status=202)
        response.headers["X-Progress"] = progress
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    files = [
        {
            "type": f.res_type,
            "url": f"{base_url()}/$export-file?{urlencode({'job': job.id, 'file': f.number})}",
            "count": f.count,
        }
        for f in job_files(server().service, job.id)
    ]
    manifest = {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": True,
        "output": files,
        "error": [],
    }
    return Response(jsonio.dumps(manifest), 200, content_type="application/json")


@operation(
    "export-file",
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    (),
    ("system",),
    requires=(),
    methods=("GET",),
)
def export_file(call: OperationCall) -> Response:
    job = _own_job(call)
    number = call.text("file") or ""
    body = file_body(server().service, job.id, int(number)) if number.isdigit() else None
    if body is None:
        raise FhirError.single(404, "not-found", f"export {job.id} has no file '{number}'", "file")
    return Response(body, 200, content_type=NDJSON)
