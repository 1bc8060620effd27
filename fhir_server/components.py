"""Wiring of the server's parts (no Flask): database, store, search, validation, domain data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_server.config import Settings
from fhir_server.core.capabilities import OperationInfo
from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.interactions import FhirService, Validator
from fhir_server.core.issues import Issue
from fhir_server.core.storage.db import Database, open_database
from fhir_server.core.storage.store import Store
from fhir_server.data import data_folder

if TYPE_CHECKING:
    from fhir_server.core.conformance.packages import ConformanceRegistry
    from fhir_server.core.storage.wal_checkpoint import WalCheckpointer
    from fhir_server.core.terminology import Terminology
    from fhir_server.core.validation.profiles import ProfileValidator
    from fhir_server.domain.pathways import PathwayCatalog
    from fhir_server.domain.referral.intake import IntakePipeline

log = logging.getLogger(__name__)


@dataclass
class Server:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    db: Database
    registry: SearchRegistry
    store: Store
    service: FhirService
    conformance: ConformanceRegistry
    profiles: ProfileValidator
    pathways: PathwayCatalog
    validators: list[Validator] = field(default_factory=list)
    operations: list[OperationInfo] = field(default_factory=list)
    profiles_by_type: dict[str, list[str]] = field(default_factory=dict)
    security: dict | None = None
    intake: IntakePipeline | None = None
    terminology: Terminology | None = None
    checkpointer: WalCheckpointer | None = None

    def validate_with_profiles(self, resource: dict, profiles: list[str]) -> list[Issue]:
        """Base validation plus the resource's profile claims and the requested profiles ($validate)."""
        issues = self.service.validate(resource)
        if profiles:
            issues += self.profiles.validate(resource, [p for p in profiles if p not in _claims(resource)])
        return issues


def _claims(resource: dict) -> list[str]:
    meta = resource.get("meta")
    return list(meta.get("profile", [])) if isinstance(meta, dict) else []


def _claims_anywhere(resource: dict) -> bool:
    """True when the resource, or a resource in its Bundle entries, claims a profile."""
    if _claims(resource):
        return True
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    return isinstance(entries, list) and any(
        isinstance(e, dict) and isinstance(e.get("resource"), dict) and _claims_anywhere(e["resource"]) for e in entries
    )


def build_search_registry() -> SearchRegistry:
    """The R4 search parameters plus the project's own (SearchParameter resources in the data folders)."""
    from fhir_server.core.conformance.definitions import r4
    from fhir_server.core.conformance.seed import read_data_resources
    from fhir_server.data import data_folders

    own = [r for r in read_data_resources(data_folders()) if r["resourceType"] == "SearchParameter"]
    return SearchRegistry([*r4().search_parameter_resources, *own])


def build_conformance(settings: Settings) -> ConformanceRegistry:
    """Profiles, extensions and terminology: loaded IG packages, then the project's own folders."""
    from fhir_server.core.conformance.packages import ConformanceRegistry, load_project_profiles

    registry = ConformanceRegistry()
    for path in settings.ig_paths:
        target = Path(path)
        problems = registry.load_package(target) if target.suffix == ".tgz" else registry.load_folder(target)
        log.info("loaded conformance resources from %s (%s problems)", target, len(problems))
    for folder in ("terminology", "mappings", "pathways"):
        registry.load_folder(data_folder(folder))
    load_project_profiles(registry, canonical_base=settings.canonical_base)
    return registry


def build_validators(settings: Settings, profiles: ProfileValidator) -> list[Validator]:
    """What every write is checked against: base R4 rules, Norwegian identifiers, claimed profiles."""
    from fhir_server.core.validation import validate_resource, warm_up
    from fhir_server.core.validation.identifiers import validate_identifiers

    warm_up()  # build schemas and models now, not on the first request

    def identifiers(resource: dict) -> list[Issue]:
        return validate_identifiers(resource, test_mode=settings.test_mode)

    def claimed_profiles(resource: dict) -> list[Issue]:
        return profiles.validate(resource) if _claims_anywhere(resource) else []

    return [validate_resource, identifiers, claimed_profiles]


def build_server(settings: Settings) -> Server:
    from fhir_server.core.validation.profiles import ProfileValidator
    from fhir_server.domain.pathways import PathwayCatalog
    from fhir_server.domain.referral.intake import IntakePipeline

    db = open_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    registry = build_search_registry()
    store = Store(db, registry)
    conformance = build_conformance(settings)
    # an unknown profile claimed in meta.profile is a warning on write; asked for in $validate, an error
    profiles = ProfileValidator(conformance, unknown_claim_severity="warning")
    validators = build_validators(settings, profiles)
    service = FhirService(store, validators, base_url=settings.base_url or "")
    server = Server(
        settings,
        db,
        registry,
        store,
        service,
        conformance,
        profiles,
        PathwayCatalog.load(data_folder("pathways")),
        validators,
    )
    server.profiles_by_type = supported_profiles(conformance)
    from fhir_server.domain.routing.tables import default_tables

    server.intake = IntakePipeline(service, server.pathways, default_tables())
    from fhir_server.domain.routing.region_access import region_follows_task_owner

    store.write_hooks.append(region_follows_task_owner(default_tables()))
    server.terminology = build_terminology(conformance, service)
    log.info("server ready on %s (%s)", settings.database_url.split("@")[-1], db.dialect)
    return server


def start_wal_checkpointer(server: Server) -> WalCheckpointer | None:
    """SQLite: the process's background checkpoint thread (no commit has to copy the log back);
    None on PostgreSQL."""
    from fhir_server.core.storage.wal_checkpoint import WalCheckpointer

    if server.db.sqlite_path is None:
        return None
    server.checkpointer = WalCheckpointer(server.db.sqlite_path)
    server.checkpointer.start()
    return server.checkpointer


def build_terminology(conformance: ConformanceRegistry, service: FhirService) -> Terminology:
    """Terminology from the conformance registry, then from resources stored on the server."""
    from fhir_server.core import jsonio
    from fhir_server.core.conformance.definitions import r4
    from fhir_server.core.storage import access
    from fhir_server.core.terminology import Terminology

    def stored(rtype: str, url: str) -> dict | None:
        with access.acting_as(access.SYSTEM):  # the server's own lookup, whoever's request needs it
            found = service.conditional_matches(None, rtype, f"url={url.split('|')[0]}")
            return jsonio.loads(service.read(rtype, found[0]).body or b"{}") if found else None

    def code_system(url: str) -> dict | None:
        return conformance.code_system(url) or r4().code_system(url) or stored("CodeSystem", url)

    def value_set(url: str) -> dict | None:
        return conformance.value_set(url) or r4().value_set(url) or stored("ValueSet", url)

    def concept_maps() -> list[dict]:
        return list(conformance.all("ConceptMap"))

    return Terminology(code_system, value_set, concept_maps)


def supported_profiles(conformance: ConformanceRegistry) -> dict[str, list[str]]:
    """The loaded resource profiles by resource type, for the CapabilityStatement."""
    by_type: dict[str, list[str]] = {}
    for sd in conformance.all("StructureDefinition"):
        if sd.get("kind") == "resource" and sd.get("derivation") == "constraint":
            by_type.setdefault(sd["type"], []).append(sd["url"])
    return {t: sorted(urls) for t, urls in by_type.items()}
