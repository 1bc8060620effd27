"""``fhir-server load`` (the import command under its old name): Bundle files and folders, each file one
transaction, with a progress bar and a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import ROOT, start_server, stop_server


def test_load_folder_then_serve(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    bundle = json.loads((ROOT / "tests" / "data" / "referral-transaction.json").read_text())
    (data / "referral.json").write_text(json.dumps(bundle))
    (data / "org.json").write_text(json.dumps({"resourceType": "Organization", "id": "org-1", "name": "Helse Nord"}))
    (data / "broken.json").write_text('{"resourceType": "Patient", "gender": "mann"}')
    db = f"sqlite:///{tmp_path / 'loaded.sqlite3'}"
    run = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "load", str(data), "--database-url", db],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 1  # one file was refused
    # the referral went through the intake (the referral write policy): its routing Task and Provenance too
    assert "3 file(s), 3 line(s) read: 11 resource(s) stored, 0 unchanged, 1 refused" in run.stdout
    assert "  Task: 1\n" in run.stdout and "  Provenance: 1\n" in run.stdout
    assert "broken.json" in run.stdout and "resource.gender" in run.stdout
    assert "importing" in run.stderr  # the progress bar (load is the import command)
    server = start_server(db, tmp_path, workers=1)
    try:
        assert requests.get(f"{server.base}/Organization/org-1", timeout=10, headers=server.auth).status_code == 200
        counted = requests.get(f"{server.base}/ServiceRequest?_summary=count", timeout=10, headers=server.auth)
        assert counted.json()["total"] == 1
        tasks = requests.get(f"{server.base}/Task?_summary=count", timeout=10, headers=server.auth)
        assert tasks.json()["total"] == 1
    finally:
        stop_server(server)
