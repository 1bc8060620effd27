"""Every door a referral can come through ends with exactly one routing Task, or a clear refusal.

The referral rules live on the write (the referral write policy), so a referral sent as POST, PUT,
conditional create or update, PATCH, batch entry or transaction, through messaging or the form, is
stamped, routed and given one Task; never stored bare. ``fhir-server load`` is tested in tests/cli.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from tests.api.fhirhttp import Fhir
from tests.api.test_referral_intake import HN, HSO, HV, ORGNR, referral, submit

EXT_RECEIVED = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
EXT_DEADLINE = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-vurdering"
REFERRAL_SYSTEM = "https://fhir.referral-hub.no/NamingSystem/referral-id"


def stored_referral(api: Fhir, unique: str, municipality: str = "0301") -> dict:
    """The parties of the test referral stored on their own; the referral (not stored) pointing at them."""
    bundle = referral(unique, municipality)
    entries = bundle["entry"]
    parties = {"resourceType": "Bundle", "type": "transaction", "entry": [e for i, e in enumerate(entries) if i != 5]}
    response = submit(api, parties)
    located = {
        e["fullUrl"]: r["response"]["location"].split("/_history")[0]
        for e, r in zip(parties["entry"], response["entry"], strict=True)
    }
    text = json.dumps(entries[5]["resource"])
    for full_url, location in located.items():
        text = text.replace(full_url, location)
    return json.loads(text)


def tasks_for(api: Fhir, service_request_id: str) -> list[dict]:
    found = api.search(f"Task?focus=ServiceRequest/{service_request_id}")
    return [e["resource"] for e in found.get("entry", [])]


def one_task(api: Fhir, service_request_id: str) -> dict:
    tasks = tasks_for(api, service_request_id)
    assert len(tasks) == 1, tasks
    return tasks[0]


def extension(resource: dict, url: str) -> str:
    return next(e["valueDateTime"] for e in resource["extension"] if e["url"] == url)


def test_post_service_request(fhir, unique):
    api = Fhir(fhir)
    r = api.post("ServiceRequest", stored_referral(api, unique))
    assert r.status_code == 201, r.text
    stored = r.json()
    task = one_task(api, stored["id"])
    assert r.headers["X-Routing-Task"].endswith(f"Task/{task['id']}")
    assert r.headers["Link"] == f'<{fhir.base}/Task/{task["id"]}>; rel="related"'  # the standard way too
    assert task["owner"]["identifier"] == {"system": ORGNR, "value": HSO}
    assert extension(stored, EXT_DEADLINE)  # stamped by the intake


def test_conditional_create(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    condition = {"If-None-Exist": f"identifier={REFERRAL_SYSTEM}|henv-{unique}"}
    first = api.post("ServiceRequest", body, headers=condition)
    assert first.status_code == 201, first.text
    again = api.post("ServiceRequest", body, headers=condition)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    one_task(api, first.json()["id"])


def test_put_creates_with_the_senders_id_then_updates_without_moving_the_task(fhir, unique):
    api = Fhir(fhir)
    body = {**stored_referral(api, unique), "id": f"ref-{unique}"}
    created = api.put(f"ServiceRequest/ref-{unique}", body)
    assert created.status_code == 201, created.text
    task = one_task(api, f"ref-{unique}")
    received = extension(created.json(), EXT_RECEIVED)
    # the region accepts; the sender then corrects the priority: the routing stays, so does the region's Task
    accepted = {**task, "status": "accepted"}
    assert api.put(f"Task/{task['id']}", accepted).status_code == 200
    changed = {**body, "priority": "urgent"}
    updated = api.put(f"ServiceRequest/ref-{unique}", changed, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["priority"] == "urgent"
    assert extension(updated.json(), EXT_RECEIVED) == received  # the legal clock started at the first receipt
    after = one_task(api, f"ref-{unique}")
    assert after["status"] == "accepted" and after["meta"]["versionId"] == "2"
    stale = api.put(f"ServiceRequest/ref-{unique}", changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412


def test_put_of_another_id_with_a_known_identifier_is_refused(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    first = api.post("ServiceRequest", body)
    assert first.status_code == 201
    r = api.put(f"ServiceRequest/other-{unique}", {**body, "id": f"other-{unique}"})
    assert r.status_code == 409
    assert r.json()["issue"][0]["expression"] == ["ServiceRequest.identifier"]  # the PUT body, not a Bundle
    assert first.json()["id"] in r.json()["issue"][0]["diagnostics"]


def test_conditional_update_creates_then_updates(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    query = f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}"
    created = api.put(query, body)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    one_task(api, rid)
    updated = api.put(query, {**body, "priority": "urgent"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == rid
    one_task(api, rid)


def test_patch_that_changes_the_chosen_place_moves_the_task(fhir, unique):
    api = Fhir(fhir)
    created = api.post("ServiceRequest", stored_referral(api, unique))
    rid = created.json()["id"]
    assert one_task(api, rid)["owner"]["identifier"]["value"] == HSO
    choice = [{"identifier": {"system": ORGNR, "value": HV}, "display": "Helse Vest RHF"}]
    r = api.patch(f"ServiceRequest/{rid}", [{"op": "replace", "path": "/performer", "value": choice}])
    assert r.status_code == 200, r.text
    task = one_task(api, rid)
    assert task["owner"]["identifier"]["value"] == HV
    assert task["reasonCode"]["coding"][0]["code"] == "free-choice"
    provenances = api.search(f"Provenance?target=Task/{task['id']}")
    assert provenances["total"] == 2  # routed, then re-routed


def test_batch_entry(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "ServiceRequest"}}],
    }
    r = api.post("", batch)
    assert r.status_code == 200, r.text
    response = r.json()["entry"][0]["response"]
    assert response["status"] == "201 Created"
    one_task(api, response["location"].split("/")[1])


def test_batch_with_bundle_references_is_refused_and_says_transaction(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["type"] = "batch"
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    outcome = r.json()["entry"][5]["response"]
    assert outcome["status"].startswith("422")
    issue = outcome["outcome"]["issue"][0]
    assert "transaction" in issue["diagnostics"]
    assert issue["expression"][0].startswith("Bundle.entry[5].resource.")
    found = api.search(f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}")
    assert found["total"] == 0  # no bare referral


def test_transaction_with_put_of_the_referral(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][5]["request"] = {"method": "PUT", "url": f"ServiceRequest/tx-{unique}"}
    bundle["entry"][5]["resource"]["id"] = f"tx-{unique}"
    submit(api, bundle)
    one_task(api, f"tx-{unique}")
    submit(api, bundle)  # the same again: an update, still one Task
    one_task(api, f"tx-{unique}")


def test_update_with_a_new_municipality_re_routes(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "0301"))
    rid = api.search(f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}")["entry"][0]["resource"]["id"]
    assert one_task(api, rid)["owner"]["identifier"]["value"] == HSO
    moved = referral(unique, "1804")  # the patient moved to Bodø
    moved["entry"][5]["request"] = {"method": "PUT", "url": f"ServiceRequest/{rid}"}
    moved["entry"][5]["resource"]["id"] = rid
    submit(api, moved)
    task = one_task(api, rid)
    assert task["owner"]["identifier"]["value"] == HN and task["status"] == "requested"


def test_transaction_patch_of_a_referral_is_refused_clearly(fhir, unique):
    api = Fhir(fhir)
    created = api.post("ServiceRequest", stored_referral(api, unique))
    rid = created.json()["id"]
    patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/priority", "value": "urgent"}]).encode())
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": patch.decode(),
                },
                "request": {"method": "PATCH", "url": f"ServiceRequest/{rid}"},
            }
        ],
    }
    r = api.post("", bundle)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    assert "PUT" in r.json()["issue"][0]["diagnostics"]


def test_messaging_door_routes(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    message = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {
                "fullUrl": "urn:uuid:aaaaaaaa-1111-4333-8444-555555555555",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": "m1",
                    "eventCoding": {
                        "system": "https://fhir.referral-hub.no/CodeSystem/message-event",
                        "code": "referral-new",
                    },
                    "source": {"endpoint": "urn:test:ehr"},
                },
            },
            *[{"fullUrl": e["fullUrl"], "resource": e["resource"]} for e in bundle["entry"]],
        ],
    }
    r = api.post("$process-message", message)
    assert r.status_code == 200, r.text
    rid = api.search(f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}")["entry"][0]["resource"]["id"]
    one_task(api, rid)


def test_a_plain_service_request_is_no_referral(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    body.pop("category")
    body["identifier"][0]["value"] = f"lab-{unique}"
    r = api.post("ServiceRequest", body)
    assert r.status_code == 201, r.text
    assert "X-Routing-Task" not in r.headers
    assert tasks_for(api, r.json()["id"]) == []


def test_received_instant_is_an_instant(fhir, unique):
    api = Fhir(fhir)
    r = api.post("ServiceRequest", stored_referral(api, unique))
    datetime.fromisoformat(extension(r.json(), EXT_RECEIVED))


def test_intake_and_suggest_pathway_agree_on_a_pregnant_patient(fhir, unique):
    """Pregnancy stated by a Condition in the Bundle that the referral does not link: both decide alike."""
    api = Fhir(fhir)
    bundle = referral(unique)
    sr = bundle["entry"][5]["resource"]
    sr["reasonCode"] = [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110", "code": "F10.2"}]}]
    sr.pop("reasonReference")
    patient_url = bundle["entry"][0]["fullUrl"]
    pregnancy = {
        "resourceType": "Condition",
        "subject": {"reference": patient_url},
        "code": {"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.7110", "code": "Z33"}]},
    }
    bundle["entry"][6]["resource"] = pregnancy  # the Bundle's Condition, not linked from the referral
    submit(api, bundle)
    rid = api.search(f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}")["entry"][0]["resource"]["id"]
    task = one_task(api, rid)
    by_intake = [i["valueCanonical"].split("|")[0] for i in task["input"] if "valueCanonical" in i]
    suggested = api.get(f"ServiceRequest/{rid}/$suggest-pathway").json()
    by_operation = [
        p["valueCanonical"].split("|")[0]
        for s in suggested.get("parameter", [])
        for p in s["part"]
        if p["name"] == "pathway"
    ]
    assert by_intake == by_operation == ["https://fhir.referral-hub.no/PlanDefinition/gravide-og-rusmidler"]
