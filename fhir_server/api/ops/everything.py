"""``$everything``: a referral as one Bundle (``ServiceRequest/[id]/$everything``) and a patient's record
(``Patient/[id]/$everything``, R4: ``start``, ``end``, ``_since``, ``_type``, ``_count`` paging).

Both follow references both ways through the search index (``idx_reference``) and load what they
found through the store, which keeps only what the caller may see (access labels): a resource the
caller may not see is left out, as in every search.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, request
from sqlalchemy import Connection, select, tuple_

from fhir_server.api.formats import fhir_response, negotiate
from fhir_server.api.ops.registry import OperationCall, operation
from fhir_server.api.rest import base_url, server
from fhir_server.core import jsonio
from fhir_server.core.bundles.responses import build_bundle, search_entries
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.interactions import check_type
from fhir_server.core.issues import FhirError
from fhir_server.core.jsonwalk import walk_objects
from fhir_server.core.storage.records import StoredResource
from fhir_server.core.storage.schema import idx_date, idx_reference
from fhir_server.security.policy import Need

Key = tuple[str, str]

#: Reverse references of a referral followed one more step (what references its Task: Provenance).
SECOND_STEP_TYPES = ("Task",)
#: Not part of anyone's record: the server's audit trail (it names what was read) and its subscriptions.
LEFT_OUT = frozenset({"AuditEvent", "Subscription"})


def outgoing(body: dict, resource_type: str) -> list[Key]:
    """The resources on this server a resource points to (``Type/id`` references, one level)."""
    found: list[Key] = []
    for _, node in walk_objects(body, resource_type):
        text = node.get("reference")
        if isinstance(text, str) and ":" not in text and not text.startswith("#"):
            rtype, rid, _ = parse_reference(text)
            if rtype and rid:
                found.append((rtype, rid))
    return found


def incoming(conn: Connection, targets: list[Key]) -> list[Key]:
    """The current resources whose references point at any of ``targets`` (through the search index)."""
    if not targets:
        return []
    query = (
        select(idx_reference.c.res_type, idx_reference.c.res_id)
        .where(tuple_(idx_reference.c.target_type, idx_reference.c.target_id).in_(targets))
        .distinct()
    )
    return [(r[0], r[1]) for r in conn.execute(query) if r[0] not in LEFT_OUT]


def referral_set(conn: Connection, referral: StoredResource) -> list[StoredResource]:
    """A referral and everything it references and that references it (its Task: one step further)."""
    store = server().store
    root: Key = ("ServiceRequest", referral.id)
    keys = outgoing(jsonio.loads(referral.body or b"{}"), "ServiceRequest") + incoming(conn, [root])
    second = [k for k in keys if k[0] in SECOND_STEP_TYPES]
    loaded = store.load_many(conn, second)
    for key in second:
        if key in loaded:
            keys += outgoing(jsonio.loads(loaded[key].body or b"{}"), key[0])
    keys += incoming(conn, second)
    wanted = [k for k in dict.fromkeys(keys) if k != root]
    found = store.load_many(conn, wanted)
    return [found[k] for k in sorted(found)]


@operation(
    "everything",
    "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    ("Patient", "ServiceRequest"),
    ("instance",),
    requires=(Need("", "r"),),
)
def everything(call: OperationCall) -> Response:
    assert call.resource_type and call.resource_id
    if call.resource_type == "ServiceRequest":
        return _referral_everything(call.resource_id)
    return _patient_everything(call.resource_id)


def _referral_everything(referral_id: str) -> Response:
    srv = server()
    referral = srv.service.read("ServiceRequest", referral_id)  # 404 when the caller may not see it
    with srv.store.reading() as conn:
        rest = referral_set(conn, referral)
    entries = search_entries(base_url(), [referral], rest)
    self_url = f"{base_url()}/ServiceRequest/{referral_id}/$everything"
    body = build_bundle("searchset", entries, total=1 + len(rest), links=[("self", self_url)])
    return fhir_response(body, 200, negotiate(request))


def _patient_everything(patient_id: str) -> Response:
    srv = server()
    patient = srv.service.read("Patient", patient_id)
    types = _types()
    start, end, since = request.args.get("start"), request.args.get("end"), request.args.get("_since")
    count = _int_arg("_count", 100, 1, 1000)
    offset = _int_arg("_offset", 0, 0, None)
    root: Key = ("Patient", patient_id)
    with srv.store.reading() as conn:
        keys = [*outgoing(jsonio.loads(patient.body or b"{}"), "Patient"), *incoming(conn, [root])]
        keys = [k for k in dict.fromkeys(keys) if k != root and (types is None or k[0] in types)]
        if start or end:
            keys = _in_period(conn, keys, start, end)
        found = srv.store.load_many(conn, keys)
    others = [found[k] for k in sorted(found) if since is None or found[k].last_updated >= since]
    members = ([patient] if types is None or "Patient" in types else []) + others
    page = members[offset : offset + count]
    query = {k: v for k, v in request.args.items() if k != "_offset"}
    url = f"{base_url()}/Patient/{patient_id}/$everything"
    links = [("self", f"{url}?{urlencode({**query, '_offset': offset})}")]
    if offset + count < len(members):
        links.append(("next", f"{url}?{urlencode({**query, '_offset': offset + count})}"))
    if offset > 0:
        links.append(("previous", f"{url}?{urlencode({**query, '_offset': max(0, offset - count)})}"))
    matches = [s for s in page if s.resource_type == "Patient" and s.id == patient_id]
    included = [s for s in page if not (s.resource_type == "Patient" and s.id == patient_id)]
    body = build_bundle("searchset", search_entries(base_url(), matches, included), total=len(members), links=links)
    return fhir_response(body, 200, negotiate(request))


def _types() -> set[str] | None:
    text = request.args.get("_type")
    if not text:
        return None
    types = {t.strip() for t in text.split(",") if t.strip()}
    for t in types:
        check_type(t)
    return types


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low:
        raise FhirError.single(400, "value", f"the parameter '{name}' must be a whole number of at least {low}", name)
    return min(int(text), high) if high is not None else int(text)


def _in_period(conn: Connection, keys: list[Key], start: str | None, end: str | None) -> list[Key]:
    """R4 ``start``/``end``: resources with a date in the period, and resources that have no date."""
    if not keys:
        return keys
    dated = select(idx_date.c.res_type, idx_date.c.res_id, idx_date.c.low, idx_date.c.high).where(
        tuple_(idx_date.c.res_type, idx_date.c.res_id).in_(keys)
    )
    rows = conn.execute(dated).all()
    has_date = {(r[0], r[1]) for r in rows}
    inside = {
        (r[0], r[1]) for r in rows if (start is None or r[3] >= start) and (end is None or r[2] <= end + "\uffff")
    }
    return [k for k in keys if k not in has_date or k in inside]
