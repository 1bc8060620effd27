"""``fhir-server copy-database``: a hub's whole database into a new one, SQLite → PostgreSQL and back, and a
server on the copy answers as the original did (resources, history and its order, searches, a region's
queue) and goes on writing after the copied history."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.api.fhirhttp import Fhir, ids
from tests.api.test_referral_intake import HN, HV, referral, submit
from tests.api.test_security import REGION_SCOPES
from tests.conftest import POSTGRES_URL, ROOT, RunningServer, fresh_postgres_database, start_server, stop_server

#: What a server answers, compared between the original and its copies.
VIEWS = [
    "ServiceRequest?_sort=_id&_count=50",
    "Task?_sort=_id&_count=50",
    "Patient?_sort=_id&_count=50&_elements=identifier,birthDate",
    "Provenance?_count=0&_total=accurate",
    "ServiceRequest?_has:Task:focus:status=requested&_summary=count",
]


def copy(source: str, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "copy-database", source, target],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def answers(server: RunningServer, patient_id: str) -> dict[str, object]:
    """What the server says: the views' ids and versions, one patient's history, a region's queue."""
    api = Fhir(server)
    seen: dict[str, object] = {}
    for view in VIEWS:
        bundle = api.search(view)
        entries = bundle.get("entry", [])
        seen[view] = (bundle.get("total"), [(e["resource"]["id"], e["resource"]["meta"]) for e in entries])
    history = api.search(f"Patient/{patient_id}/_history")
    seen["history"] = [(e["request"]["method"], e["response"]["etag"]) for e in history["entry"]]
    for region in (HV, HN):
        queue = Fhir(server, server.token(REGION_SCOPES, region, client_id=f"region-{region}"))
        seen[region] = ids(queue.search("Task?status=requested&_count=50"))
    return seen


@pytest.mark.skipif(not POSTGRES_URL, reason="copies to PostgreSQL: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
def test_copy_to_postgresql_and_back(tmp_path: Path):
    original_url = f"sqlite:///{tmp_path / 'original.sqlite3'}"
    server = start_server(original_url, tmp_path, workers=1)
    try:
        api = Fhir(server)
        for n, municipality in enumerate(("4601", "1804", "0301")):  # Vest, Nord, Sør-Øst
            submit(api, referral(f"c0ffee{n}", municipality=municipality))
        patient = api.search("Patient?_count=1&_sort=_id")["entry"][0]["resource"]
        assert api.put(f"Patient/{patient['id']}", dict(patient, gender="female")).status_code == 200
        assert api.delete(f"Patient/{patient['id']}").status_code in (200, 204)
        assert api.put(f"Patient/{patient['id']}", dict(patient, gender="male")).status_code in (200, 201)
        gone = api.search("Condition?_count=1")["entry"][0]["resource"]["id"]
        assert api.delete(f"Condition/{gone}").status_code in (200, 204)  # deleted now: 410 Gone on the copies too
        before = answers(server, patient["id"])
    finally:
        stop_server(server)
    assert before["history"] == [("PUT", 'W/"4"'), ("DELETE", 'W/"3"'), ("PUT", 'W/"2"'), ("POST", 'W/"1"')]
    assert before[HV] and before[HN]  # each region sees its own referral

    pg_url = fresh_postgres_database(POSTGRES_URL)  # type: ignore[arg-type]
    run = copy(original_url, pg_url)
    assert run.returncode == 0, run.stderr
    assert "copied" in run.stdout and "resources" in run.stdout and "resource_versions" in run.stdout
    # the measures' facts too (a server would otherwise rebuild them from every referral before it serves)
    assert "referral_facts 3" in run.stdout
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM referral_facts").fetchone() == (3,)
    assert "resources" in run.stderr  # a progress bar per table

    refused = copy(original_url, pg_url)  # the target now holds data: nothing is copied over it
    assert refused.returncode != 0 and "not empty" in refused.stderr

    back_url = f"sqlite:///{tmp_path / 'back.sqlite3'}"
    assert copy(pg_url, back_url).returncode == 0

    for url in (pg_url, back_url):
        server = start_server(url, tmp_path, workers=1)
        try:
            assert answers(server, patient["id"]) == before
            api = Fhir(server)
            assert api.get(f"Condition/{gone}").status_code == 410
            # writes go on after the copied history: a new version, and the type history lists it first
            assert api.put(f"Patient/{patient['id']}", dict(patient, gender="other")).status_code == 200
            assert api.search(f"Patient/{patient['id']}/_history")["entry"][0]["resource"]["meta"]["versionId"] == "5"
            newest = api.search("Patient/_history?_count=1")["entry"][0]["resource"]
            assert newest["id"] == patient["id"] and newest["meta"]["versionId"] == "5"
            submit(api, referral("c0ffee9", municipality="4601"))
        finally:
            stop_server(server)


def test_a_copy_onto_itself_is_refused(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    run = copy(url, url)
    assert run.returncode != 0 and "the same database" in run.stderr


@pytest.mark.skipif(not POSTGRES_URL, reason="needs a PostgreSQL server: set FHIR_TEST_POSTGRES_URL")
def test_a_target_that_does_not_exist_is_named_without_a_traceback(tmp_path: Path):
    missing = POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_here"  # type: ignore[union-attr]
    run = copy(f"sqlite:///{tmp_path / 'one.sqlite3'}", missing)
    assert run.returncode != 0 and "no_such_database_here" in run.stderr and "createdb" in run.stderr
    assert "Traceback" not in run.stderr
