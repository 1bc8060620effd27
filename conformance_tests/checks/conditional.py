"""Area ``conditional``: conditional create by ``If-None-Exist`` and by ``POST [type]?params``."""

from __future__ import annotations

import uuid

from conformance_tests.client import KIT_IDENTIFIER_SYSTEM, Client
from conformance_tests.fhirdata import entries, patient
from conformance_tests.registry import check, expect


def _conditional_twice(client: Client, send) -> None:
    """Send the same conditional create twice: 201 then 200 (or 201 → existing) with the same id, one stored."""
    tag = client.new_tag()
    key = uuid.uuid4().hex
    resource = patient(tag, family="Betingelse", key=key)
    first = send(resource, key)
    client.expect_status(first, 201, what="first conditional create (no match yet)")
    client.track(first.headers.get("Location"))
    second = send(resource, key)
    client.expect_status(second, 200, what="second conditional create (one match): expected 200 OK, nothing created")
    client.track(second.headers.get("Location"))
    loc1, loc2 = first.headers.get("Location", ""), second.headers.get("Location", "")
    id1 = loc1.split("/Patient/")[-1].split("/")[0] if "/Patient/" in loc1 else None
    id2 = loc2.split("/Patient/")[-1].split("/")[0] if "/Patient/" in loc2 else None
    if id2 is not None:
        expect(id1 == id2, f"second conditional create points at another resource: {loc1!r} then {loc2!r}")
    found = entries(client.search("Patient", {"_tag": client.tag_param(tag)}))
    expect(
        len(found) == 1, f"after two conditional creates with one identifier: expected 1 Patient, found {len(found)}"
    )


@check("conditional", "create_if_none_exist")
def create_if_none_exist(client: Client) -> None:
    """``If-None-Exist: identifier=…`` creates once; the second identical request returns 200 and creates nothing."""
    _conditional_twice(
        client,
        lambda resource, key: client.post(
            "Patient", resource, headers={"If-None-Exist": f"identifier={KIT_IDENTIFIER_SYSTEM}|{key}"}
        ),
    )


@check("conditional", "create_by_query")
def create_by_query(client: Client) -> None:
    """``POST Patient?identifier=…`` (fhirpy's conditional create) creates once, then returns the match with 200."""
    _conditional_twice(
        client,
        lambda resource, key: client.post("Patient", resource, params={"identifier": f"{KIT_IDENTIFIER_SYSTEM}|{key}"}),
    )
