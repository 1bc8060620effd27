"""SQLite group commit, in process on a real SQLite file: threads writing at the same moment share one
commit, a failing work undoes only its own changes, and everyone is answered after the commit."""

from __future__ import annotations

import threading
import time
from contextvars import copy_context
from pathlib import Path

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.store import Store

THREADS = 8


@pytest.fixture
def service(tmp_path: Path) -> FhirService:
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    return FhirService(Store(db, build_search_registry()))


def patient(name: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": name}]}


def test_concurrent_writers_share_one_commit_and_a_failure_stays_its_own(service: FhirService) -> None:
    store, group = service.store, service.store.group_commit
    assert group is not None
    results: dict[int, object] = {}

    def first_work(unit):  # type: ignore[no-untyped-def]
        # hold the turn until every other thread queues behind it: they all join this group
        deadline = time.monotonic() + 10
        while group._waiting < THREADS - 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        return unit.put(patient("first"))[0].id

    def other_work(n: int):  # type: ignore[no-untyped-def]
        def work(unit):  # type: ignore[no-untyped-def]
            stored = unit.put(patient(f"writer-{n}"))[0]
            if n == 3:
                raise FhirError.single(412, "conflict", "refused after writing")
            return stored.id

        return work

    def run(n: int) -> None:
        try:
            results[n] = store.write(first_work if n == 0 else other_work(n))
        except FhirError as exc:
            results[n] = exc

    first = threading.Thread(target=copy_context().run, args=(run, 0))
    first.start()
    while group._group is None:  # the first work holds the turn in an open group
        time.sleep(0.001)
    others = [threading.Thread(target=copy_context().run, args=(run, n)) for n in range(1, THREADS)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(timeout=30)
    assert group.commits == 1 and group.works == THREADS
    assert isinstance(results[3], FhirError)
    stored = {n: service.read("Patient", rid) for n, rid in results.items() if isinstance(rid, str)}
    assert sorted(stored) == [0, 1, 2, 4, 5, 6, 7]
    _, page = service.search("Patient", [("family", "writer-3")])
    assert page.matches == []  # its savepoint was rolled back; the others' writes were kept


def test_a_lone_writer_commits_at_once(service: FhirService) -> None:
    group = service.store.group_commit
    assert group is not None
    for n in range(3):
        service.create(patient(f"alone-{n}"))
    assert group.commits == 3 and group.works == 3


def test_a_failing_first_work_is_rolled_back_and_the_next_group_starts_clean(service: FhirService) -> None:
    def fails(unit):  # type: ignore[no-untyped-def]
        unit.put(patient("rolled-back"))
        raise FhirError.single(422, "processing", "refused after writing")

    with pytest.raises(FhirError):
        service.store.write(fails)
    kept = service.create(patient("kept")).stored.id
    assert service.read("Patient", kept).body is not None
    assert service.search("Patient", [("family", "rolled-back")])[1].matches == []
