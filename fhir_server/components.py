"""The composition root (no Flask): database, store, search, validation, domain data, built whole;
and the process's background workers, started explicitly by whoever runs the process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_server.config import Settings
from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.interactions import FhirService, Validator
from fhir_server.core.issues import Issue
from fhir_server.core.search.engine import PagingLimits
from fhir_server.core.search.query import SearchLimits
from fhir_server.core.storage.db import Database, open_database
from fhir_server.core.storage.store import Store
from fhir_server.data import data_folder, data_folders, require_data_folders

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from fhir_server.core.conformance.packages import ConformanceRegistry
    from fhir_server.core.export.jobs import ExportWorker
    from fhir_server.core.storage.statistics import StatisticsKeeper
    from fhir_server.core.storage.wal_checkpoint import WalCheckpointer
    from fhir_server.core.terminology import Terminology
    from fhir_server.core.validation.profile.validator import ProfileValidator
    from fhir_server.domain.delivery.outbox import DeliveryWorker
    from fhir_server.domain.delivery.subscription_worker import SubscriptionWorker
    from fhir_server.domain.measures import MeasureCatalog
    from fhir_server.domain.pathways import PathwayCatalog
    from fhir_server.domain.referral.intake import IntakePipeline
    from fhir_server.domain.referral.leniency import ReferralChecks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    """Everything a request handler needs, built whole once per process (no Flask, no threads)."""

    settings: Settings
    db: Database
    registry: SearchRegistry
    store: Store
    service: FhirService
    conformance: ConformanceRegistry
    profiles: ProfileValidator
    validators: list[Validator]
    #: the loaded resource profiles by resource type, for the CapabilityStatement
    profiles_by_type: dict[str, list[str]]
    pathways: PathwayCatalog
    intake: IntakePipeline
    measures: MeasureCatalog
    terminology: Terminology

    def validate_with_profiles(self, resource: dict, profiles: list[str]) -> list[Issue]:
        """Base validation plus the resource's profile claims and the requested profiles ($validate)."""
        issues = self.service.validate(resource)
        if profiles:
            issues += self.profiles.validate(resource, [p for p in profiles if p not in _claims(resource)])
        return issues


@dataclass
class Workers:
    """The process's background threads, started explicitly by the app factory or the CLI."""

    #: SQLite's checkpoint thread (None on PostgreSQL)
    checkpointer: WalCheckpointer | None
    #: the outbox delivery thread (None when the settings turn it off)
    delivery: DeliveryWorker | None
    #: the topic-subscription delivery thread (None when the settings turn delivery off)
    subscriptions: SubscriptionWorker | None = None
    #: the bulk export thread (None when the settings turn delivery off)
    export: ExportWorker | None = None
    #: SQLite's planner statistics, refreshed now and then (None on PostgreSQL: autovacuum keeps them)
    statistics: StatisticsKeeper | None = None

    def stop(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        if self.subscriptions is not None:
            self.subscriptions.stop()
        if self.export is not None:
            self.export.stop()
        if self.statistics is not None:
            self.statistics.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()


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


def build_search_registry(folders: list[Path] | None = None) -> SearchRegistry:
    """The R4 search parameters plus the project's own (SearchParameter resources in the data folders)."""
    from fhir_server.core.conformance.definitions import r4
    from fhir_server.core.conformance.seed import read_data_resources

    own = [r for r in read_data_resources(folders or data_folders()) if r["resourceType"] == "SearchParameter"]
    return SearchRegistry([*r4().search_parameter_resources, *own])


def build_conformance(settings: Settings) -> ConformanceRegistry:
    """Profiles, extensions and terminology: loaded IG packages, then the project's own folders
    (``settings.data_dir``, else the shipped data), with the profiles folder's suppressions."""
    from fhir_server.core.conformance.packages import ConformanceRegistry, Suppressions, load_project_profiles

    profiles = data_folder("profiles", settings.data_dir)
    registry = ConformanceRegistry(suppressions=Suppressions.load(profiles / "suppressions.json"))
    for path in settings.ig_paths:
        target = Path(path)
        problems = registry.load_package(target) if target.suffix == ".tgz" else registry.load_folder(target)
        log.info("loaded conformance resources from %s (%s problems)", target, len(problems))
    for folder in ("terminology", "mappings", "pathways"):
        registry.load_folder(data_folder(folder, settings.data_dir))
    load_project_profiles(registry, profiles)
    return registry


def build_validators(settings: Settings, profiles: ProfileValidator) -> list[Validator]:
    """What every write is checked against: base R4 rules, Norwegian identifiers, claimed profiles."""
    from fhir_server.core.validation import warm_up

    warm_up()  # build schemas and models now, not on the first request
    checks = build_referral_checks(settings, profiles)

    def claimed_profiles(resource: dict) -> list[Issue]:
        return profiles.validate(resource) if _claims_anywhere(resource) else []

    return [checks.base, checks.identifiers, claimed_profiles]


def build_referral_checks(settings: Settings, profiles: ProfileValidator) -> ReferralChecks:
    """The same checks, apart: the referral intake refuses on base errors and only warns on the others.
    The base check starts with the size bounds (413 naming the element, before any costlier check)."""
    from fhir_server.core.limits import ResourceLimits, check_size
    from fhir_server.core.validation import validate_resource
    from fhir_server.core.validation.identifiers import validate_identifiers
    from fhir_server.domain.referral.leniency import ReferralChecks

    limits = ResourceLimits(
        settings.max_resource_elements,
        settings.max_element_repeats,
        settings.max_string_length,
        settings.max_nesting_depth,
    )

    def base(resource: dict) -> list[Issue]:
        check_size(resource, limits)
        return validate_resource(resource)

    def identifiers(resource: dict) -> list[Issue]:
        return validate_identifiers(resource, test_mode=settings.test_mode)

    return ReferralChecks(base, identifiers, profiles)


def database_schemas() -> list[MetaData]:
    """Every set of tables the server keeps in its database: storage's, then the measures' facts."""
    from fhir_server.core.storage.schema import metadata as storage
    from fhir_server.domain.measures.facts import metadata as facts

    return [storage, facts]


def build_server(settings: Settings) -> Components:
    """Every part, built in order and then put together in one go (no thread is started here)."""
    from fhir_server.core.validation.profile.validator import ProfileValidator
    from fhir_server.domain.delivery.subscription_topics import load_topics
    from fhir_server.domain.delivery.subscriptions import SubscriptionRules
    from fhir_server.domain.measures import MeasureCatalog, ensure_fact_table, facts_follow_writes, fill_missing_facts
    from fhir_server.domain.pathways import PathwayCatalog
    from fhir_server.domain.referral.intake import IntakePipeline
    from fhir_server.domain.referral.policy import ReferralWritePolicy
    from fhir_server.domain.routing.region_access import endpoint_concerns_writer, region_follows_task_owner
    from fhir_server.domain.routing.tables import RoutingTables

    folders = require_data_folders(settings.data_dir)  # a misconfigured data_dir stops the start here
    db = open_database(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        statement_timeout_ms=settings.statement_timeout_ms,
    )
    registry = build_search_registry(folders)
    store = Store(db, registry)
    conformance = build_conformance(settings)
    # an unknown profile claimed in meta.profile is a warning on write; asked for in $validate, an error
    profiles = ProfileValidator(conformance, unknown_claim_severity="warning")
    validators = build_validators(settings, profiles)
    service = FhirService(store, validators, base_url=settings.base_url or "")
    service.parser.limits = SearchLimits(
        settings.search_max_parameters, settings.search_max_repeats, settings.search_max_values
    )
    service.engine.limits = PagingLimits(
        settings.search_count_bound, settings.snapshot_max_count, timedelta(minutes=settings.snapshot_lifetime_minutes)
    )
    data_dir = settings.data_dir
    pathways = PathwayCatalog.load(data_folder("pathways", data_dir))
    tables = RoutingTables.load(data_folder("terminology", data_dir), data_folder("mappings", data_dir))
    store.write_hooks.append(region_follows_task_owner(tables))
    store.write_hooks.append(endpoint_concerns_writer(tables))  # who receives a region's pushes
    ensure_fact_table(db)
    store.write_hooks.append(facts_follow_writes())  # the measures' per-referral facts
    fill_missing_facts(store)  # a database stored before the measures: its facts, once
    # topic-subscription events, recorded in the write's own transaction
    store.write_hooks.append(SubscriptionRules(tables.region_of(), load_topics(data_folder("mappings", data_dir))))
    intake = IntakePipeline(service, pathways, tables, build_referral_checks(settings, profiles))
    service.register_policy(ReferralWritePolicy(intake))  # every referral write, on every door
    components = Components(
        settings=settings,
        db=db,
        registry=registry,
        store=store,
        service=service,
        conformance=conformance,
        profiles=profiles,
        validators=validators,
        profiles_by_type=supported_profiles(conformance),
        pathways=pathways,
        intake=intake,
        measures=MeasureCatalog.load(data_folder("measures", data_dir)),
        terminology=build_terminology(conformance, service),
    )
    log.info("server ready on %s (%s)", settings.database_url.split("@")[-1], db.dialect)
    return components


def start_workers(components: Components, *, delivery: bool) -> Workers:
    """Start the process's background threads: SQLite's WAL checkpointer (none on PostgreSQL) and,
    when ``delivery``, one outbox delivery thread (several processes share the work safely)."""
    from fhir_server.core.export.jobs import ExportSettings, ExportWorker
    from fhir_server.core.storage.statistics import StatisticsKeeper
    from fhir_server.core.storage.wal_checkpoint import WalCheckpointer
    from fhir_server.domain.delivery.outbox import DeliverySettings, DeliveryWorker
    from fhir_server.domain.delivery.subscription_worker import SubscriptionSettings, SubscriptionWorker

    checkpointer = statistics = None
    if components.db.sqlite_path is not None:  # no commit has to copy the log back
        checkpointer = WalCheckpointer(components.db.sqlite_path)
        checkpointer.start()
        statistics = StatisticsKeeper(components.store)
        statistics.start()
    worker = subscriptions = export = None
    if delivery:
        settings = components.settings
        worker = DeliveryWorker(
            components.service,
            DeliverySettings(
                poll_seconds=settings.outbox_poll_seconds,
                backoff_seconds=settings.outbox_backoff_seconds,
                max_attempts=settings.outbox_max_attempts,
                lease_seconds=settings.outbox_lease_seconds,
            ),
        )
        worker.start()
        subscriptions = SubscriptionWorker(
            components.service,
            SubscriptionSettings(
                base_url=settings.base_url or "",
                poll_seconds=min(settings.outbox_poll_seconds, 0.5),
                backoff_seconds=settings.subscription_backoff_seconds,
                max_backoff_seconds=settings.subscription_max_backoff_seconds,
                retry_days=settings.subscription_retry_days,
                lease_seconds=settings.subscription_lease_seconds,
            ),
        )
        subscriptions.start()
        export = ExportWorker(components.service, ExportSettings(chunk_size=settings.export_chunk_size))
        export.start()
    return Workers(checkpointer, worker, subscriptions, export, statistics)


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
