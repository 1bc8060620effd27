"""Server settings: from environment variables, an optional JSON config file, and CLI flags.

A marshmallow schema checks the settings, so a typo in a config file is a clear error at start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from marshmallow import Schema, ValidationError, validate
from marshmallow import fields as mfields

ENV_PREFIX = "FHIR_SERVER_"
#: The per-user directory's name under ``$XDG_DATA_HOME`` (or ``~/.local/share``).
USER_DIR_NAME = "fhir-referral-hub"


def user_home() -> Path:
    """The per-user directory of the default SQLite database and the development key.

    ``$FHIR_SERVER_HOME`` if set, else ``$XDG_DATA_HOME/fhir-referral-hub``, else
    ``~/.local/share/fhir-referral-hub``: the same wherever ``serve`` and ``token`` are run.
    """
    home = os.environ.get(ENV_PREFIX + "HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / USER_DIR_NAME


def default_database_url() -> str:
    """The default database: a SQLite file in :func:`user_home`."""
    return f"sqlite:///{user_home() / 'fhir.sqlite3'}"


def default_dev_key_path() -> str:
    """Development mode's default signing key file, in :func:`user_home`."""
    return str(user_home() / "dev-issuer-key.json")


@dataclass
class Settings:
    """Everything the application factory needs."""

    #: Default: a SQLite file in the per-user directory (:func:`user_home`).
    database_url: str = field(default_factory=default_database_url)
    #: The externally visible base URL (fullUrl, Location, links); by default taken from the request.
    base_url: str | None = None
    #: Mount point of the FHIR API.
    base_path: str = "/fhir"
    max_body_bytes: int = 10 * 1024 * 1024
    max_bundle_entries: int = 1000
    default_count: int = 20
    max_count: int = 1000
    #: Bounds on the cost of one request (issue 15, finding 7): a resource's values, one element's
    #: repeats, one string's length (base64 ``data`` excepted), nesting depth; refused with 413.
    max_resource_elements: int = 500_000
    max_element_repeats: int = 10_000
    max_string_length: int = 1_048_576
    max_nesting_depth: int = 100
    #: Search: parameters per request, repeats of one parameter, comma-separated values in all.
    search_max_parameters: int = 60
    search_max_repeats: int = 20
    search_max_values: int = 300
    #: A database statement running longer is stopped (503); 0 turns the limit off.
    statement_timeout_ms: int = 30_000
    #: Searches spanning pages: matches counted for _total=estimate (more: no total; _total=accurate counts all),
    #: stored searches kept per caller (oldest dropped first), their lifetime.
    search_count_bound: int = 1000
    snapshot_max_count: int = 200
    snapshot_lifetime_minutes: int = 60
    #: Test mode accepts synthetic national identity numbers (Tenor).
    test_mode: bool = False
    #: SQLite durability: FULL survives a power loss (one fsync per commit, ~0.4 ms here); NORMAL (WAL)
    #: survives a crash of the server process but may lose the last commits on a power loss.
    sqlite_synchronous: str = "FULL"
    log_level: str = "INFO"
    #: FHIR IG packages (folders of JSON/XML, or .tgz) loaded at start, e.g. hl7.fhir.no.basis.
    ig_paths: list[str] = field(default_factory=list)
    #: A directory holding the data folders (profiles/, terminology/, mappings/, pathways/) to use
    #: instead of the ones shipped with the package.
    data_dir: str | None = None
    #: Push delivery to regional Endpoints (outbox worker thread in each server process).
    delivery_worker: bool = True
    outbox_poll_seconds: float = 1.0
    outbox_backoff_seconds: float = 2.0
    outbox_max_attempts: int = 8
    #: how long a worker's claim on a delivery lasts unless it renews it (it does, while it sends)
    outbox_lease_seconds: float = 15.0
    #: Where each process journals its audit events before answering (default: audit-journal/ in the
    #: per-user directory); a per-database subdirectory is used, replayed at start after a crash.
    audit_journal_dir: str | None = None
    #: fsync each journalled event before answering (survives a power loss; ~1-4 ms a request on a busy
    #: disk); False: written to the OS only, which survives a crash or ``kill -9`` of the server process.
    audit_journal_fsync: bool = True
    #: Topic subscriptions (R4 Backport): how long a failing rest-hook is retried before the Subscription
    #: goes to ``error`` (days), the first retry's delay (doubling up to the maximum), the delivery lease.
    subscription_retry_days: float = 3.0
    subscription_backoff_seconds: float = 2.0
    subscription_max_backoff_seconds: float = 300.0
    subscription_lease_seconds: float = 30.0
    #: Bulk export: resources per NDJSON file (one chunk of a job, committed with the job's cursor).
    export_chunk_size: int = 1000
    #: "production" needs a trusted issuer and its JWKS; "development" trusts the local test issuer,
    #: whose tokens ``fhir-server token`` mints (never use it with real data).
    auth_mode: str = "production"
    #: The trusted token issuer (``iss``), e.g. https://helseid-sts.nhn.no.
    auth_issuer: str | None = None
    #: The issuer's signing keys: a JWKS file path or URL (https://…/.well-known/openid-configuration/jwks).
    auth_jwks: str | None = None
    #: The audience (``aud``) tokens must be issued for: this API's name at the issuer.
    auth_audience: str = "referral-hub"
    #: The issuer's token endpoint, announced in the SMART configuration.
    auth_token_endpoint: str | None = None
    auth_clock_skew_seconds: int = 30
    auth_jwks_cache_seconds: int = 300
    #: The scope that makes a client an administrator (sees every organisation's data and the audit trail).
    auth_admin_scope: str = "referral-hub:admin"
    #: The scope that lets a client evaluate measures for every region (national statistics), with
    #: small-number protection; it sees no resources beyond its own organisation's.
    auth_statistics_scope: str = "referral-hub:statistics"
    #: Measure reports hide strata with fewer patients than this from callers other than administrators.
    measure_min_stratum_patients: int = 5
    #: Development mode's signing key (created on first use); default in the per-user directory.
    dev_key_path: str = field(default_factory=default_dev_key_path)
    #: Requests per minute per client (in each server process); 0 turns the limit off.
    rate_limit_per_minute: int = 6000
    #: The web app's session signing key (shared by all processes); development mode derives one from its key.
    web_secret_key: str | None = None
    #: The web app's OpenID Connect client at ``auth_issuer`` (authorization code flow with PKCE).
    web_oidc_client_id: str | None = None
    web_oidc_client_secret: str | None = None
    web_oidc_scope: str = "openid profile helseid://scopes/identity/hpr_number"
    extra: dict = field(default_factory=dict)


class SettingsSchema(Schema):
    database_url = mfields.String(validate=validate.Regexp(r"^(sqlite|postgresql|postgres)(\+\w+)?://"))
    base_url = mfields.String(allow_none=True, validate=validate.Regexp(r"^https?://"))
    base_path = mfields.String(validate=validate.Regexp(r"^/[A-Za-z0-9_\-/]*$"))
    max_body_bytes = mfields.Integer(validate=validate.Range(min=1024))
    max_bundle_entries = mfields.Integer(validate=validate.Range(min=1))
    default_count = mfields.Integer(validate=validate.Range(min=1))
    max_count = mfields.Integer(validate=validate.Range(min=1))
    max_resource_elements = mfields.Integer(validate=validate.Range(min=100))
    max_element_repeats = mfields.Integer(validate=validate.Range(min=10))
    max_string_length = mfields.Integer(validate=validate.Range(min=1024))
    max_nesting_depth = mfields.Integer(validate=validate.Range(min=10))
    search_max_parameters = mfields.Integer(validate=validate.Range(min=1))
    search_max_repeats = mfields.Integer(validate=validate.Range(min=1))
    search_max_values = mfields.Integer(validate=validate.Range(min=1))
    statement_timeout_ms = mfields.Integer(validate=validate.Range(min=0))
    search_count_bound = mfields.Integer(validate=validate.Range(min=0))
    snapshot_max_count = mfields.Integer(validate=validate.Range(min=1))
    snapshot_lifetime_minutes = mfields.Integer(validate=validate.Range(min=1))
    test_mode = mfields.Boolean()
    sqlite_synchronous = mfields.String(validate=validate.OneOf(["OFF", "NORMAL", "FULL", "EXTRA"]))
    log_level = mfields.String(validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]))
    ig_paths = mfields.List(mfields.String())
    data_dir = mfields.String(allow_none=True, validate=validate.Length(min=1))
    delivery_worker = mfields.Boolean()
    outbox_poll_seconds = mfields.Float(validate=validate.Range(min=0.01))
    outbox_backoff_seconds = mfields.Float(validate=validate.Range(min=0))
    outbox_max_attempts = mfields.Integer(validate=validate.Range(min=1))
    outbox_lease_seconds = mfields.Float(validate=validate.Range(min=0.3))
    audit_journal_dir = mfields.String(allow_none=True, validate=validate.Length(min=1))
    audit_journal_fsync = mfields.Boolean()
    subscription_retry_days = mfields.Float(validate=validate.Range(min=0))
    subscription_backoff_seconds = mfields.Float(validate=validate.Range(min=0))
    subscription_max_backoff_seconds = mfields.Float(validate=validate.Range(min=0))
    subscription_lease_seconds = mfields.Float(validate=validate.Range(min=1))
    export_chunk_size = mfields.Integer(validate=validate.Range(min=1))
    auth_mode = mfields.String(validate=validate.OneOf(["production", "development"]))
    auth_issuer = mfields.String(allow_none=True, validate=validate.Length(min=1))
    auth_jwks = mfields.String(allow_none=True, validate=validate.Length(min=1))
    auth_audience = mfields.String(validate=validate.Length(min=1))
    auth_token_endpoint = mfields.String(allow_none=True, validate=validate.Regexp(r"^https?://"))
    auth_clock_skew_seconds = mfields.Integer(validate=validate.Range(min=0, max=300))
    auth_jwks_cache_seconds = mfields.Integer(validate=validate.Range(min=0))
    auth_admin_scope = mfields.String(validate=validate.Length(min=1))
    auth_statistics_scope = mfields.String(validate=validate.Length(min=1))
    measure_min_stratum_patients = mfields.Integer(validate=validate.Range(min=0))
    dev_key_path = mfields.String(validate=validate.Length(min=1))
    rate_limit_per_minute = mfields.Integer(validate=validate.Range(min=0))
    web_secret_key = mfields.String(allow_none=True, validate=validate.Length(min=16))
    web_oidc_client_id = mfields.String(allow_none=True, validate=validate.Length(min=1))
    web_oidc_client_secret = mfields.String(allow_none=True, validate=validate.Length(min=1))
    web_oidc_scope = mfields.String(validate=validate.Length(min=1))
    extra = mfields.Dict()


def load_settings(config_file: str | Path | None = None, **overrides: object) -> Settings:
    """Settings from (lowest first) defaults, a JSON file, ``FHIR_SERVER_*`` variables, and overrides."""
    raw: dict[str, object] = {}
    config_file = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        raw.update(json.loads(Path(config_file).read_text(encoding="utf-8")))
    for f in fields(Settings):
        env = os.environ.get(ENV_PREFIX + f.name.upper())
        if env is not None:
            raw[f.name] = [p for p in env.split(os.pathsep) if p] if f.name == "ig_paths" else env
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        loaded = SettingsSchema().load(raw)
    except ValidationError as exc:
        raise SystemExit(f"invalid settings: {exc.messages}") from exc
    return Settings(**loaded)
