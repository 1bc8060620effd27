"""Building response Bundles (searchset, history) from stored JSON without re-serialising resources.

Stored resource bytes are spliced into the Bundle as they are; only ``_summary`` and
``_elements`` need to parse a resource, to drop elements.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import uuid4

from fhir_server.core import jsonio
from fhir_server.core.conformance.definitions import r4
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.storage.store import StoredResource

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def summary_elements(resource_type: str) -> set[str]:
    """Top-level element names marked isSummary (plus mandatory ones) for ``_summary=true``."""
    td = r4().type(resource_type)
    if td is None:
        return set(_ALWAYS)
    names = set(_ALWAYS)
    for child_name, child in td.children.get(resource_type, {}).items():
        if child.element.is_summary or child.element.min > 0:
            names.add(child_name)
    return names


def shape(resource: dict, summary: str | None, elements: list[str] | None) -> dict:
    """Apply ``_summary`` (true, text, data) and ``_elements`` to one resource."""
    rtype = resource["resourceType"]
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        td = r4().type(rtype)
        required = {n for n, c in (td.children.get(rtype, {}) if td else {}).items() if c.element.min > 0}
        out = {k: v for k, v in resource.items() if k in (*_ALWAYS, "text") or k in required}
    elif summary == "true":
        keep = summary_elements(rtype)
        out = {k: v for k, v in resource.items() if k in keep}
    elif elements:
        keep = set(_ALWAYS) | {e.split(".")[-1] if e.startswith(rtype + ".") else e for e in elements}
        td = r4().type(rtype)
        if td is not None:  # mandatory elements stay, so the result is still valid
            keep |= {n for n, c in td.children.get(rtype, {}).items() if c.element.min > 0}
        out = {k: v for k, v in resource.items() if k in keep}
    else:
        return resource
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def resource_bytes(stored: StoredResource, summary: str | None = None, elements: list[str] | None = None) -> bytes:
    if stored.body is None:
        return b"null"
    if summary is None and not elements:
        return stored.body
    return jsonio.dumps(shape(jsonio.loads(stored.body), summary, elements))


def _entry(base_url: str, stored: StoredResource, extra: dict, body: bytes | None) -> bytes:
    parts = [b'{"fullUrl":', jsonio.dumps(f"{base_url}/{stored.resource_type}/{stored.id}")]
    if body is not None:
        parts += [b',"resource":', body]
    for key, value in extra.items():
        parts += [b",", jsonio.dumps(key), b":", jsonio.dumps(value)]
    parts.append(b"}")
    return b"".join(parts)


def build_bundle(
    bundle_type: str,
    entries: Iterable[bytes],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] | None = None,
) -> bytes:
    """Assemble a Bundle from pre-serialised entries."""
    head: dict = {
        "resourceType": "Bundle",
        "id": str(uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    prefix = jsonio.dumps(head)[:-1]
    return prefix + b',"entry":[' + b",".join(entries) + b"]}" if entries else prefix + b"}"


def search_entries(
    base_url: str,
    matches: list[StoredResource],
    included: list[StoredResource],
    *,
    summary: str | None = None,
    elements: list[str] | None = None,
    outcome: dict | None = None,
) -> list[bytes]:
    out = [_entry(base_url, s, {"search": {"mode": "match"}}, resource_bytes(s, summary, elements)) for s in matches]
    out += [
        _entry(base_url, s, {"search": {"mode": "include"}}, resource_bytes(s, summary, elements)) for s in included
    ]
    if outcome is not None:
        out.append(
            b'{"fullUrl":"urn:uuid:'
            + str(uuid4()).encode()
            + b'","resource":'
            + jsonio.dumps(outcome)
            + b',"search":{"mode":"outcome"}}'
        )
    return out


def history_entries(base_url: str, versions: list[StoredResource]) -> list[bytes]:
    out = []
    for s in versions:
        method = s.method or "PUT"
        if method == "POST":
            request = {"method": "POST", "url": s.resource_type}
            status = "201 Created"
        elif method == "DELETE":
            request = {"method": "DELETE", "url": f"{s.resource_type}/{s.id}"}
            status = "204 No Content"
        else:
            request = {"method": "PUT", "url": f"{s.resource_type}/{s.id}"}
            status = "200 OK"
        response = {"status": status, "etag": s.etag, "lastModified": s.last_updated}
        out.append(_entry(base_url, s, {"request": request, "response": response}, s.body))
    return out
