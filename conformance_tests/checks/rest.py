"""Area ``rest``: create, read, vread, update, If-Match, update-as-create, JSON Patch, delete, history."""

from __future__ import annotations

import re
import time
import uuid

import requests

from conformance_tests.client import Client
from conformance_tests.fhirdata import entries, interactions_of, link, patient, resource_of
from conformance_tests.registry import check, expect, skip


def expect_etag(client: Client, r: requests.Response, version: str) -> None:
    """The response's ETag is the weak validator ``W/"version"`` (FHIR R4 http.html#versioning)."""
    etag = r.headers.get("ETag")
    expect(
        etag == f'W/"{version}"',
        f'ETag: expected W/"{version}" (a weak ETag with the versionId), got {etag!r}; {client.describe(r, 120)}',
    )


def expect_version(client: Client, body: dict | None, version: str, what: str) -> None:
    got = ((body or {}).get("meta") or {}).get("versionId")
    expect(got == version, f"{what}: expected meta.versionId {version!r}, got {got!r}")


@check("rest", "create")
def create(client: Client) -> None:
    """POST [type] gives 201, Location [base]/Type/id/_history/1, ETag W/"1" and the stored resource."""
    tag = client.new_tag()
    sent = patient(tag, family="Kittelsen")
    r = client.post("Patient", sent, headers={"Prefer": "return=representation"})
    body = client.expect_status(r, 201, what="POST Patient")
    client.track(r.headers.get("Location"))
    expect(body and body.get("id"), f"POST Patient: expected the created resource with an id; {client.describe(r)}")
    client.track(f"Patient/{body['id']}")
    location = r.headers.get("Location", "")
    expect(
        re.search(rf"/Patient/{re.escape(body['id'])}/_history/1$", location),
        f"Location: expected [base]/Patient/{body['id']}/_history/1, got {location!r}",
    )
    expect_etag(client, r, "1")
    expect_version(client, body, "1", "POST Patient")
    expect((body.get("meta") or {}).get("lastUpdated"), "POST Patient: the stored resource has no meta.lastUpdated")
    expect(
        body.get("name") == sent["name"],
        f"POST Patient: name changed on the way: sent {sent['name']}, got {body.get('name')}",
    )


@check("rest", "read")
def read(client: Client) -> None:
    """GET [type]/[id] returns the resource with ETag W/"1" and Last-Modified; an unknown id gives 404."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Lesersen"))
    r = client.get(f"Patient/{created['id']}")
    body = client.expect_status(r, 200, what="read")
    expect(body and body.get("id") == created["id"], f"read: expected id {created['id']}; {client.describe(r)}")
    expect(body.get("name") == created.get("name"), f"read: name differs from what was stored: {body.get('name')}")
    expect_version(client, body, "1", "read")
    expect_etag(client, r, "1")
    expect(r.headers.get("Last-Modified"), f"read: no Last-Modified header; {client.describe(r, 100)}")
    missing = client.get(f"Patient/{uuid.uuid4().hex[:20]}")
    client.expect_status(missing, 404, what="read of an id that does not exist")


@check("rest", "vread")
def vread(client: Client) -> None:
    """GET [type]/[id]/_history/[vid] returns each version as it was, after an update too."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Versjonsen"))
    changed = dict(created, name=[{"family": "Versjonsen-Endret", "given": ["Ola"]}])
    client.expect_status(client.put(f"Patient/{created['id']}", changed), 200, what="update before vread")
    r1 = client.get(f"Patient/{created['id']}/_history/1")
    v1 = client.expect_status(r1, 200, what="vread version 1")
    expect_version(client, v1, "1", "vread 1")
    expect(v1["name"][0]["family"] == "Versjonsen", f"vread 1: expected the first version's name, got {v1['name']}")
    r2 = client.get(f"Patient/{created['id']}/_history/2")
    v2 = client.expect_status(r2, 200, what="vread version 2")
    expect_version(client, v2, "2", "vread 2")
    expect(v2["name"][0]["family"] == "Versjonsen-Endret", f"vread 2: expected the updated name, got {v2['name']}")
    client.expect_status(
        client.get(f"Patient/{created['id']}/_history/99"), 404, what="vread of a version that never was"
    )


@check("rest", "update")
def update(client: Client) -> None:
    """PUT [type]/[id] gives 200, meta.versionId 2, ETag W/"2", and a read returns the new content."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Oppdal"))
    changed = dict(created, birthDate="1986-04-16")
    r = client.put(f"Patient/{created['id']}", changed, headers={"Prefer": "return=representation"})
    body = client.expect_status(r, 200, what="PUT Patient/id")
    expect_version(client, body, "2", "update")
    expect_etag(client, r, "2")
    after = client.expect_status(client.get(f"Patient/{created['id']}"), 200, what="read after update")
    expect(
        after.get("birthDate") == "1986-04-16",
        f"read after update: expected birthDate 1986-04-16, got {after.get('birthDate')!r}",
    )
    wrong = dict(changed, id="another-id")
    client.expect_status(
        client.put(f"Patient/{created['id']}", wrong), 400, what="PUT with a body id that differs from the URL"
    )


@check("rest", "if_match")
def if_match(client: Client) -> None:
    """PUT with the current If-Match version succeeds; a stale If-Match gives 412 and changes nothing."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Matchesen"))
    url = f"Patient/{created['id']}"
    current = client.put(url, dict(created, birthDate="1970-01-01"), headers={"If-Match": 'W/"1"'})
    client.expect_status(current, 200, what='PUT with If-Match W/"1" (the current version)')
    stale = client.put(url, dict(created, birthDate="1999-09-09"), headers={"If-Match": 'W/"1"'})
    expect(
        stale.status_code == 412,
        f'PUT with If-Match W/"1" when the resource is at version 2: expected 412 Precondition Failed; '
        f"{client.describe(stale)}",
    )
    after = client.expect_status(client.get(url), 200, what="read after the stale update")
    expect_version(client, after, "2", "read after a refused stale update")
    expect(
        after.get("birthDate") == "1970-01-01",
        f"a stale If-Match update changed the resource: {after.get('birthDate')}",
    )


@check("rest", "update_as_create")
def update_as_create(client: Client) -> None:
    """PUT [type]/[new id] creates the resource with the client's id (201), when updateCreate is declared."""
    declared = resource_of(client.capabilities(), "Patient") or {}
    if declared.get("updateCreate") is False:
        skip("the CapabilityStatement declares updateCreate false for Patient")
    tag = client.new_tag()
    new_id = "ck-" + uuid.uuid4().hex[:24]
    resource = dict(patient(tag, family="Klientid"), id=new_id)
    r = client.put(f"Patient/{new_id}", resource)
    client.track(f"Patient/{new_id}")
    client.expect_status(r, 201, what=f"PUT Patient/{new_id} (no such resource yet)")
    body = client.expect_status(client.get(f"Patient/{new_id}"), 200, what="read after update-as-create")
    expect(body.get("id") == new_id, f"update-as-create: expected id {new_id}, got {body.get('id')!r}")
    expect_version(client, body, "1", "update-as-create")


@check("rest", "patch")
def json_patch(client: Client) -> None:
    """PATCH with application/json-patch+json applies the operations as version 2; a failing test op is refused."""
    if "patch" not in interactions_of(client.capabilities(), "Patient"):
        skip("the CapabilityStatement does not declare patch for Patient")
    tag = client.new_tag()
    created = client.create(patient(tag, family="Lappesen"))
    url = f"Patient/{created['id']}"
    r = client.patch(
        url,
        [{"op": "replace", "path": "/birthDate", "value": "1991-02-03"}],
        headers={"Prefer": "return=representation"},
    )
    client.expect_status(r, 200, what="PATCH replace /birthDate")
    after = client.expect_status(client.get(url), 200, what="read after PATCH")
    expect_version(client, after, "2", "read after PATCH")
    expect(
        after.get("birthDate") == "1991-02-03", f"PATCH: expected birthDate 1991-02-03, got {after.get('birthDate')!r}"
    )
    expect(after["name"] == created["name"], "PATCH changed an element it did not name (name)")
    failing = client.patch(url, [{"op": "test", "path": "/birthDate", "value": "1800-01-01"}])
    expect(
        400 <= failing.status_code < 500,
        f"PATCH whose test operation fails: expected a 4xx refusal; {client.describe(failing)}",
    )


@check("rest", "delete")
def delete(client: Client) -> None:
    """DELETE gives 200 or 204; then read gives 410 Gone, and the history shows the delete."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Slettesen"))
    url = f"Patient/{created['id']}"
    client.expect_status(client.delete(url), 200, 204, what="DELETE")
    gone = client.get(url)
    client.expect_status(gone, 410, what="read after delete")
    history = client.expect_status(client.get(f"{url}/_history"), 200, what="history after delete")
    methods = [(e.get("request") or {}).get("method") for e in history.get("entry", [])]
    expect(methods[:1] == ["DELETE"], f"history after delete: expected the newest entry to be a DELETE, got {methods}")
    search = client.search("Patient", {"_tag": client.tag_param(tag)})
    expect(not entries(search), f"search after delete still finds the resource: {len(entries(search))} entries")


@check("rest", "history_instance")
def history_instance(client: Client) -> None:
    """GET [type]/[id]/_history lists every version, newest first, in a history Bundle."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Historie"))
    url = f"Patient/{created['id']}"
    for year in ("1971", "1972"):
        client.expect_status(client.put(url, dict(created, birthDate=f"{year}-01-01")), 200, what="update")
    r = client.get(f"{url}/_history")
    bundle = client.expect_status(r, 200, what="instance history")
    expect(
        bundle.get("type") == "history", f"instance history: expected Bundle.type history, got {bundle.get('type')!r}"
    )
    versions = [((e.get("resource") or {}).get("meta") or {}).get("versionId") for e in bundle.get("entry", [])]
    expect(
        versions == ["3", "2", "1"],
        f"instance history: expected versions ['3', '2', '1'] (newest first), got {versions}",
    )
    births = [(e.get("resource") or {}).get("birthDate") for e in bundle.get("entry", [])]
    expect(births == ["1972-01-01", "1971-01-01", created.get("birthDate")], f"instance history: contents {births}")
    if "total" in bundle:
        expect(bundle["total"] == 3, f"instance history: total {bundle['total']}, expected 3")


@check("rest", "history_type")
def history_type(client: Client) -> None:
    """GET [type]/_history?_since= lists the type's new versions newest first, each exactly once."""
    tag = client.new_tag()
    first = client.create(patient(tag, family="Typehist"))
    since = first["meta"]["lastUpdated"]
    time.sleep(0.01)
    second = client.create(patient(tag, family="Typehist"))
    client.expect_status(client.put(f"Patient/{first['id']}", dict(first, birthDate="1960-06-06")), 200, what="update")
    wanted = [f"{second['id']}/1", f"{first['id']}/1", f"{first['id']}/2"]
    seen: list[str] = []
    url: str | None = "Patient/_history"
    params: dict[str, str] | None = {"_since": since, "_count": "100"}
    for _ in range(20):
        if not url:
            break
        r = client.get(url, params=params)
        bundle = client.expect_status(r, 200, what="type history")
        expect(
            bundle.get("type") == "history", f"type history: expected Bundle.type history, got {bundle.get('type')!r}"
        )
        for e in bundle.get("entry", []):
            res = e.get("resource") or {}
            if res.get("id") in (first["id"], second["id"]):
                seen.append(f"{res['id']}/{(res.get('meta') or {}).get('versionId')}")
        url, params = link(bundle, "next"), None
    expect(sorted(seen) == sorted(wanted), f"type history since {since}: expected versions {wanted}, got {seen}")
    order = [s for s in seen if s in wanted]
    expect(
        order.index(f"{first['id']}/2") < order.index(f"{second['id']}/1") < order.index(f"{first['id']}/1"),
        f"type history: expected newest first (Patient {first['id']} v2, {second['id']} v1, {first['id']} v1), "
        f"got {order}",
    )
