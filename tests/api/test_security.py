"""Authorisation over HTTP with real signed tokens: roles by interactions by regions, refusals, audit trail.

Two GP systems (EHR A in Bergen's region, EHR B in Tromsø's) each send a referral; the regional
systems of Helse Vest (and its health trust Helse Bergen) and Helse Nord pull them. Each party must
see exactly its own share, in reads, searches, includes, totals and history; an administrator sees all.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass

import pytest
import requests

from fhir_server.security.audit import CLIENT_ID_SYSTEM
from tests.api.fhirhttp import Fhir, ids, patient, response_locations
from tests.api.test_referral_intake import HN, HV, ORGNR, referral
from tests.conftest import kill_server, start_server, stop_server

EHR_A, EHR_B = "910000004", "910000012"  # test organisation numbers (valid check digits, not real ones)
HELSE_BERGEN = "983974724"  # an HF under Helse Vest RHF
EHR_SCOPES = ["system/ServiceRequest.crs", "system/Task.rs", "system/Patient.rs", "system/Provenance.rs"]
REGION_SCOPES = [
    "system/ServiceRequest.rus",
    "system/Task.rus",
    "system/Patient.rs",
    "system/CarePlan.crs",
    "system/PlanDefinition.rs",
    "system/AuditEvent.rs",
]


@dataclass
class Referral:
    service_request: str
    task: str
    patient: str


def sent(api: Fhir, unique: str, municipality: str) -> Referral:
    r = api.post("", referral(unique, municipality))
    assert r.status_code == 200, r.text
    locations = response_locations(r.json())

    def first(rtype: str) -> str:
        return next(loc for loc in locations if loc.startswith(rtype + "/"))

    return Referral(first("ServiceRequest"), first("Task"), first("Patient"))


@pytest.fixture(scope="module")
def world(fhir):  # type: ignore[no-untyped-def]
    """Clients of every role, and one referral from each GP system (A → Helse Vest, B → Helse Nord)."""
    unique = f"{int(time.time() * 1000) % 10**12:012x}"
    clients = {
        "ehr_a": Fhir(fhir, fhir.token(EHR_SCOPES, EHR_A, client_id="ehr-a")),
        "ehr_b": Fhir(fhir, fhir.token(EHR_SCOPES, EHR_B, client_id="ehr-b")),
        "vest": Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id="helse-vest")),
        "bergen": Fhir(fhir, fhir.token(REGION_SCOPES, HELSE_BERGEN, client_id="helse-bergen")),
        "nord": Fhir(fhir, fhir.token(REGION_SCOPES, HN, client_id="helse-nord")),
        "admin": Fhir(fhir),
    }
    a = sent(clients["ehr_a"], unique + "a", "4601")  # Bergen → Helse Vest
    b = sent(clients["ehr_b"], unique[:-1] + "b1", "5501")  # Tromsø → Helse Nord
    return clients, a, b


#: who sees which referral (A: sent by EHR A, routed to Helse Vest; B: sent by EHR B, routed to Helse Nord)
SEES = {
    "ehr_a": {"a"},
    "ehr_b": {"b"},
    "vest": {"a"},
    "bergen": {"a"},
    "nord": {"b"},
    "admin": {"a", "b"},
}


@pytest.mark.parametrize("role", sorted(SEES))
def test_reads_and_searches_show_each_party_its_own_share(world, role):
    clients, a, b = world
    api = clients[role]
    referrals = {"a": a, "b": b}
    for name, ref in referrals.items():
        visible = name in SEES[role]
        for path in (ref.service_request, ref.task, ref.patient):
            status = api.get(path).status_code  # plain reads take the fast path
            assert status == (200 if visible else 404), (role, path, status)
            with_query = api.get(path + "?_summary=false").status_code  # and the application
            assert with_query == status
        found = api.search(f"Task?focus={ref.service_request}&_include=Task:focus&_include=Task:patient")
        assert found["total"] == (1 if visible else 0), (role, name, found.get("total"))
        included = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in found.get("entry", [])}
        assert included == ({ref.task, ref.service_request, ref.patient} if visible else set()), (role, included)
        counted = api.search(f"ServiceRequest?_id={ref.service_request.split('/')[1]}&_summary=count")
        assert counted["total"] == (1 if visible else 0)
        history = api.get(f"{ref.service_request}/_history")
        assert history.status_code == (200 if visible else 404)
    # reverse include from the referral: its Task and Provenance, only when the referral is visible
    revs = api.search(f"ServiceRequest?_id={a.service_request.split('/')[1]}&_revinclude=Task:focus")
    assert len(revs.get("entry", [])) == (2 if "a" in SEES[role] else 0)
    # type-level history lists only visible versions
    history = api.search("ServiceRequest/_history?_count=1000")
    listed = {f"ServiceRequest/{e['resource']['id']}" for e in history.get("entry", []) if "resource" in e}
    assert (a.service_request in listed) == ("a" in SEES[role])
    assert (b.service_request in listed) == ("b" in SEES[role])


def test_regional_system_updates_its_own_tasks_only(world):
    clients, a, b = world
    vest, nord = clients["vest"], clients["nord"]
    task = vest.get(a.task).json()
    task["status"] = "accepted"
    assert vest.put(a.task, task).status_code == 200
    assert nord.put(a.task, task).status_code == 404  # not routed to Helse Nord: as if it did not exist
    assert nord.patch(a.task, [{"op": "replace", "path": "/status", "value": "rejected"}]).status_code == 404
    assert clients["admin"].get(a.task).json()["status"] == "accepted"
    # the queue a region pulls: only its own referrals
    queue = nord.search("Task?status=requested&_count=1000")
    assert b.task.split("/")[1] in ids(queue) and a.task.split("/")[1] not in ids(queue)


def test_nobody_deletes_what_they_cannot_see(world, fhir):
    clients, a, _ = world
    ehr_b = Fhir(fhir, fhir.token(["system/ServiceRequest.cruds"], EHR_B, client_id="ehr-b"))  # may delete its own
    r = ehr_b.delete(a.service_request)
    assert r.status_code == 200 and "nothing to delete" in r.text  # the same answer as for an unknown id
    assert clients["admin"].get(a.service_request).status_code == 200


def test_scopes_are_enforced_per_interaction_type_and_operation(world, fhir):
    _, a, _ = world

    def client(*scopes: str, org: str = EHR_A) -> Fhir:
        return Fhir(fhir, fhir.token(list(scopes), org, client_id="narrow"))

    read_only = client("system/ServiceRequest.r")
    assert read_only.get(a.service_request).status_code == 200
    refused = read_only.get("ServiceRequest?status=active")
    assert refused.status_code == 403
    assert "system/ServiceRequest.s" in refused.json()["issue"][0]["diagnostics"]
    assert read_only.get(a.patient).status_code == 403  # no Patient scope at all
    assert read_only.post("Patient", {"resourceType": "Patient"}).status_code == 403
    assert read_only.delete(a.service_request).status_code == 403
    assert read_only.get(f"{a.service_request}/$suggest-pathway").status_code == 200  # needs ServiceRequest.r
    # SMART v1 scopes read as v2: .read = rs
    v1 = client("system/ServiceRequest.read")
    assert v1.get("ServiceRequest?status=active").status_code == 200
    assert v1.post("ServiceRequest", {"resourceType": "ServiceRequest"}).status_code == 403
    # an operation needs every scope it declares: $apply writes a CarePlan
    planner = client("system/PlanDefinition.rs", org=HV)
    plans = planner.search("PlanDefinition?_count=1")
    plan_id = plans["entry"][0]["resource"]["id"]
    apply = planner.post(f"PlanDefinition/{plan_id}/$apply", {"resourceType": "Parameters", "parameter": []})
    assert apply.status_code == 403 and "system/CarePlan.c" in apply.text
    # a transaction's entries are checked one by one, before anything is written
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Basic"}, "request": {"method": "GET", "url": "ServiceRequest?status=x"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    tx = client("system/ServiceRequest.rs").post("", bundle)
    assert tx.status_code == 403
    assert tx.json()["issue"][0]["expression"] == ["Bundle.entry[1].request"]
    # submitting a referral takes ServiceRequest.c, nothing else
    assert client("system/ServiceRequest.rs").post("", referral("ab12cd34ef56", "4601")).status_code == 403


def test_audit_trail_is_admin_only_and_never_changed(world):
    clients, _, _ = world
    admin, vest = clients["admin"], clients["vest"]
    assert vest.get("AuditEvent").status_code == 403  # holds AuditEvent.rs, but is no administrator
    events = admin.search("AuditEvent?_count=1")
    event = events["entry"][0]["resource"]
    for response in (
        admin.put(f"AuditEvent/{event['id']}", event),
        admin.delete(f"AuditEvent/{event['id']}"),
        admin.patch(f"AuditEvent/{event['id']}", [{"op": "replace", "path": "/outcome", "value": "0"}]),
        admin.post("AuditEvent", dict(event, id=None)),
    ):
        assert response.status_code == 405, response.text
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}],
    }
    assert admin.post("", bundle).status_code == 403
    assert admin.get(f"AuditEvent/{event['id']}").json() == event


def wait_for_events(admin: Fhir, query: str, at_least: int = 1) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        found = admin.search(f"AuditEvent?{query}&_count=100")
        events = [e["resource"] for e in found.get("entry", [])]
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_every_interaction_is_audited_with_who_what_when_outcome_where(world, fhir):
    clients, a, b = world
    reader = Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id=f"auditor-{time.time_ns()}"))
    client_id = reader.session.headers["Authorization"]  # unique per test run: its events are ours
    assert reader.get(a.service_request).status_code == 200  # fast path
    assert reader.get(b.service_request).status_code == 404  # refused: not its region
    assert reader.get("ServiceRequest?status=active&_count=1").status_code == 200
    admin = clients["admin"]
    reader_id = _client_id_of(client_id)
    events = wait_for_events(admin, f"agent:identifier={CLIENT_ID_SYSTEM}|{reader_id}", 3)
    assert len(events) == 3, events
    by_subtype = {}
    for event in events:
        by_subtype.setdefault(event["subtype"][0]["code"], []).append(event)
        who = event["agent"][0]["who"]["identifier"]["value"]
        assert who == reader_id
        assert {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": HV} in [
            ag["who"].get("identifier") for ag in event["agent"]
        ]
        assert event["agent"][0]["network"]["address"] == "127.0.0.1"
        assert event["recorded"].startswith("20")
    reads = {e["entity"][0]["what"]["reference"]: e for e in by_subtype["read"]}
    assert reads[a.service_request]["outcome"] == "0" and reads[a.service_request]["action"] == "R"
    assert reads[b.service_request]["outcome"] == "4"
    search = by_subtype["search-type"][0]
    assert base64.b64decode(search["entity"][0]["query"]).decode() == "status=active&_count=1"
    assert search["action"] == "E"
    # administrators find who saw a resource
    seen = wait_for_events(admin, f"entity={a.service_request}")
    assert any(e["agent"][0]["who"]["identifier"]["value"] == reader_id for e in seen)


def _client_id_of(authorization: str) -> str:
    import jwt

    return jwt.decode(authorization.removeprefix("Bearer "), options={"verify_signature": False})["client_id"]


# -- refused tokens ------------------------------------------------------------------------------------


def test_bad_tokens_are_refused_with_a_challenge(fhir, tmp_path):
    url = f"{fhir.base}/Patient"
    cases = {
        "no token": None,
        "not bearer": "Basic dXNlcjpwYXNz",
        "not a JWT": "Bearer not-a-jwt",
        "expired": "Bearer " + fhir.token(EHR_SCOPES, EHR_A, lifetime_seconds=-120),
    }
    from fhir_server.security.dev_issuer import mint

    cases["wrong audience"] = "Bearer " + mint(
        fhir.key_path, scopes=EHR_SCOPES, organisation=EHR_A, audience="another-api"
    )
    cases["wrong signature"] = "Bearer " + mint(
        tmp_path / "other-key.json", scopes=EHR_SCOPES, organisation=EHR_A, audience="referral-hub"
    )
    cases["wrong issuer"] = "Bearer " + mint(
        fhir.key_path, scopes=EHR_SCOPES, organisation=EHR_A, audience="referral-hub", issuer="https://evil.example"
    )
    cases["not yet valid"] = "Bearer " + mint(
        fhir.key_path, scopes=EHR_SCOPES, organisation=EHR_A, audience="referral-hub", now=time.time() + 600
    )
    words = {
        "no token": "needs a bearer token",
        "not bearer": "must be 'Bearer",
        "not a JWT": "not a JWT",
        "expired": "expired",
        "wrong audience": "audience",
        "wrong signature": "key",
        "wrong issuer": "issuer",
        "not yet valid": "not valid yet",
    }
    for name, header in cases.items():
        r = requests.get(url, headers={"Authorization": header} if header else {}, timeout=30)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert words[name] in r.json()["issue"][0]["diagnostics"], (name, r.text)
        assert r.headers["X-Content-Type-Options"] == "nosniff"  # security headers on refusals too
        fast = requests.get(f"{url}/any-id", headers={"Authorization": header} if header else {}, timeout=30)
        assert fast.status_code == 401, name  # the read fast path refuses the same way


def test_token_without_organisation_is_refused(fhir):
    r = Fhir(fhir, fhir.token(EHR_SCOPES, None)).get("ServiceRequest?status=active")
    assert r.status_code == 403 and "organisation number" in r.text


def test_discovery_is_public(fhir):
    config = requests.get(f"{fhir.base}/.well-known/smart-configuration", timeout=30)
    assert config.status_code == 200
    body = config.json()
    assert "permission-v2" in body["capabilities"] and body["grant_types_supported"] == ["client_credentials"]
    jwks = requests.get(body["jwks_uri"], timeout=30).json()
    assert jwks["keys"][0]["kty"] == "EC" and "d" not in jwks["keys"][0]
    security = requests.get(f"{fhir.base}/metadata", timeout=30).json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


def test_limits_answer_with_clear_outcomes(fhir):
    api = Fhir(fhir)
    capped = api.search("Organization?_count=5000")
    notes = [e["resource"] for e in capped["entry"] if e.get("search", {}).get("mode") == "outcome"]
    assert notes and notes[0]["issue"][0]["code"] == "too-costly"
    assert "1000" in notes[0]["issue"][0]["diagnostics"]
    too_many = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Organization?_count=1"}}] * 1001,
    }
    r = api.post("", too_many)
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome", r.text[:300]
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"a" * (11 * 1024 * 1024) + b'"}}'
    r = requests.post(
        f"{fhir.base}/Patient", data=big, headers={"Content-Type": "application/fhir+json", **fhir.auth}, timeout=60
    )
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"


def test_forwarding_a_referral_shows_it_to_the_new_region(world, fhir):
    """Helse Vest forwards a referral to Helse Nord (the Task's owner changes): Helse Nord now sees it all."""
    clients, _, _ = world
    vest, nord = clients["vest"], clients["nord"]
    forwarded = sent(clients["ehr_a"], f"{time.time_ns() % 16**12:012x}", "4601")
    for path in (forwarded.task, forwarded.service_request, forwarded.patient):
        assert nord.get(path).status_code == 404
    task = vest.get(forwarded.task).json()
    task["owner"] = {"reference": "Organization/rhf-helse-nord", "display": "Helse Nord RHF"}
    assert vest.put(forwarded.task, task).status_code == 200
    for path in (forwarded.task, forwarded.service_request, forwarded.patient):
        assert nord.get(path).status_code == 200, path
        assert vest.get(path).status_code == 200, path  # the forwarding region keeps what it saw
    queue = nord.search(f"Task?owner=Organization/rhf-helse-nord&focus={forwarded.service_request}")
    assert queue["total"] == 1
    assert clients["ehr_b"].get(forwarded.service_request).status_code == 404  # still nobody else's


# -- issue 15: only the organisation a write concerns may widen who sees what -----------------------


def _endpoint(managing: dict, status: str = "off") -> dict:
    """An Endpoint for a region's pushes (switched off: these tests must not queue deliveries)."""
    return {
        "resourceType": "Endpoint",
        "status": status,
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
        },
        "payloadType": [{"text": "FHIR referral transaction"}],
        "managingOrganization": managing,
        "address": "https://attacker.example/fhir",
    }


def _refused(r: requests.Response, status: int, expression: str) -> None:
    assert r.status_code == status, r.text
    issue = r.json()["issue"][0]
    assert expression in issue.get("expression", []), issue


def test_only_the_organisation_an_endpoint_concerns_may_register_it(fhir):
    """Finding 1: an Endpoint naming another region's RHF would receive that region's referrals."""
    scopes = ["system/Endpoint.cru", "system/Endpoint.rs"]
    ehr_b = Fhir(fhir, fhir.token(scopes, EHR_B, client_id="ehr-b"))
    nord = Fhir(fhir, fhir.token(scopes, HN, client_id="helse-nord"))
    bergen = Fhir(fhir, fhir.token(scopes, HELSE_BERGEN, client_id="helse-bergen"))
    vest_rhf = {"reference": "Organization/rhf-helse-vest"}
    where = "Endpoint.managingOrganization"
    # another organisation's region, on every door: REST, batch, transaction
    _refused(ehr_b.post("Endpoint", _endpoint(vest_rhf, "active")), 403, where)
    _refused(nord.post("Endpoint", _endpoint(vest_rhf, "active")), 403, where)
    _refused(nord.post("Endpoint", _endpoint({"identifier": {"system": ORGNR, "value": HV}}, "active")), 403, where)
    entry = {"resource": _endpoint(vest_rhf, "active"), "request": {"method": "POST", "url": "Endpoint"}}
    batch = nord.post("", {"resourceType": "Bundle", "type": "batch", "entry": [entry]}).json()
    assert batch["entry"][0]["response"]["status"].startswith("403"), batch
    _refused(nord.post("", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}), 403, where)
    assert ids(Fhir(fhir).search("Endpoint?address=https://attacker.example/fhir&status=active")) == []
    # its own: an RHF for itself, a health trust for its region's RHF
    own = nord.create(_endpoint({"reference": "Organization/rhf-helse-nord"}))
    bergen.create(_endpoint(vest_rhf))
    # ... and it cannot turn its own into another region's
    _refused(nord.put(f"Endpoint/{own['id']}", dict(own, managingOrganization=vest_rhf)), 403, where)
    assert Fhir(fhir).get(f"Endpoint/{own['id']}").json()["managingOrganization"]["reference"].endswith("nord")


def _task(owner: str, focus: str | None, patient: str | None) -> dict:
    task: dict = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "owner": {"reference": f"Organization/{owner}"},
    }
    if focus:
        task["focus"] = {"reference": focus}
    if patient:
        task["for"] = {"reference": patient}
    return task


def test_a_task_never_shows_what_its_writer_cannot_see(world, fhir):
    """Finding 2: a Task naming another region's referral (by id) must not make it readable."""
    _, a, _ = world
    nord = Fhir(fhir, fhir.token([*REGION_SCOPES, "system/Task.c"], HN, client_id="helse-nord"))
    ehr_b = Fhir(fhir, fhir.token([*EHR_SCOPES, "system/Task.cu"], EHR_B, client_id="ehr-b"))
    for writer in (nord, ehr_b):  # a region for itself, an EHR on a region's behalf
        _refused(writer.post("Task", _task("rhf-helse-nord", a.service_request, None)), 404, "Task.focus")
        _refused(writer.post("Task", _task("rhf-helse-nord", None, a.patient)), 404, "Task.for")
        entry = {
            "resource": _task("rhf-helse-nord", a.service_request, a.patient),
            "request": {"method": "POST", "url": "Task"},
        }
        r = writer.post("", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        _refused(r, 404, "Task.focus")
    for path in (a.service_request, a.patient):
        assert nord.get(path).status_code == 404, path
    # a Task of its own region naming nothing hidden is fine
    own = nord.post("Task", _task("rhf-helse-nord", None, None))
    assert own.status_code == 201, own.text


def test_only_the_owning_region_forwards_a_task(world, fhir):
    """Finding 2: after Helse Vest forwarded a referral it still sees the Task, but may no longer re-route it."""
    clients, _, _ = world
    vest, nord = clients["vest"], clients["nord"]
    forwarded = sent(clients["ehr_a"], f"{time.time_ns() % 16**12:012x}", "4601")
    task = vest.get(forwarded.task).json()
    task["owner"] = {"reference": "Organization/rhf-helse-nord"}
    assert vest.put(forwarded.task, task).status_code == 200
    again = vest.get(forwarded.task).json()
    again["owner"] = {"reference": "Organization/rhf-helse-midt-norge"}
    _refused(vest.put(forwarded.task, again), 403, "Task.owner")
    again["owner"] = {"reference": "Organization/rhf-helse-vest"}
    _refused(
        vest.patch(forwarded.task, [{"op": "replace", "path": "/owner", "value": again["owner"]}]), 403, "Task.owner"
    )
    # the region that owns it now may hand it on (here: back), and may change its status
    back = nord.get(forwarded.task).json()
    back["owner"] = {"reference": "Organization/rhf-helse-vest"}
    assert nord.put(forwarded.task, back).status_code == 200
    # nor may it hand the referral to a third region through a new Task of its own; one for itself is fine
    vest_c = Fhir(fhir, fhir.token([*REGION_SCOPES, "system/Task.c"], HV, client_id="helse-vest"))
    third = _task("rhf-helse-midt-norge", forwarded.service_request, None)
    _refused(vest_c.post("Task", third), 403, "Task.owner")
    assert vest_c.post("Task", dict(third, owner={"reference": "Organization/rhf-helse-vest"})).status_code == 201
    # a health trust's own referral to another region is routed there as any other sender's
    bergen = Fhir(fhir, fhir.token([*REGION_SCOPES, "system/ServiceRequest.c"], HELSE_BERGEN, client_id="bergen"))
    to_nord = sent(bergen, f"{time.time_ns() % 16**12:012x}", "5501")
    assert nord.get(to_nord.service_request).status_code == 200
    # an EHR that did not send it cannot touch it at all
    ehr_b = Fhir(fhir, fhir.token([*EHR_SCOPES, "system/Task.cu"], EHR_B, client_id="ehr-b"))
    assert ehr_b.put(forwarded.task, back).status_code == 404


def test_another_senders_referral_with_the_same_identifier_is_its_own(world, fhir):
    """Finding 6: the identity of a referral includes its sender; nobody else updates or revokes it."""
    clients, _, _ = world
    vest_sender = Fhir(fhir, fhir.token([*REGION_SCOPES, "system/ServiceRequest.c"], HV, client_id="helse-vest"))
    admin = clients["admin"]
    unique = f"{time.time_ns() % 16**12:012x}"
    first = sent(clients["ehr_a"], unique, "4601")  # routed to Helse Vest: Helse Vest sees it
    identifier = f"henv-{unique}"

    def same_identifier(seed: str) -> dict:
        bundle = referral(seed, "4601")
        bundle["entry"][5]["resource"]["identifier"][0]["value"] = identifier
        return bundle

    copies = []
    for api, seed in ((vest_sender, unique[:-2] + "f1"), (clients["ehr_b"], unique[:-2] + "b2")):
        r = api.post("", same_identifier(seed))
        assert r.status_code == 200, r.text
        locations = response_locations(r.json())
        service_request = next(loc for loc in locations if loc.startswith("ServiceRequest/"))
        task = next(loc for loc in locations if loc.startswith("Task/"))
        assert service_request != first.service_request and task != first.task
        copies.append((service_request, task))
    assert admin.get(first.service_request).json()["meta"]["versionId"] == "1"  # untouched
    assert admin.get(first.task).json()["meta"]["versionId"] == "1"
    found = admin.search(
        f"ServiceRequest?identifier=https://fhir.referral-hub.no/NamingSystem/referral-id|{identifier}"
    )
    assert found["total"] == 3
    tasks = admin.search(f"Task?identifier=https://fhir.referral-hub.no/NamingSystem/routing-task|{identifier}")
    assert tasks["total"] == 3
    # Helse Vest sends the same again: a duplicate of its own, not of the first sender's
    r = vest_sender.post("", same_identifier(unique[:-2] + "f1"))
    assert copies[0][0] in response_locations(r.json())
    assert admin.get(first.service_request).json()["meta"]["versionId"] == "1"
    # ... and its revoke revokes its own referral only
    own = same_identifier(unique[:-2] + "f1")
    revoke = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "MessageHeader",
                    "eventCoding": {
                        "system": "https://fhir.referral-hub.no/CodeSystem/message-event",
                        "code": "referral-revoke",
                    },
                    "source": {"endpoint": "urn:test:helse-vest"},
                },
            },
            *[{"fullUrl": e["fullUrl"], "resource": e["resource"]} for e in own["entry"]],
        ],
    }
    assert vest_sender.post("$process-message", revoke).status_code == 200
    assert admin.get(copies[0][0]).json()["status"] == "revoked"
    assert admin.get(first.service_request).json()["status"] != "revoked"
    assert admin.get(first.service_request).json()["meta"]["versionId"] == "1"


def test_audit_events_of_answered_requests_survive_a_kill(own_database, tmp_path):
    """Finding 8a: every request answered 2xx has its AuditEvent, even when the server is killed right after."""
    server = start_server(own_database, tmp_path, workers=2)
    try:
        api = Fhir(server)
        created = api.create(patient(f"audit-{time.time_ns()}"))
        reads = 40
        for _ in range(reads):
            assert api.get(f"Patient/{created['id']}").status_code == 200
    finally:
        kill_server(server)  # within milliseconds of the last answer: before any batch could be stored
    restarted = start_server(own_database, tmp_path, workers=2)
    try:
        admin = Fhir(restarted)

        def events() -> int:
            return admin.search(f"AuditEvent?entity=Patient/{created['id']}&_count=200&_summary=count")["total"]

        deadline = time.monotonic() + 20
        while events() < reads and time.monotonic() < deadline:
            time.sleep(0.3)
        assert events() == reads, events()  # every read, none lost and none twice
    finally:
        stop_server(restarted)
