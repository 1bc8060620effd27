"""Push delivery to a region's Endpoint: a second instance of this server is the regional receiver."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.fhirhttp import Fhir, ids, wait_for
from tests.api.test_referral_intake import ORGNR, referral, task_of
from tests.conftest import (
    ADMIN_ORG,
    ADMIN_SCOPES,
    RunningServer,
    free_port,
    kill_server,
    start_server,
    stop_server,
)

RHF_ORGS = {
    "helse-vest": ("4601", "983658725"),
    "helse-nord": ("5501", "883658752"),
    "helse-midt-norge": ("5001", "983658776"),
}


def receiver_token(key_path: Path) -> str:
    """An administrator token of the receiving server (the key file is created if it is not yet running)."""
    from fhir_server.security.dev_issuer import mint

    return mint(key_path, scopes=ADMIN_SCOPES, organisation=ADMIN_ORG, audience="referral-hub", lifetime_seconds=7200)


def endpoint(api: Fhir, rhf: str, address: str, key_path: Path | None = None) -> dict:
    """An active Endpoint of the region; with the receiver's token in ``Endpoint.header`` when its key is given."""
    headers = {"header": [f"Authorization: Bearer {receiver_token(key_path)}"]} if key_path else {}
    return api.create(
        {
            **headers,
            "resourceType": "Endpoint",
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "hl7-fhir-rest",
            },
            "payloadType": [{"text": "FHIR referral transaction"}],
            "managingOrganization": {"reference": f"Organization/rhf-{rhf}"},
            "address": address,
        }
    )


def switch_off(api: Fhir, ep: dict) -> None:
    current = api.get(f"Endpoint/{ep['id']}").json()
    api.put(f"Endpoint/{ep['id']}", dict(current, status="off"))


def delivery_state(api: Fhir, unique: str) -> str:
    outputs = task_of(api, unique).get("output", [])
    return " ".join(o.get("valueString", "") for o in outputs)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("receiver")
    server = start_server(f"sqlite:///{tmp / 'region.sqlite3'}", Path(tmp), workers=1)
    yield server
    stop_server(server)


def received(receiver: RunningServer, unique: str) -> list[dict]:
    found = Fhir(receiver).search(
        f"ServiceRequest?identifier=https://fhir.referral-hub.no/NamingSystem/referral-id|henv-{unique}"
    )
    return [e["resource"] for e in found.get("entry", [])]


def test_push_delivers_once_and_revoke_follows(fhir, receiver, unique):
    api = Fhir(fhir)
    ep = endpoint(api, "helse-nord", receiver.base, receiver.key_path)
    try:
        municipality, _ = RHF_ORGS["helse-nord"]
        api.post("", referral(unique, municipality))
        delivered = wait_for(lambda: received(receiver, unique))
        assert len(delivered) == 1
        assert wait_for(lambda: "delivered" in delivery_state(api, unique))
        time.sleep(1.0)  # two sender processes: still exactly one delivery
        history = Fhir(receiver).search(f"ServiceRequest/{delivered[0]['id']}/_history")
        assert history["total"] == 1
        region_task = Fhir(receiver).search(f"Task?focus=ServiceRequest/{delivered[0]['id']}")
        assert region_task["total"] == 1
        assert region_task["entry"][0]["resource"]["owner"]["identifier"] == {"system": ORGNR, "value": "883658752"}
        # the sender revokes: the region is told
        message = {
            "resourceType": "Bundle",
            "type": "message",
            "entry": [
                {
                    "fullUrl": "urn:uuid:aaaaaaaa-2222-4333-8444-555555555555",
                    "resource": {
                        "resourceType": "MessageHeader",
                        "id": "revoke-1",
                        "eventCoding": {
                            "system": "https://fhir.referral-hub.no/CodeSystem/message-event",
                            "code": "referral-revoke",
                        },
                        "source": {"endpoint": "urn:test:ehr"},
                    },
                },
                *[
                    {"fullUrl": e["fullUrl"], "resource": e["resource"]}
                    for e in referral(unique, municipality)["entry"]
                ],
            ],
        }
        assert api.post("$process-message", message).status_code == 200
        assert wait_for(lambda: [s for s in received(receiver, unique) if s["status"] == "revoked"])
    finally:
        switch_off(api, ep)


def test_failing_receiver_is_retried_until_it_recovers(fhir, unique, tmp_path):
    api = Fhir(fhir)
    port = free_port()
    ep = endpoint(api, "helse-vest", f"http://127.0.0.1:{port}/fhir", tmp_path / "dev-issuer-key.json")
    late = None
    try:
        municipality, _ = RHF_ORGS["helse-vest"]
        api.post("", referral(unique, municipality))
        assert wait_for(
            lambda: "attempt 2" in delivery_state(api, unique) or "attempt 3" in delivery_state(api, unique), 15
        )
        assert "pending" in delivery_state(api, unique)
        late = start_server(f"sqlite:///{tmp_path / 'late.sqlite3'}", tmp_path, workers=1, port=port)
        assert wait_for(lambda: received(late, unique), 30)
        assert wait_for(lambda: "delivered" in delivery_state(api, unique), 15)
        assert len(received(late, unique)) == 1
    finally:
        switch_off(api, ep)
        if late:
            stop_server(late)


def test_dead_letter_after_bounded_attempts(fhir, unique):
    api = Fhir(fhir)
    ep = endpoint(api, "helse-midt-norge", f"http://127.0.0.1:{free_port()}/fhir")
    try:
        municipality, _ = RHF_ORGS["helse-midt-norge"]
        api.post("", referral(unique, municipality))
        # 8 attempts, backoff 0.25 s doubling (tests/conftest.py): dead after about 32 s
        assert wait_for(lambda: "dead-letter" in delivery_state(api, unique), 60), delivery_state(api, unique)
        assert "attempt 8" in delivery_state(api, unique)
        # the referral itself is still there and still in the region's pull queue: nothing is lost
        queue = api.search(f"Task?owner:Organization.identifier={ORGNR}|983658776&status=requested&_count=500")
        assert task_of(api, unique)["id"] in ids(queue)
    finally:
        switch_off(api, ep)


def test_delivery_survives_a_restart_of_the_sender(tmp_path):
    """A pending delivery is in the database: a restarted sender (two processes) delivers it, once."""
    database = f"sqlite:///{tmp_path / 'sender.sqlite3'}"
    sender = start_server(database, tmp_path, workers=2)
    unique = uuid.uuid4().hex[:12]
    port = free_port()
    receiver = None
    try:
        api = Fhir(sender)
        endpoint(api, "helse-nord", f"http://127.0.0.1:{port}/fhir", tmp_path / "dev-issuer-key.json")
        municipality, _ = RHF_ORGS["helse-nord"]
        assert api.post("", referral(unique, municipality)).status_code == 200
        assert wait_for(lambda: "pending" in delivery_state(api, unique), 15)
    finally:
        stop_server(sender)
    receiver = start_server(f"sqlite:///{tmp_path / 'region.sqlite3'}", tmp_path, workers=1, port=port)
    restarted = start_server(database, tmp_path, workers=2)
    try:
        assert wait_for(lambda: received(receiver, unique), 40)
        assert wait_for(lambda: "delivered" in delivery_state(Fhir(restarted), unique), 15)
        time.sleep(1.0)
        delivered = received(receiver, unique)
        assert len(delivered) == 1
        history = Fhir(receiver).search(f"ServiceRequest/{delivered[0]['id']}/_history")
        assert history["total"] == 1  # sent once, though two processes were looking
    finally:
        stop_server(restarted)
        stop_server(receiver)


# -- issue 15: fenced leases, switched-off Endpoints, re-sending dead letters, crashes -----------------


class Recorder:
    """A regional receiver under the test's control: answers 200 after ``delay`` seconds, records each push."""

    def __init__(self, port: int, delay: float = 0.0) -> None:
        self.delay = delay
        self.pushes: list[tuple[str, float, float]] = []  # (X-Delivery-Id, start, end)
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                start = time.monotonic()
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(recorder.delay)
                recorder.pushes.append((self.headers.get("X-Delivery-Id", ""), start, time.monotonic()))
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "Bundle", "type": "transaction-response", "entry": []}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_receiver_is_never_sent_the_same_referral_twice_at_once(own_database, tmp_path):
    """A lease shorter than the receiver's work: renewed while sending, fenced by the attempt, never taken over."""
    port = free_port()
    recorder = Recorder(port, delay=2.5)
    sender = start_server(own_database, tmp_path, workers=2, env_overrides={"FHIR_SERVER_OUTBOX_LEASE_SECONDS": "0.9"})
    try:
        api = Fhir(sender)
        endpoint(api, "helse-nord", f"http://127.0.0.1:{port}/fhir")
        municipality, _ = RHF_ORGS["helse-nord"]
        uniques = [uuid.uuid4().hex[:12] for _ in range(4)]
        for unique in uniques:
            assert api.post("", referral(unique, municipality)).status_code == 200
        assert wait_for(lambda: all("delivered" in delivery_state(api, u) for u in uniques), 60)
        time.sleep(2.0)  # a late duplicate would land now
        delivery_ids = [push[0] for push in recorder.pushes]
        assert len(delivery_ids) == len(uniques) and len(set(delivery_ids)) == len(uniques), recorder.pushes
    finally:
        stop_server(sender)
        recorder.close()


def test_a_switched_off_endpoint_stops_and_an_administrator_resends(fhir, unique, tmp_path):
    api = Fhir(fhir)
    port = free_port()  # nobody listens yet: the first attempts fail and stay queued
    ep = endpoint(api, "helse-vest", f"http://127.0.0.1:{port}/fhir")
    recorder = None
    try:
        municipality, _ = RHF_ORGS["helse-vest"]
        api.post("", referral(unique, municipality))
        assert wait_for(lambda: "pending" in delivery_state(api, unique), 15)
        switch_off(api, ep)
        recorder = Recorder(port)
        assert wait_for(lambda: "stopped" in delivery_state(api, unique), 20), delivery_state(api, unique)
        time.sleep(1.5)
        assert recorder.pushes == []  # switched off: nothing more was sent
        # switched on again, an administrator re-sends; a region may not
        current = api.get(f"Endpoint/{ep['id']}").json()
        assert api.put(f"Endpoint/{ep['id']}", dict(current, status="active")).status_code == 200
        task = task_of(api, unique)["id"]
        region = Fhir(fhir, fhir.token(["system/Task.rus"], "983658725", client_id="helse-vest"))
        refused = region.post(f"Task/{task}/$resend", {"resourceType": "Parameters"})
        assert refused.status_code == 403, refused.text
        r = api.post(f"Task/{task}/$resend", {"resourceType": "Parameters"})
        assert r.status_code == 200, r.text
        assert r.json()["parameter"][0]["valueInteger"] == 1
        assert wait_for(lambda: "delivered" in delivery_state(api, unique), 15), delivery_state(api, unique)
        assert len(recorder.pushes) == 1
        again = api.post(f"Task/{task}/$resend", {"resourceType": "Parameters"}).json()
        assert again["parameter"][0]["valueInteger"] == 0  # delivered: nothing to re-send
    finally:
        switch_off(api, ep)
        if recorder:
            recorder.close()


def test_after_a_crash_delivery_does_not_wait_out_a_long_lease(own_database, tmp_path):
    """The worker sending a delivery is killed mid-request: a restarted sender delivers within one short lease."""
    port = free_port()
    recorder = Recorder(port, delay=30.0)  # holds the first push until the sender is dead
    sender = start_server(own_database, tmp_path, workers=1)
    unique = uuid.uuid4().hex[:12]
    try:
        api = Fhir(sender)
        endpoint(api, "helse-nord", f"http://127.0.0.1:{port}/fhir")
        municipality, _ = RHF_ORGS["helse-nord"]
        assert api.post("", referral(unique, municipality)).status_code == 200
        time.sleep(1.5)  # the push is in flight now
    finally:
        kill_server(sender)
    recorder.delay = 0.0
    restarted = start_server(own_database, tmp_path, workers=1)
    started = time.monotonic()
    try:
        assert wait_for(lambda: "delivered" in delivery_state(Fhir(restarted), unique), 45)
        assert time.monotonic() - started < 30  # the default lease is 15 s, renewed while sending; not 60 s
    finally:
        stop_server(restarted)
        recorder.close()
