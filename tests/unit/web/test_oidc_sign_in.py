"""Production sign-in to the web app: OpenID Connect authorization code flow with PKCE against a small
fake issuer on loopback (discovery, JWKS, authorize, token endpoint that checks the PKCE verifier)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhir_server.security.tokens import ORG_CLAIMS
from fhir_server.web.oidc import HPR_CLAIM, pkce_challenge

CLIENT_ID = "referral-hub-web"
HELSE_VEST = "983658725"


class FakeIssuer:
    """An OpenID provider on 127.0.0.1 that signs in one person (HPR 9144889, Helse Vest RHF)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "alg": "ES256", "use": "sig"}]}
        self.codes: dict[str, dict] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, issuer.discovery())
                elif url.path == "/jwks":
                    self._json(200, issuer.jwks)
                elif url.path == "/authorize":  # the person signs in at once: back to the app with a code
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    code = uuid.uuid4().hex
                    issuer.codes[code] = query
                    self.send_response(302)
                    target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.send_header("Location", target)
                    self.end_headers()
                else:
                    self._json(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                asked = issuer.codes.pop(form.get("code", ""), None)
                if (
                    asked is None
                    or asked["code_challenge_method"] != "S256"
                    or pkce_challenge(form.get("code_verifier", "")) != asked["code_challenge"]
                    or form.get("redirect_uri") != asked["redirect_uri"]
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(200, issuer.tokens(asked["nonce"]))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
        }

    def tokens(self, nonce: str) -> dict:
        now = int(time.time())
        common = {"iss": self.url, "iat": now, "exp": now + 300, "sub": "person-1"}
        id_token = {**common, "aud": CLIENT_ID, "nonce": nonce, "name": "Helga HelseID", HPR_CLAIM: "9144889"}
        access = {**common, "aud": "referral-hub", "scope": "openid profile", ORG_CLAIMS[0]: HELSE_VEST}
        sign = lambda claims: jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"})  # noqa: E731
        return {"id_token": sign(id_token), "access_token": sign(access), "token_type": "Bearer"}


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    fake = FakeIssuer()
    yield fake
    fake.server.shutdown()


@pytest.fixture(scope="module")
def app(issuer: FakeIssuer, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from fhir_server.app import create_app
    from fhir_server.config import load_settings

    folder: Path = tmp_path_factory.mktemp("oidc")
    settings = load_settings(
        database_url=f"sqlite:///{folder / 'db.sqlite3'}",
        auth_mode="production",
        auth_issuer=issuer.url,
        auth_jwks=f"{issuer.url}/jwks",
        web_oidc_client_id=CLIENT_ID,
        web_secret_key="a test secret of enough length",
        delivery_worker=False,
    )
    return create_app(settings)


def _authorize(client, issuer: FakeIssuer) -> str:  # type: ignore[no-untyped-def]
    """Start the sign-in; the browser's trip to the issuer; the callback URL it comes back with."""
    start = client.post("/app/login", data={})
    assert start.status_code == 302 and start.headers["Location"].startswith(f"{issuer.url}/authorize?")
    query = parse_qs(urlparse(start.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    back = requests.get(start.headers["Location"], allow_redirects=False, timeout=5)
    return back.headers["Location"]


def test_sign_in_with_the_issuer_names_the_person_and_their_organisation(app, issuer: FakeIssuer) -> None:
    client = app.test_client()
    assert client.get("/app/queue").status_code == 302
    callback = urlparse(_authorize(client, issuer))
    done = client.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 302, done.text
    queue = client.get("/app/queue")
    assert queue.status_code == 200
    assert "Helga HelseID" in queue.text and "Helse Vest RHF" in queue.text


def test_a_callback_with_another_state_is_refused(app, issuer: FakeIssuer) -> None:
    client = app.test_client()
    callback = urlparse(_authorize(client, issuer))
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    forged = client.get(f"{callback.path}?{urlencode({**params, 'state': 'forged'})}")
    assert forged.status_code == 400
    assert client.get("/app/queue").status_code == 302  # not signed in


def test_a_code_redeemed_without_the_verifier_is_refused(issuer: FakeIssuer) -> None:
    verifier = "v" * 50
    code = uuid.uuid4().hex
    issuer.codes[code] = {
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
        "redirect_uri": "http://localhost/app/callback",
        "nonce": "n",
    }
    answer = requests.post(
        f"{issuer.url}/token",
        data={"code": code, "code_verifier": "another", "redirect_uri": "http://localhost/app/callback"},
        timeout=5,
    )
    assert answer.status_code == 400


def test_pkce_challenge_is_rfc_7636_s256() -> None:
    # RFC 7636 appendix B
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == pkce_challenge(verifier)
