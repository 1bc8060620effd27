"""The wheel carries the data folders: built, installed in a fresh venv, and run from unrelated directories.

Marked ``wheel`` (skip with ``-m "not wheel"``): building the wheel and installing it with its
dependencies (from the pip cache) takes about half a minute, once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from fhir_server.core.conformance.seed import read_data_resources
from fhir_server.data import DATA_FOLDERS
from tests.api.fhirhttp import response_locations
from tests.conftest import ADMIN_ORG, ADMIN_SCOPES, ROOT, free_port

#: One wheel build per run: under xdist, ``--dist loadgroup`` keeps the module's tests on one worker.
pytestmark = [pytest.mark.wheel, pytest.mark.xdist_group("wheel")]

#: What the wheel is built from (a clean copy: no build/ or egg-info of an earlier build, no tests).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "fhir_server", "conformance_tests", *DATA_FOLDERS)
#: The resource types the package must list for every file of the data folders.
LISTED_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "PlanDefinition")


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 240):
    run = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert run.returncode == 0, f"{command}: {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run


@dataclass
class Install:
    """A fresh venv with only the wheel (and its dependencies) installed."""

    bin: Path
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment without this checkout's settings or import paths, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_") and k != "PYTHONPATH"}
        return {**env, "FHIR_SERVER_HOME": str(self.root / "home"), **extra}

    def fhir_server(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / "fhir-server"), *args], capture_output=True, text=True, cwd=cwd, env=self.env(**env)
        )


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(
            ROOT / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(source)], cwd=root)
    (wheel,) = (root / "dist").glob("fhir_referral_hub-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], cwd=root)
    python = root / "venv" / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile", str(wheel)], cwd=root)
    return Install(root / "venv" / "bin", root)


def _data_resources(types: tuple[str, ...]) -> set[tuple[str, str]]:
    resources = read_data_resources([ROOT / folder for folder in DATA_FOLDERS])
    return {(r["resourceType"], r["id"]) for r in resources if r["resourceType"] in types}


def _package_index(path: Path) -> tuple[list[dict], dict[str, dict]]:
    with tarfile.open(path) as tar:
        index = json.loads(tar.extractfile("package/.index.json").read())  # type: ignore[union-attr]
        resources = {
            name: json.loads(tar.extractfile(name).read())  # type: ignore[union-attr]
            for name in tar.getnames()
            if name.endswith(".json") and not name.endswith(("package.json", ".index.json"))
        }
    return index["files"], resources


@pytest.fixture(scope="module")
def served(install: Install) -> Iterator[str]:
    """``fhir-server serve --dev`` of the installed wheel, started in a directory of its own."""
    here = install.root / "serve-here"
    here.mkdir()
    port = free_port()
    database = f"sqlite:///{install.root / 'db' / 'hub.sqlite3'}"
    log = (install.root / "serve.log").open("w")
    process = subprocess.Popen(
        [
            str(install.bin / "fhir-server"),
            "serve",
            "--dev",
            "--port",
            str(port),
            "--workers",
            "1",
            "--database-url",
            database,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=here,
        env=install.env(),
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (install.root / "serve.log").read_text()
            assert time.monotonic() < deadline, (install.root / "serve.log").read_text()
            try:
                if requests.get(f"{base}/metadata", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_installed_package_reads_its_own_data(install: Install):
    run = _run(
        [
            str(install.bin / "python"),
            "-c",
            "from fhir_server.data import shipped_data_root; print(shipped_data_root())",
        ],
        cwd=install.root,
        env=install.env(),
    )
    shipped = Path(run.stdout.strip())
    assert shipped.name == "_data" and install.root / "venv" in shipped.parents
    assert {p.name for p in shipped.iterdir() if p.is_dir()} >= set(DATA_FOLDERS)


def test_serve_and_token_from_different_directories_agree_and_a_referral_is_routed(install: Install, served: str):
    elsewhere = install.root / "token-here"
    elsewhere.mkdir()
    scopes = [arg for scope in ADMIN_SCOPES for arg in ("--scope", scope)]
    minted = install.fhir_server("token", *scopes, "--org", ADMIN_ORG, cwd=elsewhere)
    assert minted.returncode == 0, minted.stderr
    # one key, in the per-user directory, whichever directory the commands ran in
    assert (install.root / "home" / "dev-issuer-key.json").is_file()
    assert not list((install.root / "serve-here").iterdir()) and not list(elsewhere.iterdir())
    headers = {"Authorization": f"Bearer {minted.stdout.strip()}", "Content-Type": "application/fhir+json"}
    bundle = (ROOT / "tests" / "data" / "referral-transaction.json").read_bytes()
    response = requests.post(served, data=bundle, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    locations = response_locations(response.json())
    task_location = next(loc for loc in locations if loc.startswith("Task/"))
    task = requests.get(f"{served}/{task_location}", headers=headers, timeout=10).json()
    service_request = next(loc for loc in locations if loc.startswith("ServiceRequest/"))
    assert task["code"]["coding"][0]["code"] == "fulfill" and task["focus"]["reference"] == service_request
    assert task["meta"]["profile"] == ["https://fhir.referral-hub.no/StructureDefinition/hub-routing-task"]
    # the pathway definitions were loaded from the wheel's data
    plan = requests.get(f"{served}/PlanDefinition/psykoselidelser", headers=headers, timeout=10)
    assert plan.status_code == 200, plan.text


def test_package_from_the_install_lists_every_profile_value_set_code_system_and_pathway(install: Install):
    out = install.root / "package" / "hub.tgz"
    run = install.fhir_server("package", "--out", str(out), cwd=install.root)
    assert run.returncode == 0, run.stderr
    files, _ = _package_index(out)
    listed = {(f["resourceType"], f["id"]) for f in files}
    expected = _data_resources(LISTED_TYPES)
    assert {rtype for rtype, _ in expected} == set(LISTED_TYPES)  # the data folders were read
    assert expected <= listed, sorted(expected - listed)
    assert f"with {len(files)} resources" in run.stdout


def test_package_honours_a_data_dir_with_a_changed_pathway(install: Install):
    data = install.root / "my-data"
    for folder in DATA_FOLDERS:
        shutil.copytree(ROOT / folder, data / folder)
    plan_file = data / "pathways" / "PlanDefinition-psykoselidelser.json"
    plan = json.loads(plan_file.read_text("utf-8"))
    plan["title"] = "Pakkeforløp psykoselidelser (lokal kopi)"
    plan_file.write_text(json.dumps(plan), "utf-8")
    out = install.root / "package" / "local.tgz"
    run = install.fhir_server("package", "--out", str(out), "--data-dir", str(data), cwd=install.root)
    assert run.returncode == 0, run.stderr
    _, resources = _package_index(out)
    assert resources["package/PlanDefinition-psykoselidelser.json"]["title"] == plan["title"]


def test_the_installed_package_serves_the_web_app_with_its_templates_and_assets(served: str):
    app = served.removesuffix("/fhir") + "/app"
    login = requests.get(f"{app}/login", timeout=10)
    assert login.status_code == 200 and "Logg inn" in login.text
    for asset, kind in (("app.css", "text/css"), ("app.js", "javascript")):
        answer = requests.get(f"{app}/static/{asset}", timeout=10)
        assert answer.status_code == 200 and kind in answer.headers["Content-Type"]
