"""The local test issuer of development mode: one ES256 key in a file, and tokens signed with it.

``fhir-server serve --dev`` trusts this issuer; ``fhir-server token`` mints its tokens with the
claims HelseID issues (client id, scopes, organisation numbers). The key file is created on first
use; never use development mode, nor its key, in production.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from fhir_server.security.tokens import CLIENT_NAME_CLAIM, ORG_CLAIMS

DEV_ISSUER = "urn:fhir-server:dev-issuer"


def private_jwk(key_path: str | Path) -> dict:
    """The development signing key (a private JWK), created if the file does not exist."""
    path = Path(key_path)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    jwk.update({"kid": f"dev-{uuid.uuid4().hex[:8]}", "alg": "ES256", "use": "sig"})
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(jwk), encoding="utf-8")
    os.chmod(temporary, 0o600)
    try:
        os.link(temporary, path)  # atomic: when two processes race, the first key wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return json.loads(path.read_text(encoding="utf-8"))


def public_jwks(key_path: str | Path) -> dict:
    """The JWKS (public part only) a server in development mode trusts."""
    jwk = private_jwk(key_path)
    return {"keys": [{k: v for k, v in jwk.items() if k not in ("d",)}]}


def mint(
    key_path: str | Path,
    *,
    scopes: list[str],
    organisation: str | None,
    audience: str,
    client_id: str = "dev-client",
    client_name: str | None = None,
    sub_organisation: str | None = None,
    lifetime_seconds: int = 3600,
    issuer: str = DEV_ISSUER,
    now: float | None = None,
) -> str:
    """A signed access token as HelseID would issue it for a machine client."""
    jwk = private_jwk(key_path)
    key = ECAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # the development key file holds a private key
    issued = int(now if now is not None else time.time())
    claims: dict = {
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime_seconds,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": " ".join(scopes),
    }
    if client_name:
        claims[CLIENT_NAME_CLAIM] = client_name
    if organisation:
        claims[ORG_CLAIMS[0]] = organisation
    if sub_organisation:
        claims[ORG_CLAIMS[1]] = sub_organisation
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": jwk["kid"]})
