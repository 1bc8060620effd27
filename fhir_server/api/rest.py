"""The FHIR RESTful interactions: type and instance level, history, search, paging."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request

from fhir_server.api import security_edge
from fhir_server.api.formats import JSON_PATCH, fhir_response, negotiate, parse_body, request_format
from fhir_server.components import Components
from fhir_server.core import jsonio
from fhir_server.core.bundles import responses as bundles
from fhir_server.core.interactions import WriteResult, check_id
from fhir_server.core.issues import FhirError, Issue, operation_outcome
from fhir_server.core.search.engine import SearchPage
from fhir_server.core.search.keyset import Cursor
from fhir_server.core.search.query import SearchRequest
from fhir_server.core.storage.store import StoredResource

bp = Blueprint("rest", __name__)


# -- helpers --------------------------------------------------------------------------------


def server() -> Components:
    return current_app.extensions["fhir"]


def base_url() -> str:
    configured = server().settings.base_url
    if configured:
        return configured.rstrip("/")
    return request.host_url.rstrip("/") + server().settings.base_path


@lru_cache(maxsize=8192)
def http_date(instant: str) -> str:
    """A FHIR instant as an HTTP date (``Last-Modified``); cached, as the same versions are read again and again."""
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}


def if_match_version() -> int | None:
    """The version number in ``If-Match: W/"3"`` (or ``"3"``); 400 if unreadable."""
    header = request.headers.get("If-Match")
    if not header:
        return None
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise FhirError.single(400, "invalid", f"If-Match must name a version like W/\"3\", not '{header}'")
    return int(text)


def prefer(name: str) -> str | None:
    """A token of the Prefer header, e.g. ``return`` → ``minimal``."""
    for part in request.headers.get("Prefer", "").split(","):
        for item in part.split(";"):
            key, _, value = item.strip().partition("=")
            if key.strip() == name:
                return value.strip().strip('"')
    return None


def strict_handling() -> bool:
    return prefer("handling") == "strict"


def search_params() -> list[tuple[str, str]]:
    """Query parameters, plus form fields of ``POST _search``, in order, repeats kept."""
    params = list(request.args.items(multi=True))
    if request.method == "POST":
        params += list(request.form.items(multi=True))
    return params


def write_response(result: WriteResult, *, created_status: int = 201) -> Response:
    stored = result.stored
    status = created_status if result.created else 200
    headers = version_headers(stored)
    if result.created or request.method == "POST":
        headers["Location"] = f"{base_url()}/{stored.location}"
    if result.related:  # e.g. the routing Task the referral policy stored with a referral (RFC 8288 links)
        headers["Link"] = ", ".join(f'<{base_url()}/{related}>; rel="related"' for related in result.related)
    for related in result.related:
        if related.startswith("Task/"):
            headers["X-Routing-Task"] = f"{base_url()}/{related}"
    choice = prefer("return")
    if choice == "minimal":
        return fhir_response(None, status, negotiate(request), headers)
    if choice == "OperationOutcome":
        outcome = operation_outcome(result.warnings)
        return fhir_response(outcome, status, negotiate(request), headers)
    return fhir_response(stored.body, status, negotiate(request), headers)


def read_response(stored: StoredResource) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not one per use
    headers = version_headers(stored)
    req_headers = req.headers
    if_none_match = req_headers.get("If-None-Match")
    if if_none_match and if_none_match.strip() in (stored.etag, f'"{stored.version_id}"'):
        return Response(status=304, headers=headers)
    since = req_headers.get("If-Modified-Since")
    if since:
        try:
            threshold = parsedate_to_datetime(since)
            modified = datetime.fromisoformat(stored.last_updated.replace("Z", "+00:00"))
            if modified.replace(microsecond=0) <= threshold:
                return Response(status=304, headers=headers)
        except (TypeError, ValueError):
            pass
    body = stored.body
    args = req.args
    if args:
        summary, elements = args.get("_summary"), args.get("_elements")
        body = bundles.resource_bytes(
            stored,
            summary if summary in ("true", "text", "data") else None,
            [e for e in elements.split(",") if e] if elements else None,
        )
    return fhir_response(body, 200, negotiate(req), headers)


def page_links(request_: SearchRequest, page: SearchPage, type_url: str) -> list[tuple[str, str]]:
    """self, and for a search spanning pages first / previous / next: keyset cursors of its stored search
    (no ``last``: a keyset page is reached from its neighbour)."""
    query = urlencode(request_.used)
    links = [("self", f"{type_url}?{query}" if query else type_url)]
    if page.search_id is None:
        return links

    def page_url(cursor: Cursor | None) -> str:
        params = {"_getpages": page.search_id, "_count": page.count, "_bundletype": "searchset"}
        if cursor is not None:
            params["_cursor"] = cursor.encode()
        return f"{base_url()}?" + urlencode(params)

    links.append(("first", page_url(None)))
    if page.previous is not None:
        links.append(("previous", page_url(page.previous)))
    if page.next is not None:
        links.append(("next", page_url(page.next)))
    return links


def searchset_response(request_: SearchRequest, page: SearchPage, type_url: str) -> Response:
    notes = [*request_.ignored, withheld_issue(page.withheld)] if page.withheld else request_.ignored
    outcome = operation_outcome(notes) if notes else None
    entries = bundles.search_entries(
        base_url(), page.matches, page.included, summary=request_.summary, elements=request_.elements, outcome=outcome
    )
    total = None if request_.total == "none" else page.total
    body = bundles.build_bundle("searchset", entries, total=total, links=page_links(request_, page, type_url))
    return fhir_response(body, 200, negotiate(request))


def withheld_issue(types: set[str]) -> Issue:
    """The searchset's note that included resources of types the token cannot read were left out."""
    names = ", ".join(sorted(types))
    return Issue(
        "information",
        "suppressed",
        f"included resources of type {names} were left out: the token's scopes do not let it read them",
        "_include",
        f"inkluderte ressurser av typen {names} er utelatt: tokenet gir ikke lesetilgang til dem",
    )


# -- type level -------------------------------------------------------------------------------


@bp.route("/<rtype>", methods=["GET"])
def search_type(rtype: str) -> Response:
    request_, page = server().service.search(rtype, search_params(), strict=strict_handling())
    return searchset_response(request_, page, f"{base_url()}/{rtype}")


@bp.route("/<rtype>/_search", methods=["POST"])
def search_post(rtype: str) -> Response:
    if request.mimetype not in ("application/x-www-form-urlencoded", "", None):
        raise FhirError.single(415, "not-supported", "POST _search takes application/x-www-form-urlencoded")
    return search_type(rtype)


@bp.route("/<rtype>", methods=["POST"])
def create(rtype: str) -> Response:
    body = parse_body(request, server().settings.max_body_bytes)
    if isinstance(body, dict) and body.get("resourceType") != rtype:
        found = body.get("resourceType")
        raise FhirError.single(400, "invalid", f"the body is a {found}, but the URL names {rtype}", "resourceType")
    condition = request.headers.get("If-None-Exist")
    if request.query_string and not condition:
        condition = request.query_string.decode()  # the conditional create form fhirpy sends
    result = server().service.create(body, if_none_exist=condition, strict=strict_handling())  # type: ignore[arg-type]
    if result.existing:
        response = write_response(result)
        response.status_code = 200
        return response
    return write_response(result)


@bp.route("/<rtype>", methods=["PUT"])
def conditional_update(rtype: str) -> Response:
    if not request.query_string:
        raise FhirError.single(405, "not-supported", "PUT needs an id in the URL, or search parameters")
    body = parse_body(request, server().settings.max_body_bytes)
    result = server().service.conditional_update(rtype, request.query_string.decode(), body, strict=strict_handling())  # type: ignore[arg-type]
    return write_response(result)


@bp.route("/<rtype>", methods=["DELETE"])
def conditional_delete(rtype: str) -> Response:
    if not request.query_string:
        raise FhirError.single(405, "not-supported", "DELETE needs an id in the URL, or search parameters")
    count = server().service.conditional_delete(rtype, request.query_string.decode())
    outcome = operation_outcome([Issue("information", "informational", f"deleted {count} resource(s)")])
    return fhir_response(outcome, 200, negotiate(request))


# -- instance level ---------------------------------------------------------------------------


@bp.route("/<rtype>/<rid>", methods=["GET"])
def read(rtype: str, rid: str) -> Response:
    check_id(rid)
    return read_response(server().service.read(rtype, rid))


@bp.route("/<rtype>/<rid>", methods=["PUT"])
def update(rtype: str, rid: str) -> Response:
    check_id(rid)
    body = parse_body(request, server().settings.max_body_bytes)
    result = server().service.update(rtype, rid, body, if_match=if_match_version(), strict=strict_handling())  # type: ignore[arg-type]
    return write_response(result)


@bp.route("/<rtype>/<rid>", methods=["PATCH"])
def patch(rtype: str, rid: str) -> Response:
    check_id(rid)
    if request_format(request) != JSON_PATCH:
        raise FhirError.single(415, "not-supported", f"PATCH takes {JSON_PATCH} (RFC 6902 JSON Patch)")
    try:
        operations = jsonio.loads(request.get_data())
    except jsonio.JsonError as exc:
        raise FhirError.single(400, "structure", str(exc), exc.element) from exc
    result = server().service.patch(rtype, rid, operations, if_match=if_match_version())
    return write_response(result)


@bp.route("/<rtype>/<rid>", methods=["DELETE"])
def delete(rtype: str, rid: str) -> Response:
    check_id(rid)
    stored = server().service.delete(rtype, rid)
    headers = {"ETag": stored.etag} if stored else {}
    if prefer("return") == "OperationOutcome" or stored is None:
        text = "deleted" if stored else "nothing to delete"
        return fhir_response(
            operation_outcome([Issue("information", "informational", text)]), 200, negotiate(request), headers
        )
    return Response(status=204, headers=headers)


# -- history ----------------------------------------------------------------------------------


def history_response(rtype: str | None, rid: str | None) -> Response:
    since = request.args.get("_since")
    if since:
        from fhir_server.core.indexing.values import date_range

        rng = date_range(since)
        if rng is None:
            raise FhirError.single(400, "invalid", f"_since must be an instant, not '{since}'", "_since")
        since = rng[0]
    count_text = request.args.get("_count", "100")
    offset_text = request.args.get("_getpagesoffset", "0")
    if not count_text.isdigit() or not offset_text.isdigit():
        raise FhirError.single(400, "invalid", "_count and _getpagesoffset must be whole numbers", "_count")
    count = min(int(count_text), server().settings.max_count)
    offset = int(offset_text)
    versions, total = server().store.history(rtype, rid, since=since, at_most=count, offset=offset)
    if rid is not None and total == 0:
        raise FhirError.single(404, "not-found", f"Resource {rtype}/{rid} is not known")
    path = "/".join(p for p in (base_url(), rtype, rid, "_history") if p)
    links = [("self", request.url)]
    params = {k: v for k, v in request.args.items() if k not in ("_getpagesoffset",)}
    if offset + count < total:
        links.append(("next", f"{path}?" + urlencode({**params, "_count": count, "_getpagesoffset": offset + count})))
    if offset > 0:
        links.append(
            ("previous", f"{path}?" + urlencode({**params, "_count": count, "_getpagesoffset": max(0, offset - count)}))
        )
    body = bundles.build_bundle("history", bundles.history_entries(base_url(), versions), total=total, links=links)
    return fhir_response(body, 200, negotiate(request))


@bp.route("/_history", methods=["GET"])
def history_system() -> Response:
    return history_response(None, None)


@bp.route("/<rtype>/_history", methods=["GET"])
def history_type(rtype: str) -> Response:
    from fhir_server.core.interactions import check_type

    check_type(rtype)
    return history_response(rtype, None)


@bp.route("/<rtype>/<rid>/_history", methods=["GET"])
def history_instance(rtype: str, rid: str) -> Response:
    from fhir_server.core.interactions import check_type

    check_type(rtype)
    check_id(rid)
    return history_response(rtype, rid)


@bp.route("/<rtype>/<rid>/_history/<vid>", methods=["GET"])
def vread(rtype: str, rid: str, vid: str) -> Response:
    check_id(rid)
    stored = server().service.vread(rtype, rid, vid)
    return fhir_response(stored.body, 200, negotiate(request), version_headers(stored))


# -- paging of stored searches ----------------------------------------------------------------


def get_pages() -> Response:
    """A page of a stored search: the one its link's ``_cursor`` names, or its first page."""
    search_id = request.args.get("_getpages", "")
    count_text = request.args.get("_count", str(server().settings.default_count))
    if not count_text.isdigit() or int(count_text) == 0:
        raise FhirError.single(400, "invalid", "_count must be a whole number above 0", "_count")
    from fhir_server.core.search.engine import SearchEngine

    engine: SearchEngine = server().service.engine
    stored = _snapshot_request(search_id)
    security_edge.require(stored.resource_type, "s")
    count = min(int(count_text), server().settings.max_count)
    page = engine.page(search_id, request.args.get("_cursor"), count, stored)
    return searchset_response(stored, page, f"{base_url()}/{stored.resource_type}")


def _snapshot_request(snapshot_id: str) -> SearchRequest:
    """Re-parse the stored query of a snapshot so includes and _summary apply to later pages too (the
    caller's own snapshot only: another caller's is unknown to it)."""
    from urllib.parse import parse_qsl

    row = server().service.engine.stored_search(snapshot_id)
    params = [(k, v) for k, v in parse_qsl(row.query, keep_blank_values=True) if k not in ("_count",)]
    return server().service.parser.parse(row.res_type, params)
