"""Area ``bundles``: transaction with ``urn:uuid:`` references, all-or-nothing transactions, batch."""

from __future__ import annotations

import uuid

from conformance_tests.client import Client
from conformance_tests.fhirdata import entries, observation, patient
from conformance_tests.registry import check, expect


def _track_response(client: Client, bundle: dict) -> None:
    for e in bundle.get("entry", []) or []:
        client.track((e.get("response") or {}).get("location"))


@check("bundles", "transaction_urn_uuid")
def transaction_urn_uuid(client: Client) -> None:
    """A transaction creating a Patient and an Observation that points at it by ``urn:uuid:`` stores both, linked."""
    tag = client.new_tag()
    pid = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": observation(tag, pid),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": pid,
                "resource": patient(tag, family="Transaksjon"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = client.post("", bundle)
    body = client.expect_status(r, 200, what="POST transaction")
    _track_response(client, body or {})
    expect(
        body and body.get("type") == "transaction-response",
        f"transaction: expected a transaction-response Bundle; {client.describe(r)}",
    )
    statuses = [str((e.get("response") or {}).get("status", "")) for e in body.get("entry", [])]
    expect(
        len(statuses) == 2 and all(s.startswith("201") for s in statuses),
        f"transaction: expected two entries with status 201, in request order; got {statuses}",
    )
    locations = [(e.get("response") or {}).get("location", "") for e in body["entry"]]
    expect(
        "Observation/" in locations[0] and "Patient/" in locations[1],
        f"transaction: response entries must follow the request order (Observation, Patient); got {locations}",
    )
    patient_id = locations[1].split("Patient/")[1].split("/")[0]
    obs_id = locations[0].split("Observation/")[1].split("/")[0]
    stored = client.expect_status(client.get(f"Observation/{obs_id}"), 200, what="read the Observation")
    ref = (stored.get("subject") or {}).get("reference", "")
    expect(
        ref.endswith(f"Patient/{patient_id}"),
        f"transaction: the urn:uuid reference was not rewritten: subject.reference {ref!r}, "
        f"expected Patient/{patient_id}",
    )


@check("bundles", "transaction_atomic")
def transaction_atomic(client: Client) -> None:
    """A transaction with one invalid entry is refused with an OperationOutcome and stores nothing."""
    tag = client.new_tag()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": patient(tag, family="Alt"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": patient(tag, family="Eller", birth_date="not-a-date"),
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    r = client.post("", bundle)
    if r.status_code < 300:
        _track_response(client, client.json_of(r))
    expect(
        400 <= r.status_code < 500,
        f"transaction with an invalid birthDate in entry 2: expected 4xx; {client.describe(r)}",
    )
    body = client.json_of(r)
    expect(
        body.get("resourceType") == "OperationOutcome",
        f"refused transaction: expected an OperationOutcome; {client.describe(r)}",
    )
    found = entries(client.search("Patient", {"_tag": client.tag_param(tag)}))
    for res in found:
        client.track(f"Patient/{res.get('id')}")
    expect(not found, f"a refused transaction stored {len(found)} resource(s): it must be all-or-nothing")


@check("bundles", "batch")
def batch(client: Client) -> None:
    """A batch runs each entry on its own: a create (201), a read of a missing id (404) and a search (200)."""
    tag = client.new_tag()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient(tag, family="Bunke"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/ck-missing-{uuid.uuid4().hex[:12]}"}},
            {"request": {"method": "GET", "url": f"Patient?_tag={client.tag_param(tag)}"}},
        ],
    }
    r = client.post("", bundle)
    body = client.expect_status(r, 200, what="POST batch")
    _track_response(client, body or {})
    expect(
        body and body.get("type") == "batch-response", f"batch: expected a batch-response Bundle; {client.describe(r)}"
    )
    statuses = [str((e.get("response") or {}).get("status", ""))[:3] for e in body.get("entry", [])]
    expect(statuses == ["201", "404", "200"], f"batch: expected entry statuses ['201', '404', '200'], got {statuses}")
    missing = body["entry"][1]
    outcome = missing.get("response", {}).get("outcome") or missing.get("resource") or {}
    expect(
        outcome.get("resourceType") == "OperationOutcome",
        f"batch: the 404 entry should carry an OperationOutcome in response.outcome; got {missing}",
    )
    found = entries(client.search("Patient", {"_tag": client.tag_param(tag)}))
    expect(len(found) == 1, f"batch: expected the created Patient to be stored, found {len(found)}")
