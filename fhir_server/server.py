"""Wiring of the server's parts (no Flask): database, store, search, validation, capabilities."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fhir_server.config import Settings
from fhir_server.core.capabilities import OperationInfo
from fhir_server.core.db import Database, open_database
from fhir_server.core.search.parameters import SearchRegistry
from fhir_server.core.service import FhirService, Validator
from fhir_server.core.store import Store

log = logging.getLogger(__name__)


@dataclass
class Server:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    db: Database
    registry: SearchRegistry
    store: Store
    service: FhirService
    validators: list[Validator] = field(default_factory=list)
    operations: list[OperationInfo] = field(default_factory=list)
    profiles_by_type: dict[str, list[str]] = field(default_factory=dict)
    security: dict | None = None


def default_validators(settings: Settings) -> list[Validator]:
    """Base validation of every write (fhir.resources R4B structure plus our stricter checks)."""
    from fhir_server.core.validation import validate_resource, warm_up

    warm_up()  # build schemas and models now, not on the first request
    return [validate_resource]


def build_server(settings: Settings) -> Server:
    db = open_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    registry = SearchRegistry()
    store = Store(db, registry)
    validators = default_validators(settings)
    service = FhirService(store, validators, base_url=settings.base_url or "")
    log.info("server ready on %s (%s)", settings.database_url.split("@")[-1], db.dialect)
    return Server(settings, db, registry, store, service, validators)
