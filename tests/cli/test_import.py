"""``fhir-server import``: NDJSON through the referral rules (one routing Task each, regions see theirs over
REST), refusals reported by file, line and element while the rest is stored, and a ``kill -9`` midway
resumed without duplicates (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.scale_data import write_referrals
from tests.api.fhirhttp import Fhir, ids
from tests.api.test_referral_intake import HMN, HN, HSO, HV, ORGNR
from tests.api.test_security import REGION_SCOPES
from tests.conftest import POSTGRES_URL, ROOT, fresh_postgres_database, start_server, stop_server

REGIONS = (HSO, HV, HMN, HN)
TRIAGE = "Organization/hub-manual-triage"


def database(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'import.sqlite3'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL")
    return fresh_postgres_database(POSTGRES_URL)


def command(data: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fhir_server.cli", "import", str(data), "--database-url", url, *extra]


def run_import(data: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(data, url, *extra), capture_output=True, text=True, cwd=ROOT, timeout=600)


def counts(url: str, sql: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(text(sql))}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_routes_every_referral_and_regions_see_theirs(backend: str, tmp_path: Path):
    url = database(backend, tmp_path)
    lines = write_referrals(tmp_path / "data", 80, seed=7)
    run = run_import(tmp_path / "data", url)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{sum(lines.values())} line(s) read" in run.stdout and "0 refused" in run.stdout
    assert "  ServiceRequest: 80\n" in run.stdout and "  Task: 80\n" in run.stdout
    assert "  Provenance: 80\n" in run.stdout
    assert "importing" in run.stderr and "resources/s" in run.stderr  # the progress bar
    server = start_server(url, tmp_path, workers=1)
    try:
        admin = Fhir(server)
        tasks = [e["resource"] for e in admin.search("Task?_count=500")["entry"]]
        assert len(tasks) == 80
        assert len({t["focus"]["reference"] for t in tasks}) == 80  # one routing Task per referral
        owned: dict[str, list[str]] = {}
        for task in tasks:
            owner = task["owner"].get("identifier", {}).get("value") or task["owner"]["reference"]
            owned.setdefault(owner, []).append(task["id"])
        assert set(owned) == {*REGIONS, TRIAGE}, owned  # every region, and manual triage
        for region in REGIONS:
            api = Fhir(
                server, server.token([*REGION_SCOPES, "system/Organization.rs"], region, client_id=f"region-{region}")
            )
            queue = api.search(f"Task?owner:Organization.identifier={ORGNR}|{region}&status=requested&_count=500")
            assert sorted(ids(queue)) == sorted(owned[region])
            mine = queue["entry"][0]["resource"]
            assert api.get(mine["focus"]["reference"]).status_code == 200  # labelled for the region
            assert api.get(mine["for"]["reference"]).status_code == 200
            other = next(r for r in REGIONS if r != region)
            assert api.get(f"Task/{owned[other][0]}").status_code == 404  # not another region's
        audit = admin.search("AuditEvent?entity-name=$import")
        assert audit["total"] == 1
        event = audit["entry"][0]["resource"]
        assert event["outcome"] == "0" and f"{sum(lines.values()) + 160} resource(s) stored" in event["outcomeDesc"]
    finally:
        stop_server(server)


def test_refused_lines_are_reported_and_the_others_stored(tmp_path: Path):
    url = database("sqlite", tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    patients = [
        {"resourceType": "Patient", "id": "ok-1", "name": [{"family": "En"}]},
        {"resourceType": "Patient", "id": "bad-gender", "gender": "mann"},
        {"resourceType": "Patient", "id": "ok-2", "name": [{"family": "To"}]},
    ]
    text_lines = [json.dumps(p) for p in patients] + ['{"resourceType": "Patient", "id": ', json.dumps(patients[0])]
    (data / "Patient.ndjson").write_text("\n".join(text_lines) + "\n")
    report = tmp_path / "refused.ndjson"
    run = run_import(data, url, "--batch-size", "2", "--report", str(report))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "5 line(s) read: 2 resource(s) stored, 1 unchanged, 2 refused" in run.stdout
    assert "Patient.ndjson line 2 Patient/bad-gender" in run.stdout and "at Patient.gender" in run.stdout
    refused = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["line"], r.get("id")) for r in refused] == [(2, "bad-gender"), (4, None)]
    assert refused[0]["file"] == str(data / "Patient.ndjson") and refused[0]["resourceType"] == "Patient"
    assert refused[0]["issue"][0]["expression"] == ["Patient.gender"]
    assert "not JSON" in refused[1]["issue"][0]["diagnostics"]
    stored = counts(url, "SELECT res_id, version_id FROM resources WHERE res_type = 'Patient'")
    assert stored == {"ok-1": 1, "ok-2": 1}  # line 5 is line 1 again: left as it is, no new version
    unknown = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "import", "--resume", "no-such-job", "--database-url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert unknown.returncode != 0 and "no import job no-such-job" in unknown.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_midway_then_resume_without_duplicates(backend: str, tmp_path: Path):
    url = database(backend, tmp_path)
    count = 300
    write_referrals(tmp_path / "data", count, seed=3)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command(tmp_path / "data", url, "--batch-size", "25"), stdout=log, stderr=log, cwd=ROOT)
    position = "SELECT file_index, line FROM import_jobs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # midway through the referrals (the fifth file)
        try:
            found = counts(url, position)
        except Exception:  # the schema is not there yet
            found = {}
        if any(index == 4 and line >= 50 for index, line in found.items()):
            break
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    job = counts(url, "SELECT status, line FROM import_jobs")
    assert list(job) == ["running"] and 50 <= job["running"] < count
    run = run_import(tmp_path / "data", url, "--batch-size", "25")  # the same command again
    assert run.returncode == 0, run.stdout + run.stderr
    assert "resumed at file 5 of 5" in run.stdout
    assert counts(url, "SELECT status, COUNT(*) FROM import_jobs GROUP BY status") == {"completed": 1}
    by_type = "SELECT res_type, COUNT(*) FROM resources GROUP BY res_type"
    stored = counts(url, by_type)
    for rtype in ("Patient", "Condition", "ServiceRequest", "Task", "Provenance"):
        assert stored[rtype] == count, (rtype, stored)
    versions = counts(url, "SELECT res_type, MAX(version_id) FROM resources GROUP BY res_type")
    assert versions["ServiceRequest"] == versions["Task"] == versions["Patient"] == 1  # no line written twice
    audit = "SELECT res_type, COUNT(*) FROM resources WHERE res_type = 'AuditEvent' GROUP BY res_type"
    assert counts(url, audit) == {"AuditEvent": 1}  # the run that finished (the killed one could not say)
    again = run_import(tmp_path / "data", url, "--batch-size", "25")  # a finished import again: a new job
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"0 resource(s) stored, {3 * count + count // 40 * 3} unchanged" in again.stdout
    assert counts(url, by_type) == {**stored, "AuditEvent": 2}  # nothing new but the second run's event
    assert counts(url, "SELECT res_type, MAX(version_id) FROM resources GROUP BY res_type") == versions


def test_a_referral_repeated_in_one_batch_is_stored_once_and_its_change_kept(tmp_path: Path):
    """Lines of a batch are compared with what was stored in one look-up; a referral's later line in the same
    batch is compared with what its earlier line stored (same content: left as it is; changed: a new version)."""
    url = database("sqlite", tmp_path)
    write_referrals(tmp_path / "data", 3, seed=5)
    requests_file = tmp_path / "data" / "ServiceRequest.ndjson"
    lines = requests_file.read_text().splitlines()
    changed = json.loads(lines[0])
    changed["priority"] = "urgent"
    requests_file.write_text("\n".join([lines[0], lines[1], lines[0], json.dumps(changed), lines[2]]) + "\n")
    run = run_import(tmp_path / "data", url)
    assert run.returncode == 0, run.stdout + run.stderr
    versions = counts(url, "SELECT res_id, version_id FROM resources WHERE res_type = 'ServiceRequest'")
    first = json.loads(lines[0])["id"]
    assert versions == {first: 2, json.loads(lines[1])["id"]: 1, json.loads(lines[2])["id"]: 1}
    assert counts(url, "SELECT res_type, COUNT(*) FROM resources WHERE res_type = 'Task' GROUP BY 1") == {"Task": 3}
    assert "1 unchanged" in run.stdout
