"""SMART scope parsing, and token checks with a JWKS file (RS256) and the development issuer (ES256)."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fhir_server.security.dev_issuer import DEV_ISSUER, mint, public_jwks
from fhir_server.security.policy import describe, needs
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import KeySource, TokenRejected, TokenVerifier


def test_v2_letters_v1_words_wildcards_and_rubbish():
    scopes = ScopeSet.parse(
        "system/ServiceRequest.crs system/*.r system/Task.write patient/Patient.rs openid "
        "system/Basic.rc system/Patient.rs?identifier=x system/Goal.cruds"
    )
    assert scopes.allows("ServiceRequest", "c") and scopes.allows("ServiceRequest", "s")
    assert not scopes.allows("ServiceRequest", "u")
    assert scopes.allows("Anything", "r") and not scopes.allows("Anything", "s")
    assert scopes.allows("Task", "u") and scopes.allows("Task", "d") and not scopes.allows("Task", "s")
    assert not scopes.allows("Patient", "s")  # patient-level and query-narrowed scopes are not taken
    assert not scopes.allows("Basic", "c")  # letters out of order
    assert all(scopes.allows("Goal", letter) for letter in "cruds")
    assert ScopeSet.parse(["system/*.read"]).allows("*", "s")
    assert not ScopeSet.parse(["system/Task.read"]).allows("*", "s")


def test_readable_types_are_those_granted_read_or_search():
    scopes = ScopeSet.parse("system/Patient.r system/Task.s system/ServiceRequest.c system/Organization.read")
    assert scopes.readable_types() == frozenset({"Patient", "Task", "Organization"})
    assert ScopeSet.parse("system/*.rs system/Task.c").readable_types() is None  # every type
    assert ScopeSet.parse("system/*.c").readable_types() == frozenset()


@pytest.mark.parametrize(
    ("method", "path", "interaction", "letter"),
    [
        ("GET", "Patient/1", "read", "r"),
        ("GET", "Patient/1/_history/2", "vread", "r"),
        ("GET", "Patient", "search-type", "s"),
        ("POST", "Patient/_search", "search-type", "s"),
        ("POST", "Patient", "create", "c"),
        ("PUT", "Patient/1", "update", "u"),
        ("PATCH", "Patient/1", "patch", "u"),
        ("DELETE", "Patient/1", "delete", "d"),
        ("GET", "Patient/_history", "history-type", "s"),
    ],
)
def test_each_interaction_needs_its_letter(method, path, interaction, letter):
    info = describe(method, path)
    assert info.interaction == interaction
    assert [(n.resource_type, n.letters) for n in needs(info, {})] == [("Patient", letter)]


def test_undeclared_operations_are_for_administrators():
    assert needs(describe("POST", "Patient/$everything"), {}) is None


def test_rs256_token_against_a_jwks_file(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": [dict(json.loads(RSAAlgorithm.to_jwk(key.public_key())), kid="k1")]}
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    verifier = TokenVerifier("https://issuer.example", "referral-hub", KeySource(str(tmp_path / "jwks.json")))
    now = int(time.time())
    claims = {
        "iss": "https://issuer.example",
        "aud": "referral-hub",
        "exp": now + 60,
        "client_id": "c1",
        "scope": ["system/Task.rs"],
        "helseid://claims/client/claims/orgnr_parent": "983658725",
    }
    caller = verifier.verify(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"}))
    assert caller.client_id == "c1" and caller.organisations == ("983658725",)
    assert caller.scopes.allows("Task", "s")
    with pytest.raises(TokenRejected, match=r"RS256 or ES256"):  # a symmetric algorithm is never accepted
        secret = "a-shared-secret-of-thirty-two-bytes!"
        verifier.verify(jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "k1"}))
    with pytest.raises(TokenRejected, match="expired"):
        verifier.verify(jwt.encode(dict(claims, exp=now - 120), key, algorithm="RS256", headers={"kid": "k1"}))


def test_development_issuer_tokens_verify_with_its_public_key(tmp_path):
    path = tmp_path / "key.json"
    token = mint(path, scopes=["system/*.rs"], organisation="983658725", audience="referral-hub")
    verifier = TokenVerifier(DEV_ISSUER, "referral-hub", KeySource(public_jwks(path)))
    assert verifier.verify(token).organisations == ("983658725",)
    assert "d" not in public_jwks(path)["keys"][0]
    other = mint(tmp_path / "other.json", scopes=[], organisation="1", audience="referral-hub")
    with pytest.raises(TokenRejected):
        verifier.verify(other)
