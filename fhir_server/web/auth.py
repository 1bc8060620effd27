"""Who is signed in to the web app, what they may see, and the audit of what they did (Flask edge).

The session (a signed, HTTP-only cookie, SameSite=Lax, Secure unless served on loopback) holds the
person: name, HPR number or user name, organisation, administrator or not. From it the security
policy of the API (:meth:`fhir_server.security.policy.Policy.access`) makes the :class:`Access` every
read and write of the request runs under. Every page and action is audited as an AuditEvent naming the
person. Every form carries the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time

from flask import Flask, Request, abort, g, request, session
from flask.sessions import SecureCookieSessionInterface

from fhir_server.config import Settings
from fhir_server.security import dev_issuer
from fhir_server.security.audit import AuditRecord
from fhir_server.security.gate import SecurityGate
from fhir_server.security.policy import RequestInfo
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import Caller
from fhir_server.web.worklist import WEB_USER_SYSTEM, Person

log = logging.getLogger(__name__)

SESSION_HOURS = 8


class LoopbackAwareSessions(SecureCookieSessionInterface):
    """Session cookies marked Secure, except when the app is reached on loopback (development over http)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return not is_loopback(request)


def is_loopback(req: Request) -> bool:
    host = (req.host or "").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configure_sessions(app: Flask, settings: Settings) -> None:
    app.secret_key = secret_key(settings)
    app.session_interface = LoopbackAwareSessions()
    app.config.update(
        SESSION_COOKIE_NAME="hub_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/app",
        PERMANENT_SESSION_LIFETIME=SESSION_HOURS * 3600,
    )


def secret_key(settings: Settings) -> str:
    """The configured key; in development mode one derived from the development issuer's key (stable across
    processes); else a random one per process (sessions then end with the process: configure one)."""
    if settings.web_secret_key:
        return settings.web_secret_key
    if settings.auth_mode == "development":
        jwk = dev_issuer.private_jwk(settings.dev_key_path)
        return hmac.new(str(jwk.get("d", "")).encode(), b"web-session", hashlib.sha256).hexdigest()
    log.warning("FHIR_SERVER_WEB_SECRET_KEY is not set: web sessions last only as long as this process")
    return secrets.token_hex(32)


# -- the person -------------------------------------------------------------------------------


def sign_in(person: Person) -> None:
    """A new session for ``person`` (nothing of the session before it is kept but the language)."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    session.permanent = True
    session["person"] = {
        "name": person.name,
        "ident": person.ident,
        "system": person.ident_system,
        "orgnr": person.orgnr,
        "admin": person.admin,
        "since": int(time.time()),
    }
    session["csrf"] = secrets.token_urlsafe(24)


def signed_in() -> Person | None:
    data = session.get("person")
    if not isinstance(data, dict):
        return None
    return Person(
        data["name"], data["ident"], data["orgnr"], bool(data.get("admin")), data.get("system", WEB_USER_SYSTEM)
    )


#: What a person may do through the web app, as SMART scopes: read and search what their organisation and
#: region see (the labels decide what that is), update routing Tasks, record their Provenance.
PERSON_SCOPES = ("system/*.rs", "system/Task.u", "system/Provenance.c")


def caller_of(person: Person, gate: SecurityGate) -> Caller:
    """The person as the security policy knows callers: their organisation, the person's scopes, the
    statistics scope (the measures page shows every region, small strata masked, as published statistics
    do), and the admin scope if they administer."""
    settings = gate.settings
    raw = (*PERSON_SCOPES, settings.auth_statistics_scope, *((settings.auth_admin_scope,) if person.admin else ()))
    return Caller(
        f"person:{person.ident}", person.name, (person.orgnr,), ScopeSet.parse(list(raw)), raw, time.time() + 3600
    )


# -- CSRF -------------------------------------------------------------------------------------


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, description="csrf")


# -- audit ------------------------------------------------------------------------------------


def audit(gate: SecurityGate, status: int) -> None:
    """One AuditEvent for the page or action just served, with the signed-in person as agent."""
    info: RequestInfo | None = g.get("audit_info")
    if info is None:
        return
    person = g.get("person")
    caller = caller_of(person, gate) if person else None
    detail = f"web app {request.method} {request.path}"
    gate.audit(AuditRecord(info, caller, status, request.remote_addr, request.query_string.decode() or None, detail))
