"""OpenID Connect authorization code flow with PKCE (RFC 7636, S256) against the configured issuer (HelseID).

No Flask: :meth:`OidcClient.start` gives the authorization URL and what the browser's session must keep
(state, nonce, code verifier); :meth:`OidcClient.finish` exchanges the code at the token endpoint and
verifies the ID token (signature by the issuer's JWKS, issuer, audience, expiry, nonce). The person's
claims: HelseID's HPR number (``helseid://claims/hpr/hpr_number``), name, and the organisation numbers
of the client's claims (in the access token or the ID token).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import urlencode

import jwt
import requests

from fhir_server.security.tokens import ALGORITHMS, ORG_CLAIMS

HPR_CLAIM = "helseid://claims/hpr/hpr_number"


class SignInFailed(Exception):
    """The issuer's answer cannot be trusted or used; the message says why (no token in it)."""


@dataclass(frozen=True)
class SignedIn:
    """What a completed sign-in tells about the person."""

    subject: str
    name: str
    hpr: str | None
    organisations: tuple[str, ...]
    scopes: tuple[str, ...]


class OidcClient:
    def __init__(self, issuer: str, client_id: str, client_secret: str | None, scope: str, timeout: float = 10) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self._discovery: dict | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def discovery(self) -> dict:
        with self._lock:
            if self._discovery is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    answer = requests.get(url, timeout=self.timeout)
                    answer.raise_for_status()
                    self._discovery = answer.json()
                except (requests.RequestException, ValueError) as exc:
                    raise SignInFailed(f"the issuer's discovery document cannot be read ({url}): {exc}") from exc
                self._jwks = jwt.PyJWKClient(self._discovery["jwks_uri"], timeout=int(self.timeout))
            return self._discovery

    def start(self, redirect_uri: str) -> tuple[str, dict]:
        """The authorization URL to send the browser to, and what to keep in the session until it returns."""
        verifier = secrets.token_urlsafe(48)
        saved = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24), "verifier": verifier}
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scope,
            "state": saved["state"],
            "nonce": saved["nonce"],
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.discovery()['authorization_endpoint']}?{urlencode(query)}", saved

    def finish(self, params: dict[str, str], saved: dict, redirect_uri: str) -> SignedIn:
        """Check the callback's state, redeem the code, verify the ID token; the person it names."""
        if params.get("error"):
            raise SignInFailed(f"the issuer refused the sign-in: {params['error']}")
        if not saved or not secrets.compare_digest(str(params.get("state", "")), str(saved.get("state", ""))):
            raise SignInFailed("the sign-in's state does not match this browser's session")
        form = {
            "grant_type": "authorization_code",
            "code": params.get("code", ""),
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": saved["verifier"],
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        try:
            answer = requests.post(self.discovery()["token_endpoint"], data=form, timeout=self.timeout)
            answer.raise_for_status()
            tokens = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInFailed(f"the token endpoint did not redeem the code: {exc}") from exc
        claims = self._verify(str(tokens.get("id_token", "")), audience=self.client_id)
        if not secrets.compare_digest(str(claims.get("nonce", "")), str(saved.get("nonce", ""))):
            raise SignInFailed("the ID token's nonce does not match this sign-in")
        access_claims: dict = {}
        if tokens.get("access_token", "").count(".") == 2:  # a JWT access token carries the client's claims
            try:
                access_claims = self._verify(tokens["access_token"], audience=None)
            except SignInFailed:
                access_claims = {}
        merged = {**access_claims, **claims}
        organisations = tuple(dict.fromkeys(str(merged[c]) for c in ORG_CLAIMS if merged.get(c)))
        scope = access_claims.get("scope") or tokens.get("scope") or ""
        scopes = tuple(scope.split() if isinstance(scope, str) else scope)
        name = merged.get("name") or " ".join(str(merged[k]) for k in ("given_name", "family_name") if merged.get(k))
        return SignedIn(str(claims["sub"]), str(name or claims["sub"]), merged.get(HPR_CLAIM), organisations, scopes)

    def _verify(self, token: str, *, audience: str | None) -> dict:
        self.discovery()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            return jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                issuer=self._discovery.get("issuer", self.issuer) if self._discovery else self.issuer,
                audience=audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": audience is not None},
                leeway=30,
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise SignInFailed(f"the issuer's token does not verify: {exc}") from exc


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
