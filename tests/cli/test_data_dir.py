"""The ``data_dir`` setting: a copy of the data folders replaces the shipped ones; no data is an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import requests

from fhir_server.data import DATA_FOLDERS
from tests.conftest import ROOT, start_server, stop_server

NEW_TITLE = "Pakkeforløp psykoselidelser (lokal kopi)"


def _changed_copy(target: Path) -> Path:
    """The data folders copied to ``target``, with the psychosis pathway's title changed."""
    for folder in DATA_FOLDERS:
        shutil.copytree(ROOT / folder, target / folder)
    plan_file = target / "pathways" / "PlanDefinition-psykoselidelser.json"
    plan = json.loads(plan_file.read_text("utf-8"))
    assert plan["title"] != NEW_TITLE
    plan_file.write_text(json.dumps({**plan, "title": NEW_TITLE}), "utf-8")
    return target


def _fhir_server(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FHIR_SERVER_HOME": str(cwd / "home")}  # nothing lands in the real per-user directory
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_a_server_with_data_dir_serves_the_changed_pathway(tmp_path: Path):
    data = _changed_copy(tmp_path / "data")
    server = start_server(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, workers=1, env_overrides={"FHIR_SERVER_DATA_DIR": str(data)}
    )
    try:
        plan = requests.get(f"{server.base}/PlanDefinition/psykoselidelser", headers=server.auth, timeout=10)
        assert plan.status_code == 200 and plan.json()["title"] == NEW_TITLE
        # the pathway catalog the intake suggests from is the same copy
        catalog = requests.get(
            f"{server.base}/PlanDefinition?url=" + plan.json()["url"], headers=server.auth, timeout=10
        )
        assert [e["resource"]["title"] for e in catalog.json()["entry"]] == [NEW_TITLE]
    finally:
        stop_server(server)


def test_a_server_without_the_data_folders_does_not_start(tmp_path: Path):
    run = _fhir_server("serve", "--dev", "--data-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert run.returncode != 0
    assert f"data folders {', '.join(DATA_FOLDERS)} not found in {tmp_path / 'nothing'}" in run.stderr


def test_package_with_data_dir_holds_the_changed_pathway(tmp_path: Path):
    data = _changed_copy(tmp_path / "data")
    out = tmp_path / "local.tgz"
    run = _fhir_server("package", "--data-dir", str(data), "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with tarfile.open(out) as tar:
        plan = json.loads(tar.extractfile("package/PlanDefinition-psykoselidelser.json").read())  # type: ignore[union-attr]
    assert plan["title"] == NEW_TITLE


def test_package_fails_without_data(tmp_path: Path):
    missing = _fhir_server(
        "package", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "a.tgz"), cwd=tmp_path
    )
    assert missing.returncode != 0 and "not found in" in missing.stderr
    for folder in DATA_FOLDERS:  # the folders exist but hold no resources
        (tmp_path / "empty" / folder).mkdir(parents=True)
    empty = _fhir_server(
        "package", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "b.tgz"), cwd=tmp_path
    )
    assert empty.returncode != 0 and "no conformance resources" in empty.stderr and "nothing to package" in empty.stderr
    assert not (tmp_path / "a.tgz").exists() and not (tmp_path / "b.tgz").exists()
