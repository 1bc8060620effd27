"""Bulk Data ``$export`` over HTTP: the async pattern, filters, token checks on the files, and a
10 000-referral export that survives a ``kill -9`` of the server midway (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.api.fhirhttp import Fhir, wait_for
from tests.api.test_referral_intake import HN, HV, ORGNR, ROOT, referral, submit, task_of
from tests.api.test_security import REGION_SCOPES
from tests.api.test_subscriptions import kill_9
from tests.conftest import POSTGRES_URL, fresh_postgres_database, start_server, stop_server

ASYNC = {"Prefer": "respond-async"}


def kick_off(api: Fhir, path: str) -> str:
    r = api.get(path, headers=ASYNC)
    assert r.status_code == 202, r.text
    return r.headers["Content-Location"]


def finish(api: Fhir, status_url: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = api.get(status_url)
        if r.status_code == 200:
            return r.json()
        assert r.status_code in (202, 429), r.text
        time.sleep(float(r.headers.get("Retry-After", "1")))
    raise AssertionError("the export did not finish")


def lines(api: Fhir, manifest: dict) -> list[dict]:
    found = []
    for output in manifest["output"]:
        r = api.get(output["url"])
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+ndjson")
        found += [json.loads(line) for line in r.text.splitlines()]
    return found


def test_export_async_pattern_filters_and_token_checks(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "4601"))
    task = task_of(api, unique)
    assert api.get("$export").status_code == 400  # no Prefer: respond-async
    assert api.get("$export?_outputFormat=text/csv", headers=ASYNC).status_code == 400
    status_url = kick_off(
        api,
        f"$export?_type=Task,ServiceRequest&_typeFilter=Task?identifier=https://fhir.referral-hub.no/NamingSystem/routing-task|henv-{unique}",
    )
    first = api.get(status_url)
    if first.status_code == 202:
        assert "X-Progress" in first.headers and "Retry-After" in first.headers
        assert api.get(status_url).status_code == 429  # polling again at once
    manifest = finish(api, status_url)
    assert manifest["requiresAccessToken"] is True and manifest["transactionTime"]
    exported = lines(api, manifest)
    tasks = [r for r in exported if r["resourceType"] == "Task"]
    assert [t["id"] for t in tasks] == [task["id"]]  # the type filter kept one Task
    assert any(r["resourceType"] == "ServiceRequest" for r in exported)
    # the files need the same client's token
    file_url = manifest["output"][0]["url"]
    assert requests.get(file_url, timeout=10).status_code == 401
    other = Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id="someone-else"))
    assert other.get(file_url).status_code == 404
    assert other.get(status_url).status_code == 404
    # _since after everything: nothing; DELETE cancels
    later = kick_off(api, "$export?_type=Task&_since=2999-01-01T00:00:00Z")
    assert lines(api, finish(api, later)) == []
    cancelled = kick_off(api, "$export?_type=Task")
    assert api.delete(cancelled).status_code == 202
    assert api.get(cancelled).status_code == 404


def test_group_and_patient_export_keep_to_the_callers_region(fhir, unique):
    api = Fhir(fhir)
    submit(api, referral(unique, "4601"))  # Helse Vest
    vest_task = task_of(api, unique)
    other = unique[:-1] + ("0" if unique[-1] != "0" else "1")
    submit(api, referral(other, "5501"))  # Helse Nord
    nord_task = task_of(api, other)
    group = api.create(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": vest_task["for"]}, {"entity": nord_task["for"]}],
        }
    )
    vest = Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id=f"vest-export-{unique}"))
    assert vest.get("$export", headers=ASYNC).status_code == 403  # system export needs every type's scope
    exported = lines(vest, finish(vest, kick_off(vest, "Patient/$export?_type=Patient,Task")))
    ids = {f"{r['resourceType']}/{r['id']}" for r in exported}
    assert f"Task/{vest_task['id']}" in ids and f"Task/{nord_task['id']}" not in ids
    assert nord_task["for"]["reference"] not in ids
    as_admin = lines(api, finish(api, kick_off(api, f"Group/{group['id']}/$export?_type=Patient,Task")))
    assert {f"{r['resourceType']}/{r['id']}" for r in as_admin} == {
        vest_task["for"]["reference"],
        nord_task["for"]["reference"],
        f"Task/{vest_task['id']}",
        f"Task/{nord_task['id']}",
    }


def build_referrals(database_url: str, region_counts: dict[str, int]) -> None:
    """Store referral sets (Patient, ServiceRequest, routing Task) straight through the store, fast."""
    from fhir_server.components import build_server
    from fhir_server.config import load_settings
    from fhir_server.core.storage import access

    components = build_server(load_settings(database_url=database_url))
    rhf_of = {HV: HV, HN: HN}
    with access.acting_as(access.SYSTEM):
        for region, count in region_counts.items():
            for start in range(0, count, 500):
                end = min(start + 500, count)

                def work(unit, start=start, end=end, region=region):  # type: ignore[no-untyped-def]
                    for i in range(start, end):
                        key = f"{region}-{i}"
                        patient = {"resourceType": "Patient", "id": f"p-{key}", "name": [{"family": "Test"}]}
                        sr = {
                            "resourceType": "ServiceRequest",
                            "id": f"s-{key}",
                            "status": "active",
                            "intent": "order",
                            "subject": {"reference": f"Patient/p-{key}"},
                        }
                        task = {
                            "resourceType": "Task",
                            "id": f"t-{key}",
                            "status": "requested",
                            "intent": "order",
                            "focus": {"reference": f"ServiceRequest/s-{key}"},
                            "for": {"reference": f"Patient/p-{key}"},
                            "owner": {"identifier": {"system": ORGNR, "value": region}},
                        }
                        for resource in (patient, sr, task):
                            unit.put(resource)
                        keys = [("Patient", f"p-{key}"), ("ServiceRequest", f"s-{key}"), ("Task", f"t-{key}")]
                        unit.add_labels(keys, [access.region_label(rhf_of[region])])

                components.store.write(work)
    components.db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ten_thousand_referrals_export_survives_kill_9(backend, tmp_path: Path):
    if backend == "postgresql" and not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL")
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}" if backend == "sqlite" else fresh_postgres_database(POSTGRES_URL)
    quick = {"FHIR_SERVER_EXPORT_CHUNK_SIZE": "250"}
    server = start_server(url, tmp_path, workers=2, env_overrides=quick)  # creates the schema
    stop_server(server)
    build_referrals(url, {HV: 10_000, HN: 300})
    server = start_server(url, tmp_path, workers=2, env_overrides=quick)
    try:
        token = server.token(REGION_SCOPES, HV, client_id="vest-warehouse")
        vest = Fhir(server, token)
        status_url = kick_off(vest, "Patient/$export?_type=Patient,ServiceRequest,Task")

        def progress() -> int:
            r = vest.get(status_url)
            if r.status_code == 429:
                return 0
            assert r.status_code == 202, "finished before the restart: make the chunks smaller"
            return int(r.headers["X-Progress"].split()[0])

        assert wait_for(lambda: progress() > 0, 60)
        port = int(server.base.split(":")[2].split("/")[0])
        kill_9(server.process)  # midway
        server = start_server(url, tmp_path, workers=2, env_overrides=quick, port=port)
        manifest = finish(vest, status_url, 600)  # the same job, resumed from its cursor
        exported = lines(vest, manifest)
        keys = [(r["resourceType"], r["id"]) for r in exported]
        assert len(keys) == len(set(keys)) == 30_000  # each once, after the restart too
        for rtype in ("Patient", "ServiceRequest", "Task"):
            assert sum(1 for t, _ in keys if t == rtype) == 10_000
        assert all(i.split("-")[1] == HV for _, i in keys)  # none of Helse Nord's
        # an outside client (plain requests) runs an export end to end and checks every line
        out = tmp_path / "export.json"
        client = subprocess.run(
            [sys.executable, "bench/bulk_export_client.py", server.base, token, "Patient/$export", "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        result = json.loads(out.read_text())
        assert result["counts"] == {"Patient": 10_000, "ServiceRequest": 10_000, "Task": 10_000}
        print(f"\nexport {backend}: {client.stdout.strip()}")
    finally:
        stop_server(server)
