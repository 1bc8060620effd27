"""Checking bearer tokens: JWT signature against a JWKS, issuer, audience, expiry; HelseID claims.

The JWKS comes from a file or an https URL (keys cached, refetched when a token names an unknown
key id). RS256 and ES256 are accepted. A token that passed is remembered until it expires, so a
client sending the same token again costs a dictionary lookup, not a signature check.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from fhir_server.security.scopes import ScopeSet

ALGORITHMS = ["RS256", "ES256"]

#: The claims HelseID puts the client's organisation numbers in (legal entity, and sub-unit when set).
ORG_CLAIMS = (
    "helseid://claims/client/claims/orgnr_parent",
    "helseid://claims/client/claims/orgnr_child",
)
CLIENT_NAME_CLAIM = "helseid://claims/client/client_name"


class TokenRejected(Exception):
    """The token cannot be trusted; ``reason`` says why in words for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as the token says."""

    client_id: str
    client_name: str | None
    #: Organisation numbers (9 digits) of the client: the legal entity first, then a sub-unit.
    organisations: tuple[str, ...]
    scopes: ScopeSet
    raw_scopes: tuple[str, ...]
    expires: float


class KeySource:
    """Signing keys of the trusted issuer, from a JWKS file or URL."""

    def __init__(self, jwks: str | dict, cache_seconds: int = 300) -> None:
        """``jwks``: a URL, a file path, or the JWKS itself."""
        self._client: PyJWKClient | None = None
        self._keys: dict[str, PyJWK] = {}
        if isinstance(jwks, dict):
            self._keys = _keys_by_id(jwks)
        elif jwks.startswith(("https://", "http://")):
            self._client = PyJWKClient(jwks, cache_keys=True, lifespan=cache_seconds, timeout=10)
        else:
            try:
                self._keys = _keys_by_id(json.loads(Path(jwks).read_text(encoding="utf-8")))
            except (OSError, ValueError, jwt.PyJWKError) as exc:
                raise SystemExit(f"cannot read the issuer's keys from {jwks}: {exc}") from exc

    def key_for(self, token: str) -> PyJWK:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientError as exc:
                raise TokenRejected(f"no signing key of the issuer matches the token ({exc})") from exc
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.DecodeError as exc:
            raise TokenRejected("the bearer token is not a JWT") from exc
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise TokenRejected("no signing key of the issuer matches the token's key id")


def _keys_by_id(data: dict) -> dict[str, PyJWK]:
    keys = PyJWKSet.from_dict(data if "keys" in data else {"keys": [data]}).keys
    return {key.key_id or f"key-{n}": key for n, key in enumerate(keys)}


class TokenVerifier:
    """Verifies bearer tokens of one issuer for one audience."""

    def __init__(self, issuer: str, audience: str, keys: KeySource, leeway_seconds: int = 30) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.leeway = leeway_seconds
        self._seen: dict[str, Caller] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> Caller:
        """The caller a valid token names; raises :class:`TokenRejected` otherwise."""
        now = time.time()
        cached = self._seen.get(token)
        if cached is not None and cached.expires + self.leeway > now:
            return cached
        key = self.keys.key_for(token)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRejected("the token is not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(f"the token is not meant for this server (audience must be '{self.audience}')") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected(f"the token was not issued by the trusted issuer '{self.issuer}'") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("the token's signature does not verify") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise TokenRejected(f"the token must be signed with {' or '.join(ALGORITHMS)}") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token lacks the '{exc.claim}' claim") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"the token is not valid: {exc}") from exc
        caller = caller_from_claims(claims)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {t: c for t, c in self._seen.items() if c.expires + self.leeway > now}
            self._seen[token] = caller
        return caller


def caller_from_claims(claims: dict) -> Caller:
    """The caller from verified claims (HelseID client credentials tokens)."""
    client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
    if not isinstance(client_id, str) or not client_id:
        raise TokenRejected("the token names no client (client_id)")
    organisations = tuple(
        dict.fromkeys(str(claims[c]) for c in ORG_CLAIMS if isinstance(claims.get(c), str | int) and claims.get(c))
    )
    scope = claims.get("scope")
    raw = tuple(scope.split() if isinstance(scope, str) else [s for s in scope or [] if isinstance(s, str)])
    name = claims.get(CLIENT_NAME_CLAIM)
    return Caller(
        client_id,
        name if isinstance(name, str) else None,
        organisations,
        ScopeSet.parse(list(raw)),
        raw,
        float(claims["exp"]),
    )
