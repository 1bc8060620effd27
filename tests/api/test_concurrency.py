"""Races: concurrent identical conditional creates and concurrent If-Match updates (2 worker processes)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.api.fhirhttp import JSON, Fhir, patient

CLIENTS = 32
ROUNDS = 3


def _together(n: int, work) -> list:  # type: ignore[no-untyped-def]
    """Run ``work(i)`` in ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i: int):  # type: ignore[no-untyped-def]
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_conditional_creates_make_one_resource(fhir, unique):
    api = Fhir(fhir)
    for round_ in range(ROUNDS):
        key = f"{unique}-{round_}"
        body = patient(unique, identifier=[{"system": "urn:test:mrn", "value": key}])

        def create(i: int, key: str = key, body: dict = body) -> int:
            form = i % 2  # half use the If-None-Exist header, half the query-string form
            headers = {"Content-Type": JSON, **fhir.auth}
            url = f"{fhir.base}/Patient"
            if form:
                headers["If-None-Exist"] = f"identifier=urn:test:mrn|{key}"
            else:
                url += f"?identifier=urn:test:mrn|{key}"
            return requests.post(url, json=body, headers=headers, timeout=60).status_code

        statuses = _together(CLIENTS, create)
        assert statuses.count(201) == 1, statuses
        assert statuses.count(200) == CLIENTS - 1, statuses
        assert api.search(f"Patient?identifier=urn:test:mrn|{key}")["total"] == 1


def test_concurrent_if_match_updates_exactly_one_wins(fhir, unique):
    api = Fhir(fhir)
    for _ in range(ROUNDS):
        created = api.create(patient(unique))
        pid = created["id"]

        def update(i: int, created: dict = created) -> int:
            body = dict(created, name=[{"family": f"Writer{i}"}])
            r = requests.put(
                f"{fhir.base}/Patient/{created['id']}",
                json=body,
                timeout=60,
                headers={"Content-Type": JSON, "If-Match": 'W/"1"', **fhir.auth},
            )
            return r.status_code

        statuses = _together(CLIENTS, update)
        assert statuses.count(200) == 1, statuses
        assert statuses.count(412) == CLIENTS - 1, statuses
        history = api.search(f"Patient/{pid}/_history")
        assert history["total"] == 2


def test_concurrent_plain_updates_lose_nothing(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))

    def update(i: int) -> int:
        body = dict(created, name=[{"family": f"Writer{i}"}])
        return requests.put(
            f"{fhir.base}/Patient/{created['id']}", json=body, timeout=60, headers={"Content-Type": JSON, **fhir.auth}
        ).status_code

    statuses = _together(16, update)
    assert statuses == [200] * 16
    history = api.search(f"Patient/{created['id']}/_history?_count=100")
    versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
    assert versions == list(range(1, 18))
