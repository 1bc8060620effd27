"""The Flask application factory: wires settings, the server's parts, the operations and the blueprints."""

from __future__ import annotations

import atexit
import gc
import logging

from flask import Flask, Response

from fhir_server import web
from fhir_server.api import errors, rest, security_edge, system
from fhir_server.api.formats import SECURITY_HEADERS
from fhir_server.api.ops import (
    delivery,
    everything,
    export,
    measures,
    pathways,
    referrals,
    registry,
    subscriptions,
    terminology,
    validate,
)
from fhir_server.api.ops.registry import OperationRegistry
from fhir_server.components import Components, build_server, start_workers
from fhir_server.config import Settings, load_settings
from fhir_server.logging_setup import configure_logging
from fhir_server.security.gate import SecurityGate


def build_operations() -> OperationRegistry:
    """The operations this server serves, family by family (the order the CapabilityStatement lists them)."""
    return OperationRegistry.collect(
        validate, pathways, referrals, terminology, delivery, measures, everything, subscriptions, export
    )


def build_gate(components: Components, operations: OperationRegistry) -> SecurityGate:
    """The security gate: trusted issuer, scopes per operation, regions of the RHFs and HFs, audit trail."""
    region_of = components.intake.tables.region_of()
    return SecurityGate(components.settings, components.store, region_of, operations.needs())


def create_app(settings: Settings | None = None, components: Components | None = None) -> Flask:
    """Build the WSGI application (one per process) and start the process's workers."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    components = components or build_server(settings)
    operations = build_operations()
    gate = build_gate(components, operations)
    workers = start_workers(components, delivery=settings.delivery_worker)
    atexit.register(workers.stop)
    atexit.register(gate.trail.close)  # store the audit events still queued when the process stops

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.extensions["fhir"] = components
    errors.register_error_handlers(app)
    security_edge.install(app, gate, settings.base_path)
    operations.install(app)
    # system routes first: "/metadata" must not be taken for a resource type
    app.register_blueprint(system.bp, url_prefix=settings.base_path)
    app.register_blueprint(registry.bp, url_prefix=settings.base_path)
    app.register_blueprint(rest.bp, url_prefix=settings.base_path)
    web.install(app, components, gate)  # the people's app under /app

    @app.after_request
    def _headers(response: Response) -> Response:
        if "X-Content-Type-Options" not in response.headers:  # responses not built by fhir_response
            response.headers.extend(SECURITY_HEADERS)
        return response

    from fhir_server.api.fast_read import FastRead

    app.wsgi_app = FastRead(app.wsgi_app, components, gate, settings.base_path)  # type: ignore[method-assign]
    # Definitions, profiles and models are millions of long-lived objects: move them out of the
    # garbage collector's way, so collections triggered by requests stay short.
    gc.collect()
    gc.freeze()
    logging.getLogger(__name__).debug("application created")
    return app
