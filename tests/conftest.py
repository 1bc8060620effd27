"""Shared fixtures: real servers (``fhir-server serve``, gunicorn) on SQLite and PostgreSQL.

HTTP tests take the ``fhir`` fixture, which runs each test once per database: a server on a
fresh SQLite file, and one on a fresh PostgreSQL database when ``FHIR_TEST_POSTGRES_URL`` points
at a server (``scripts/test.sh`` starts one when PostgreSQL is installed).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
POSTGRES_URL = os.environ.get("FHIR_TEST_POSTGRES_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The scopes of the administrator token most tests use (every interaction, every organisation).
ADMIN_SCOPES = ["system/*.cruds", "referral-hub:admin"]
#: The organisation number of the test administrator's client (the project's own test value).
ADMIN_ORG = "999999999"


@dataclass
class RunningServer:
    """A server process under test (development mode): base URL, database URL, log file, token key."""

    base: str
    database_url: str
    log_path: Path
    process: subprocess.Popen
    key_path: Path

    def url(self, path: str = "") -> str:
        return f"{self.base}/{path.lstrip('/')}" if path else self.base

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def token(self, scopes: list[str], org: str | None, **claims: object) -> str:
        """A real token signed by the development issuer this server trusts."""
        from fhir_server.security.dev_issuer import mint

        return mint(self.key_path, scopes=scopes, organisation=org, audience="referral-hub", **claims)  # type: ignore[arg-type]

    @property
    def auth(self) -> dict[str, str]:
        """``Authorization`` header of an administrator (sees and may do everything)."""
        if not hasattr(self, "_admin"):
            self._admin = self.token(ADMIN_SCOPES, ADMIN_ORG, client_id="test-admin")
        return {"Authorization": f"Bearer {self._admin}"}


def fresh_postgres_database(admin_url: str) -> str:
    import psycopg

    name = "fhir_test_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def start_server(
    database_url: str,
    tmp: Path,
    *,
    workers: int = 2,
    extra: list[str] | None = None,
    port: int | None = None,
    dev: bool = True,
    access_log: bool = True,
    env_overrides: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``fhir-server serve``; in development mode (``--dev``) unless ``dev`` is False."""
    port = port or free_port()
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("w")
    # quick outbox retries so push-delivery tests see retries, recovery and dead letters within seconds
    key_path = tmp / "dev-issuer-key.json"
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        FHIR_SERVER_DEV_KEY_PATH=str(key_path),
        FHIR_SERVER_OUTBOX_POLL_SECONDS="0.2",
        FHIR_SERVER_OUTBOX_BACKOFF_SECONDS="0.25",
        FHIR_SERVER_OUTBOX_MAX_ATTEMPTS="8",
    )
    env.update(env_overrides or {})
    if SHARED.is_dir():  # the HL7 Norway base package and the Helsenorge profiles, read from ../shared
        env["FHIR_SERVER_IG_PATHS"] = os.pathsep.join(
            str(SHARED / "reference" / name) for name in ("no-basis", "helsenorge-fhir")
        )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "serve",
            "--port",
            str(port),
            "--database-url",
            database_url,
            "--workers",
            str(workers),
            *(["--access-log"] if access_log else []),
            *(["--dev"] if dev else []),
            *(extra or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group: kill_server stops master and workers in one call
    )
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if requests.get(base + "/metadata", timeout=2).status_code == 200:
                return RunningServer(base, database_url, log_path, process, key_path)
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start in time:\n{log_path.read_text()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


def kill_server(server: RunningServer) -> None:
    """SIGKILL the server's master and its workers at once (its own process group): no shutdown code runs."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


BACKENDS = ["sqlite", "postgresql"]


def database_url(backend: str, folder: Path, name: str = "db.sqlite3") -> str:
    """A fresh database of ``backend``: a SQLite file ``name`` in ``folder``, or a new PostgreSQL database
    (the test is skipped when none is available)."""
    if backend == "sqlite":
        return f"sqlite:///{folder / name}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
    return fresh_postgres_database(POSTGRES_URL)


@pytest.fixture(params=BACKENDS)
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for a server of the test's own (a SQLite file, or a PostgreSQL database)."""
    return database_url(request.param, tmp_path, "own.sqlite3")


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


_servers: dict[str, RunningServer] = {}


def _server_for(backend: str, server_dir: Path) -> RunningServer:
    if backend not in _servers:
        if backend == "sqlite":
            url = f"sqlite:///{server_dir / 'fhir.sqlite3'}"
        else:
            if not POSTGRES_URL:
                pytest.skip("PostgreSQL not available: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
            url = fresh_postgres_database(POSTGRES_URL)
        _servers[backend] = start_server(url, server_dir)
    return _servers[backend]


@pytest.fixture(scope="session", params=BACKENDS)
def fhir(request: pytest.FixtureRequest, server_dir: Path) -> Iterator[RunningServer]:
    """A running server, once per database backend (shared by all tests of the session)."""
    yield _server_for(request.param, server_dir)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _servers.values():
        stop_server(server)


@pytest.fixture
def unique() -> str:
    """A value no other test uses, to keep each test's data apart on a shared server."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared reference data is not at {SHARED}")
    return SHARED
