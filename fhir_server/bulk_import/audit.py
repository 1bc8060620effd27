"""The AuditEvent of an import run: the operator, the files, how many resources stored and lines refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.core.indexing.values import now_instant
from fhir_server.security.audit import AuditRecord, audit_event
from fhir_server.security.policy import RequestInfo
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import Caller

if TYPE_CHECKING:
    from fhir_server.bulk_import.jobs import ImportJob
    from fhir_server.bulk_import.report import ImportSummary

#: The client id the import's AuditEvents name (the operator's name is its display).
IMPORT_CLIENT = "fhir-server-import"


def import_audit_event(job: ImportJob, summary: ImportSummary, status: int, operator: str) -> dict:
    """An ``$import`` operation's AuditEvent (action E): outcome 0 when nothing was refused, 4 when lines were
    refused, 8 when the run stopped on an error; the files named in the entity's detail."""
    caller = Caller(IMPORT_CLIENT, f"fhir-server import, run by {operator}", (), ScopeSet({}), (), 0.0)
    files = ",".join(str(f.path) for f in job.files)
    detail = (
        f"import job {job.id}: {summary.stored} resource(s) stored, {summary.refused} line(s) refused in this run; "
        f"{job.stored} stored and {job.refused} refused in all"
    )
    record = AuditRecord(RequestInfo("operation", operation="import"), caller, status, None, f"files={files}", detail)
    event = audit_event(record, now_instant(), "fhir-server import")
    event["outcomeDesc"] = detail
    return event
