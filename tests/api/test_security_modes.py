"""Production mode (a trusted issuer's JWKS served over HTTP, RS256 tokens), start-up refusal, rate limit."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import ROOT, RunningServer, start_server, stop_server

ISSUER = "https://helseid-sts.test.example"


class Issuer:
    """A stand-in for HelseID: an RSA key, its JWKS served over HTTP, and tokens it signs (RS256)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [dict(public, kid="helseid-test-1", alg="RS256", use="sig")]}
        self.requests = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests += 1
                body = json.dumps(issuer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.jwks_url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks"

    def token(self, scopes: list[str], org: str, **overrides: object) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "referral-hub",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "client_id": "helseid-client-1",
            "scope": scopes,  # HelseID sends the scopes as a JSON array
            "helseid://claims/client/claims/orgnr_parent": org,
            **overrides,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "helseid-test-1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    trusted = Issuer()
    yield trusted
    trusted.http.shutdown()


@pytest.fixture(scope="module")
def production(issuer: Issuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("production")
    os.environ.update(
        FHIR_SERVER_AUTH_MODE="production",
        FHIR_SERVER_AUTH_ISSUER=ISSUER,
        FHIR_SERVER_AUTH_JWKS=issuer.jwks_url,
        FHIR_SERVER_RATE_LIMIT_PER_MINUTE="40",
    )
    try:
        server = start_server(f"sqlite:///{tmp / 'prod.sqlite3'}", Path(tmp), workers=1, dev=False)
    finally:
        for name in ("AUTH_MODE", "AUTH_ISSUER", "AUTH_JWKS", "RATE_LIMIT_PER_MINUTE"):
            os.environ.pop(f"FHIR_SERVER_{name}")
    yield server
    stop_server(server)


def test_production_trusts_the_configured_issuer_only(production: RunningServer, issuer: Issuer):
    url = f"{production.base}/Organization?_count=1"
    good = issuer.token(["system/Organization.rs"], "983658725")
    assert requests.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=30).status_code == 200
    # a development-issuer token is worthless here
    dev = production.token(["system/*.cruds"], "983658725")
    refused = requests.get(url, headers={"Authorization": f"Bearer {dev}"}, timeout=30)
    assert refused.status_code == 401
    # a token of this issuer's key but naming another issuer
    wrong = issuer.token(["system/Organization.rs"], "983658725", iss="https://another.example")
    assert requests.get(url, headers={"Authorization": f"Bearer {wrong}"}, timeout=30).status_code == 401
    assert issuer.requests >= 1  # the keys came from the JWKS URL
    config = requests.get(f"{production.base}/.well-known/smart-configuration", timeout=30).json()
    assert config["issuer"] == ISSUER and config["jwks_uri"] == issuer.jwks_url
    assert requests.get(f"{production.base}/.well-known/jwks.json", timeout=30).status_code == 404


def test_rate_limit_per_client(production: RunningServer, issuer: Issuer):
    token = issuer.token(["system/Organization.rs"], "983658725", client_id="greedy-client")
    other = issuer.token(["system/Organization.rs"], "983658725", client_id="patient-client")
    statuses = [
        requests.get(
            f"{production.base}/Organization/rhf-helse-vest", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        for _ in range(45)
    ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert "too many requests" in limited[0].json()["issue"][0]["diagnostics"]
    # another client is not held back by the greedy one
    r = requests.get(
        f"{production.base}/Organization/rhf-helse-vest", headers={"Authorization": f"Bearer {other}"}, timeout=30
    )
    assert r.status_code == 200


def test_production_mode_refuses_to_start_without_issuer(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVER_")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "serve",
            "--port",
            "9",
            "--database-url",
            f"sqlite:///{tmp_path / 'x.sqlite3'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )
    assert run.returncode != 0
    assert "production mode needs a trusted token issuer" in run.stderr + run.stdout


def test_token_command_mints_a_token_the_dev_server_accepts(fhir):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "token",
            "--scope",
            "system/Organization.rs",
            "--org",
            "983658725",
            "--key",
            str(fhir.key_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["helseid://claims/client/claims/orgnr_parent"] == "983658725"
    r = requests.get(f"{fhir.base}/Organization?_count=1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
