"""Topic subscriptions (R4 Backport) over HTTP, with a receiver process on loopback: handshake, headers,
payloads, heartbeats, ``$status``, ``$events``, region visibility, outage, and a ``kill -9`` mid-delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.fhirhttp import Fhir, wait_for
from tests.api.test_referral_intake import HN, HV, ROOT, referral, submit
from tests.api.test_security import REGION_SCOPES
from tests.conftest import POSTGRES_URL, free_port, fresh_postgres_database, start_server, stop_server

TOPICS = "https://fhir.referral-hub.no/SubscriptionTopic/"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
SUBSCRIBER_SCOPES = [*REGION_SCOPES, "system/Subscription.crus"]
VEST_MUNICIPALITY, NORD_MUNICIPALITY = "4601", "5501"


class Receiver:
    """The receiver process and what it got."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"received-{self.port}.jsonl"
        self.log.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.api.notification_receiver", str(self.port), str(self.log)], cwd=ROOT
        )
        wait_for(self._listening, 15)

    def _listening(self) -> bool:
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def got(self, path: str) -> list[dict]:
        records = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in records if r["path"] == f"/{path}"]

    def down(self, is_down: bool) -> None:
        flag = self.log.with_suffix(".down")
        flag.touch() if is_down else flag.unlink(missing_ok=True)

    def slow(self, seconds: float | None) -> None:
        flag = self.log.with_suffix(".slow")
        flag.write_text(str(seconds)) if seconds else flag.unlink(missing_ok=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path)
    yield r
    r.stop()


def subscription(
    endpoint: str, topic: str, filters: list[str], *, content: str = "id-only", heartbeat: int | None = None
) -> dict:
    channel: dict = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
        "header": ["Authorization: Bearer receiver-secret"],
    }
    if heartbeat:
        channel["extension"] = [{"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    criteria = [{"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters]
    return {
        **({"_criteria": {"extension": criteria}} if criteria else {}),
        "resourceType": "Subscription",
        "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "referrals routed to us",
        "criteria": TOPICS + topic,
        "channel": channel,
    }


def status_of(bundle: dict) -> dict:
    """The SubscriptionStatus parameters of a notification Bundle, by name (events as a list)."""
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters"
    out: dict = {"events": []}
    for p in params["parameter"]:
        if p["name"] == "notification-event":
            out["events"].append(
                {part["name"]: next(v for k, v in part.items() if k.startswith("value")) for part in p["part"]}
            )
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def event_numbers(records: list[dict]) -> list[int]:
    return [int(e["event-number"]) for r in records for e in status_of(r["bundle"])["events"]]


def notifications(records: list[dict]) -> list[dict]:
    return [r for r in records if status_of(r["bundle"])["type"] == "event-notification"]


def test_subscriber_is_told_of_its_regions_referrals_only(fhir, receiver, unique):
    vest = Fhir(fhir, fhir.token(SUBSCRIBER_SCOPES, HV, client_id=f"vest-{unique}"))
    nord = Fhir(fhir, fhir.token(SUBSCRIBER_SCOPES, HN, client_id=f"nord-{unique}"))
    # a filter beyond the subscriber's own region is refused
    beyond = vest.post("Subscription", subscription(receiver.url("x"), "referral-routed", [f"Task?region={HN}"]))
    assert beyond.status_code == 403, beyond.text
    unknown = vest.post("Subscription", subscription(receiver.url("x"), "no-such-topic", []))
    assert unknown.status_code == 422 and "Subscription.criteria" in unknown.text, unknown.text
    filtered = vest.create(
        subscription(receiver.url(f"vest-{unique}"), "referral-routed", [f"Task?region={HV}"], heartbeat=1)
    )
    unfiltered = vest.create(subscription(receiver.url(f"vest-all-{unique}"), "referral-routed", []))
    north = nord.create(
        subscription(receiver.url(f"nord-{unique}"), "referral-routed", [f"Task?region={HN}"], content="full-resource")
    )
    for sub in (filtered, unfiltered, north):
        assert wait_for(
            lambda s=sub: (
                vest.get(f"Subscription/{s['id']}").json().get("status") == "active"
                if s is not north
                else nord.get(f"Subscription/{s['id']}").json().get("status") == "active"
            )
        )
    handshake = receiver.got(f"vest-{unique}")[0]
    assert status_of(handshake["bundle"])["type"] == "handshake"
    assert handshake["headers"]["Authorization"] == "Bearer receiver-secret"
    admin = Fhir(fhir)
    for i in range(3):
        submit(admin, referral(f"{unique[:10]}a{i}", VEST_MUNICIPALITY))
    submit(admin, referral(f"{unique[:10]}b0", NORD_MUNICIPALITY))
    for path in (f"vest-{unique}", f"vest-all-{unique}"):
        assert wait_for(lambda p=path: len(event_numbers(receiver.got(p))) >= 3)
        got = notifications(receiver.got(path))
        assert event_numbers(got) == [1, 2, 3]  # once each, in order
        first = status_of(got[0]["bundle"])
        assert first["topic"] == TOPICS + "referral-routed" and first["events"][0]["focus"]["reference"]
        # id-only: the focus Tasks named, all of them Helse Vest's
        for record in got:
            assert record["bundle"]["type"] == "history"
            for entry in record["bundle"]["entry"][1:]:
                task = admin.get(entry["fullUrl"]).json()
                assert task["owner"]["identifier"]["value"] == HV
    assert wait_for(lambda: event_numbers(receiver.got(f"nord-{unique}")) == [1])
    full = notifications(receiver.got(f"nord-{unique}"))[0]["bundle"]
    types = sorted(e["resource"]["resourceType"] for e in full["entry"][1:])
    assert types == ["ServiceRequest", "Task"]  # full-resource: the Task and its referral
    # heartbeats keep coming while nothing happens
    assert wait_for(
        lambda: any(status_of(r["bundle"])["type"] == "heartbeat" for r in receiver.got(f"vest-{unique}")), 10
    )
    # $status and $events
    status = vest.get(f"Subscription/{filtered['id']}/$status").json()
    params = status_of({"entry": [status["entry"][0]]})
    assert params["status"] == "active" and params["events-since-subscription-start"] == "3"
    caught_up = vest.get(f"Subscription/{filtered['id']}/$events?eventsSinceNumber=2&content=full-resource").json()
    assert caught_up["type"] == "history"
    assert [int(e["event-number"]) for e in status_of(caught_up)["events"]] == [2, 3]
    assert {e["resource"]["resourceType"] for e in caught_up["entry"][1:]} == {"Task", "ServiceRequest"}
    # another region may not read the subscription, nor its events
    assert nord.get(f"Subscription/{filtered['id']}/$events").status_code == 404


def test_metadata_declares_topics_and_operations(fhir):
    statement = Fhir(fhir).get("metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    assert {e["valueCanonical"] for e in entry["extension"]} >= {
        TOPICS + "referral-routed",
        TOPICS + "referral-changed",
    }
    assert {"status", "events"} <= {op["name"] for op in entry["operation"]}
    basic = Fhir(fhir).search("Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic")
    assert basic["total"] >= 3


def kill_9(process: subprocess.Popen) -> None:
    """``kill -9`` the server and its worker processes (no shutdown of any kind)."""
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    for pid in [process.pid, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    process.wait()


QUICK = {
    "FHIR_SERVER_SUBSCRIPTION_LEASE_SECONDS": "3",
    "FHIR_SERVER_SUBSCRIPTION_BACKOFF_SECONDS": "0.2",
    "FHIR_SERVER_SUBSCRIPTION_MAX_BACKOFF_SECONDS": "1",
    "FHIR_SERVER_SUBSCRIPTION_RETRY_DAYS": "0.0002",  # 17 seconds: the administrator's bound, shortened
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_event_arrives_through_outage_kill_and_restart(backend, receiver, tmp_path, unique):
    if backend == "postgresql" and not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL")
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if backend == "sqlite" else fresh_postgres_database(POSTGRES_URL)
    server = start_server(url, tmp_path, workers=2, env_overrides=QUICK)
    path = f"vest-{unique}"
    count = 0

    def send(n: int) -> None:
        nonlocal count
        for _ in range(n):
            submit(Fhir(server), referral(f"{unique[:8]}{count:04x}", VEST_MUNICIPALITY))
            count += 1

    def numbers() -> list[int]:
        return event_numbers(notifications(receiver.got(path)))

    try:
        vest = Fhir(server, server.token(SUBSCRIBER_SCOPES, HV, client_id="vest-receiver"))
        sub = vest.create(subscription(receiver.url(path), "referral-routed", [f"Task?region={HV}"]))
        assert wait_for(lambda: vest.get(f"Subscription/{sub['id']}").json()["status"] == "active")
        # an outage of the receiver: nothing is lost, everything arrives once it is back, in order
        receiver.down(True)
        send(4)
        time.sleep(1.5)
        assert numbers() == []
        receiver.down(False)
        assert wait_for(lambda: numbers() == [1, 2, 3, 4]), numbers()
        # kill -9 while a notification is in flight, then start again on the same database
        receiver.slow(3)
        send(3)
        time.sleep(1.5)
        kill_9(server.process)
        receiver.slow(None)
        server = start_server(url, tmp_path, workers=2, env_overrides=QUICK)
        vest = Fhir(server, server.token(SUBSCRIBER_SCOPES, HV, client_id="vest-receiver"))
        send(1)
        assert wait_for(lambda: sorted(set(numbers())) == list(range(1, 9)), 40), numbers()
        got = numbers()
        first_seen = list(dict.fromkeys(got))
        assert first_seen == list(range(1, 9))  # in order; at least once (a receiver dedupes by number)
        assert len(got) > len(first_seen), got  # the delivery cut by kill -9 was sent again
        # the receiver stays down past the retry bound: the Subscription goes to error, events stay readable
        receiver.down(True)
        send(1)
        assert wait_for(lambda: vest.get(f"Subscription/{sub['id']}").json()["status"] == "error", 60)
        caught = vest.get(f"Subscription/{sub['id']}/$events?eventsSinceNumber=1").json()
        assert [int(e["event-number"]) for e in status_of(caught)["events"]] == list(range(1, 10))
        # the subscriber writes it back as requested: handshake, then the rest
        receiver.down(False)
        current = vest.get(f"Subscription/{sub['id']}").json()
        assert vest.put(f"Subscription/{sub['id']}", dict(current, status="requested")).status_code == 200
        assert wait_for(lambda: 9 in numbers(), 30), numbers()
    finally:
        receiver.down(False)
        receiver.slow(None)
        stop_server(server)


def test_notification_latency(fhir, receiver, unique, capsys):
    """Intake → receiver latency of id-only notifications (p50/p99 printed; figures in the notes)."""
    vest = Fhir(fhir, fhir.token(SUBSCRIBER_SCOPES, HV, client_id=f"latency-{unique}"))
    path = f"latency-{unique}"
    sub = vest.create(subscription(receiver.url(path), "referral-routed", [f"Task?region={HV}"]))
    assert wait_for(lambda: vest.get(f"Subscription/{sub['id']}").json()["status"] == "active"), (
        vest.get(f"Subscription/{sub['id']}").json(),
        fhir.log_text()[-3000:],
    )
    admin, sent = Fhir(fhir), []
    for i in range(40):
        sent.append(time.time())
        submit(admin, referral(f"{unique[:8]}{i:04x}", VEST_MUNICIPALITY))
    assert wait_for(lambda: len(event_numbers(notifications(receiver.got(path)))) >= 40)
    arrived: dict[int, float] = {}
    for record in notifications(receiver.got(path)):
        for n in event_numbers([record]):
            arrived.setdefault(n, record["t"])
    latencies = sorted(arrived[i + 1] - sent[i] for i in range(40))
    p50, p99 = latencies[len(latencies) // 2], latencies[-1]
    backend = fhir.database_url.split(":")[0]
    with capsys.disabled():
        print(f"\nnotification latency {backend}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    assert p99 < 10
