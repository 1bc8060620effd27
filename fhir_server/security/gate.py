"""The security gate every request passes: token, rate limit, scopes, access, audit (no Flask).

The web edge (``api/security_edge.py`` and the read fast path) asks :meth:`SecurityGate.admit`
before doing anything, sets the returned access for the request, and reports the outcome to
:meth:`SecurityGate.audit`. Refusals are :class:`FhirError` with an OperationOutcome that says
what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from fhir_server.config import Settings, user_home
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.storage.access import Access
from fhir_server.core.storage.store import Store
from fhir_server.security import dev_issuer
from fhir_server.security.audit import AuditRecord, AuditTrail
from fhir_server.security.audit_journal import AuditJournal, journal_directory
from fhir_server.security.policy import SERVER_WRITTEN_TYPES, Need, Policy, RequestInfo, bundle_needs, needs
from fhir_server.security.rate_limit import RateLimiter
from fhir_server.security.scopes import required_scope
from fhir_server.security.tokens import Caller, KeySource, TokenRejected, TokenVerifier

SMART_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@dataclass(frozen=True)
class Admission:
    """An admitted request: who sent it, what it asks, what they may see."""

    info: RequestInfo
    caller: Caller
    access: Access


class SecurityGate:
    """Checks requests against the trusted issuer, the scopes, the rate limit; records the audit trail."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        region_of: dict[str, str],
        operation_needs: dict[str, tuple[Need, ...]],
    ) -> None:
        self.settings = settings
        self.development = settings.auth_mode == "development"
        if self.development:
            issuer = dev_issuer.DEV_ISSUER
            keys = KeySource(dev_issuer.public_jwks(settings.dev_key_path))  # the key is created on first use
        else:
            require_trusted_issuer(settings)
            issuer = settings.auth_issuer or ""
            keys = KeySource(settings.auth_jwks or "", settings.auth_jwks_cache_seconds)
        self.issuer = issuer
        self.verifier = TokenVerifier(issuer, settings.auth_audience, keys, settings.auth_clock_skew_seconds)
        self.policy = Policy(region_of, settings.auth_admin_scope)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.operation_needs = operation_needs
        journal_root = Path(settings.audit_journal_dir) if settings.audit_journal_dir else user_home() / "audit-journal"
        journal = AuditJournal(
            journal_directory(journal_root, settings.database_url), fsync=settings.audit_journal_fsync
        )
        self.trail = AuditTrail(store, observer="referral-hub", journal=journal)

    # -- admission ----------------------------------------------------------------------------

    def admit(self, info: RequestInfo, caller: Caller) -> Admission:
        """Admit an authenticated caller's request, or raise 403/405/429."""
        wait = self.limiter.retry_after(caller.client_id)
        if wait:
            raise FhirError(
                429,
                [
                    Issue(
                        "error",
                        "throttled",
                        f"too many requests from client '{caller.client_id}': at most "
                        f"{self.settings.rate_limit_per_minute} per minute; retry after {wait:.0f} s",
                    )
                ],
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        admin = self.policy.is_admin(caller)
        if not caller.organisations and not admin:
            raise _forbidden("the token names no organisation number (HelseID claim orgnr_parent)")
        if info.resource_type in SERVER_WRITTEN_TYPES:
            read_only = ("read", "vread", "search-type", "history-instance", "history-type")
            if info.interaction not in read_only and info.operation != "validate":  # $validate changes nothing
                raise FhirError.single(
                    405, "not-supported", f"{info.resource_type} resources are written by the server and never changed"
                )
            if not admin:
                raise _forbidden("only administrators read the audit trail")
        required = needs(info, self.operation_needs)
        if required is None and not admin:
            raise _forbidden(f"only administrators may call ${info.operation}")
        for need in required or ():
            self.check(caller, need)
        return Admission(info, caller, self.policy.access(caller))

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller a bearer token names; raises 401 with a ``WWW-Authenticate`` challenge."""
        if not authorization:
            raise _unauthorized("this server needs a bearer token (Authorization: Bearer …)", None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
        try:
            return self.verifier.verify(token.strip())
        except TokenRejected as exc:
            raise _unauthorized(exc.reason, "invalid_token") from exc

    def check(self, caller: Caller, need: Need, expression: str | None = None) -> None:
        """Raise 403 unless a scope of the caller grants the need."""
        if any(caller.scopes.allows(need.resource_type, letter) for letter in need.letters):
            return
        wanted = " or ".join(required_scope(need.resource_type, letter) for letter in need.letters)
        raise _forbidden(f"the token's scopes do not allow this: it needs {wanted}", expression)

    def check_bundle(self, admission: Admission, bundle: dict, *, referral: bool) -> Admission:
        """Check every entry of a batch or transaction; a referral Bundle needs ``ServiceRequest.c`` only."""
        if referral:
            self.check(admission.caller, Need("ServiceRequest", "c"))
            return replace(admission, info=RequestInfo("transaction", "ServiceRequest"))
        admin = self.policy.is_admin(admission.caller)
        for index, need in bundle_needs(bundle):
            where = f"Bundle.entry[{index}].request"
            if need.resource_type in SERVER_WRITTEN_TYPES and not (need.letters in ("r", "s") and admin):
                raise _forbidden(f"{need.resource_type} resources are written by the server only", where)
            self.check(admission.caller, need, where)
        kind = "transaction" if bundle.get("type") == "transaction" else "batch"
        return replace(admission, info=RequestInfo(kind))

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, record: AuditRecord) -> None:
        self.trail.record(record)

    # -- discovery ------------------------------------------------------------------------------

    def smart_configuration(self, base: str) -> dict:
        """``[base]/.well-known/smart-configuration`` (SMART App Launch 2.0, backend services)."""
        config: dict = {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json" if self.development else self.settings.auth_jwks,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", self.settings.auth_admin_scope],
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
            "code_challenge_methods_supported": ["S256"],
        }
        if self.settings.auth_token_endpoint:  # development mode has none: `fhir-server token` mints tokens
            config["token_endpoint"] = self.settings.auth_token_endpoint
        return config

    def capability_security(self) -> dict:
        """``CapabilityStatement.rest.security``: OAuth2 with SMART scopes, and where to get tokens."""
        uris = (
            [{"url": "token", "valueUri": self.settings.auth_token_endpoint}]
            if self.settings.auth_token_endpoint
            else []
        )
        security: dict = {
            "cors": False,
            "service": [
                {
                    "coding": [{"system": SMART_SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                    "text": "OAuth2 bearer tokens (HelseID, client credentials) with SMART v2 system scopes",
                }
            ],
            "description": (
                f"Every request but /metadata and /.well-known needs a bearer token from {self.issuer} for the "
                f"audience '{self.settings.auth_audience}', with SMART system scopes (system/ServiceRequest.cruds, "
                "system/*.rs, …). A client sees only what its organisation (HelseID orgnr_parent/orgnr_child) sent, "
                "or, for a regional health authority or one of its health trusts, what was routed to its region; "
                f"'{self.settings.auth_admin_scope}' sees everything, including the AuditEvent trail."
            ),
        }
        if uris:
            security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
        return security

    def public_jwks(self) -> dict | None:
        """The development issuer's public keys (None in production: the issuer publishes its own)."""
        return dev_issuer.public_jwks(self.settings.dev_key_path) if self.development else None


def require_trusted_issuer(settings: Settings) -> None:
    """Refuse to run in production mode without a trusted issuer and its keys."""
    if settings.auth_mode == "production" and not (settings.auth_issuer and settings.auth_jwks):
        raise SystemExit(
            "fhir-server: production mode needs a trusted token issuer and its keys: set FHIR_SERVER_AUTH_ISSUER "
            "and FHIR_SERVER_AUTH_JWKS (a JWKS file or URL), or start with --dev for development"
        )


def describe_mode(settings: Settings) -> str:
    """One line for the start-up banner: which mode, whose tokens."""
    if settings.auth_mode == "development":
        return (
            "DEVELOPMENT mode: trusts the local test issuer; get a token with "
            "`fhir-server token --scope 'system/*.cruds' --org <orgnr>`"
        )
    return f"production mode: tokens from {settings.auth_issuer} for audience '{settings.auth_audience}'"


def _unauthorized(message: str, error: str | None) -> FhirError:
    challenge = 'Bearer realm="fhir"' + (f', error="{error}", error_description="{message}"' if error else "")
    return FhirError(401, [Issue("error", "login", message)], headers={"WWW-Authenticate": challenge})


def _forbidden(message: str, expression: str | None = None) -> FhirError:
    return FhirError.single(403, "forbidden", message, expression)
