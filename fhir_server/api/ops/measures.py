"""Measure operations: ``Measure/[id]/$evaluate-measure`` (R4) over the measures' fact table.

Who sees what: an administrator (``auth_admin_scope``) sees every region, unsuppressed; a client with
the statistics scope (``auth_statistics_scope``, default ``referral-hub:statistics``) sees every region
side by side, with small-number protection; any other caller sees only the referrals owned by its
own region (its ``region:`` access labels), with small-number protection (strata of fewer than
``measure_min_stratum_patients`` patients are masked).
"""

from __future__ import annotations

from datetime import date

from flask import Response, g

from fhir_server.api.ops.common import resource_response
from fhir_server.api.ops.registry import BASE_DEFINITION, OperationCall, operation
from fhir_server.api.rest import server
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.domain.calendar import oslo_today
from fhir_server.domain.measures import Request, evaluate
from fhir_server.domain.measures.audience import Audience, audience
from fhir_server.domain.measures.evaluate import REPORT_TYPES
from fhir_server.security.policy import Need


def _date(call: OperationCall, name: str) -> date:
    value = call.text(name)
    if not value:
        raise FhirError.single(400, "required", f"$evaluate-measure needs {name} (a date)", name)
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise FhirError.single(400, "value", f"{name} '{value}' is not a date", name) from exc


def _subject(call: OperationCall) -> str | None:
    value = call.first("subject")
    if isinstance(value, dict):
        value = value.get("reference")
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("Patient/") or len(value) <= 8:
        raise FhirError.single(400, "value", "subject must be Patient/[id]", "subject")
    return value[8:]


def _audience() -> Audience:
    """The regions the caller's report covers and the strata it masks (:mod:`fhir_server.domain.measures.audience`)."""
    caller = g.get("caller")
    settings = server().settings
    statistics = caller is not None and settings.auth_statistics_scope in caller.raw_scopes
    return audience(access.current(), statistics=statistics, min_patients=settings.measure_min_stratum_patients)


@operation(
    "evaluate-measure",
    BASE_DEFINITION + "Measure-evaluate-measure",
    ("Measure",),
    ("instance",),
    requires=(Need("Measure", "r"),),
)
def evaluate_measure(call: OperationCall) -> Response:
    measure = server().measures.by_id.get(call.resource_id or "")
    if measure is None:
        raise FhirError.single(404, "not-found", f"Measure/{call.resource_id} is not a measure this server evaluates")
    start, end = _date(call, "periodStart"), _date(call, "periodEnd")
    if end < start:
        raise FhirError.single(400, "value", "periodEnd is before periodStart", "periodEnd")
    subject = _subject(call)
    report_type = call.text("reportType") or ("subject" if subject else "population")
    if report_type not in REPORT_TYPES:
        raise FhirError.single(400, "value", "reportType must be population, subject-list or subject", "reportType")
    if report_type == "subject" and subject is None:
        raise FhirError.single(400, "required", "reportType subject needs subject=Patient/[id]", "subject")
    who = _audience()
    request = Request(start, end, min(end, oslo_today()), report_type, subject, who.regions, who.min_patients)
    with server().db.read.connect() as conn:
        report = evaluate(conn, measure, request)
    return resource_response(report)
