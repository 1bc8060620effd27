"""The Flask application factory: wires settings, the server's parts and the blueprints."""

from __future__ import annotations

import atexit
import gc
import logging

from flask import Flask, Response

from fhir_server.api import errors, rest, security_edge, system
from fhir_server.api.formats import SECURITY_HEADERS
from fhir_server.api.ops import referrals, terminology  # noqa: F401 - they register operations
from fhir_server.api.ops import registry as operations
from fhir_server.components import Server, build_server, start_wal_checkpointer
from fhir_server.config import Settings, load_settings
from fhir_server.logging_setup import configure_logging
from fhir_server.security.gate import SecurityGate


def start_delivery_worker(server: Server) -> None:
    """One outbox delivery thread per process (several processes share the work safely)."""
    from fhir_server.domain.delivery.outbox import DeliverySettings, DeliveryWorker

    settings = server.settings
    worker = DeliveryWorker(
        server.service,
        DeliverySettings(
            poll_seconds=settings.outbox_poll_seconds,
            backoff_seconds=settings.outbox_backoff_seconds,
            max_attempts=settings.outbox_max_attempts,
        ),
    )
    worker.start()


def build_gate(server: Server) -> SecurityGate:
    """The security gate: trusted issuer, scopes per operation, regions of the RHFs and HFs, audit trail."""
    tables = server.intake.tables  # type: ignore[union-attr]
    region_of = {org.orgnr: org.rhf_orgnr for org in tables.organizations.values()}
    gate = SecurityGate(server.settings, server.store, region_of, operations.operation_needs())
    server.security = gate.capability_security()
    atexit.register(gate.trail.close)  # store the audit events still queued when the process stops
    return gate


def create_app(settings: Settings | None = None, server: Server | None = None) -> Flask:
    """Build the WSGI application (one per process)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.extensions["fhir"] = server or build_server(settings)
    app.extensions["fhir"].operations = operations.declared_operations()
    if settings.delivery_worker:
        start_delivery_worker(app.extensions["fhir"])
    checkpointer = start_wal_checkpointer(app.extensions["fhir"])
    if checkpointer is not None:
        atexit.register(checkpointer.stop)
    errors.register_error_handlers(app)
    gate = build_gate(app.extensions["fhir"])
    security_edge.install(app, gate, settings.base_path)
    # system routes first: "/metadata" must not be taken for a resource type
    app.register_blueprint(system.bp, url_prefix=settings.base_path)
    app.register_blueprint(operations.bp, url_prefix=settings.base_path)
    app.register_blueprint(rest.bp, url_prefix=settings.base_path)

    @app.after_request
    def _headers(response: Response) -> Response:
        if "X-Content-Type-Options" not in response.headers:  # responses not built by fhir_response
            response.headers.extend(SECURITY_HEADERS)
        return response

    from fhir_server.api.fast_read import FastRead

    app.wsgi_app = FastRead(app.wsgi_app, app.extensions["fhir"], gate, settings.base_path)  # type: ignore[method-assign]
    # Definitions, profiles and models are millions of long-lived objects: move them out of the
    # garbage collector's way, so collections triggered by requests stay short.
    gc.collect()
    gc.freeze()
    logging.getLogger(__name__).debug("application created")
    return app
