"""System-level endpoints: ``/metadata``, batch/transaction at the base URL, and paging."""

from __future__ import annotations

from flask import Blueprint, Response, request

from fhir_server.api import security_edge
from fhir_server.api.formats import SECURITY_HEADERS, fhir_response, negotiate, parse_body
from fhir_server.api.ops.registry import operations
from fhir_server.api.ops.subscriptions import subscription_capabilities
from fhir_server.api.rest import base_url, get_pages, prefer, server, strict_handling
from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor
from fhir_server.core.capabilities import CapabilityInputs, capability_statement
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.issues import FhirError

bp = Blueprint("system", __name__)

#: CapabilityStatements by base URL (taken from the request's Host unless configured): a few at most,
#: the oldest dropped first, so requests with made-up Host headers cannot grow it.
_capability_cache: dict[str, bytes] = {}
CAPABILITY_CACHE_SIZE = 8


@bp.route("/metadata", methods=["GET"])
def metadata() -> Response:
    key = base_url()
    if key not in _capability_cache:
        while len(_capability_cache) >= CAPABILITY_CACHE_SIZE:
            _capability_cache.pop(next(iter(_capability_cache)), None)
        srv = server()
        security = security_edge.gate().capability_security()
        profiles, extensions = subscription_capabilities(srv.profiles_by_type)
        inputs = CapabilityInputs(srv.registry, key, operations().declared(), profiles, security, extensions)
        _capability_cache[key] = jsonio.dumps(capability_statement(inputs, now_instant()))
    return fhir_response(_capability_cache[key], 200, negotiate(request))


@bp.route("/.well-known/smart-configuration", methods=["GET"])
def smart_configuration() -> Response:
    """SMART discovery: the issuer, its keys, the scopes and the capabilities (public)."""
    body = jsonio.dumps(security_edge.gate().smart_configuration(base_url()))
    return Response(body, 200, headers=[*SECURITY_HEADERS, ("Content-Type", "application/json")])


@bp.route("/.well-known/jwks.json", methods=["GET"])
def development_jwks() -> Response:
    """The development issuer's public key (only in development mode)."""
    jwks = security_edge.gate().public_jwks()
    if jwks is None:
        raise FhirError.single(404, "not-found", "in production the token issuer publishes its own keys")
    return Response(jsonio.dumps(jwks), 200, headers=[*SECURITY_HEADERS, ("Content-Type", "application/json")])


@bp.route("/", methods=["POST"], strict_slashes=False)
def batch_or_transaction() -> Response:
    bundle = parse_body(request, server().settings.max_body_bytes)
    # a transaction a write policy runs (a referral's) needs the scopes of that policy's door
    policy_run = server().service.transaction_policy(bundle) is not None
    security_edge.check_bundle(bundle, referral=policy_run)  # type: ignore[arg-type]
    processor = BundleProcessor(server().service, server().settings.max_bundle_entries)
    result = processor.process(bundle, return_preference=prefer("return"), strict=strict_handling())
    return fhir_response(result, 200, negotiate(request))


@bp.route("/", methods=["GET"], strict_slashes=False)
def system_get() -> Response:
    if "_getpages" in request.args:
        return get_pages()
    raise FhirError.single(400, "not-supported", "system-level search needs _getpages or a resource type in the path")
