"""Loading the project's data folders (profiles, terminology, mappings, pathways) into the store.

Profiles, code systems, routing tables and pathway definitions are FHIR JSON files in the
repository. At start they are written to the database (update-as-create by their ids), so they
are readable and searchable like any resource. A file whose content is unchanged is not written
again, so restarts add no versions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage import access
from fhir_server.data import data_folders

if TYPE_CHECKING:
    from fhir_server.core.conformance.packages import ConformanceRegistry

log = logging.getLogger(__name__)


@dataclass
class SeedReport:
    written: int = 0
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)


def data_files(folders: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files += sorted(p for p in folder.glob("*.json") if p.is_file())
    return files


def read_data_resources(folders: Iterable[Path]) -> list[dict]:
    """The FHIR resources (with ids, of served types) in the data folders."""
    found = []
    for path in data_files(folders):
        try:
            content = jsonio.loads(path.read_bytes())
        except jsonio.JsonError:
            log.warning("not JSON, skipped: %s", path)
            continue
        if isinstance(content, dict) and content.get("resourceType") in STORABLE_TYPES and content.get("id"):
            found.append(content)
    return found


def _without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "meta"}


def seed(service: FhirService, folders: Iterable[Path] | None = None) -> SeedReport:
    """Write each data resource of the folders whose content differs from the stored version."""
    folders = list(folders) if folders is not None else data_folders()
    return seed_resources(service, read_data_resources(folders))


CONFORMANCE_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "NamingSystem", "ConceptMap", "SearchParameter")


def seed_conformance(service: FhirService, registry: ConformanceRegistry) -> SeedReport:
    """Serve what the validator knows: every loaded IG package's conformance resources, stored like any other."""
    resources = [r for r in registry.all() if r.get("resourceType") in CONFORMANCE_TYPES and r.get("id")]
    return seed_resources(service, resources)


def seed_resources(service: FhirService, resources: Iterable[dict]) -> SeedReport:
    """Write each resource (update-as-create by id) unless the stored version has the same content
    (the server's own work: it reads and writes as :data:`access.SYSTEM`)."""
    report = SeedReport()
    with access.acting_as(access.SYSTEM):
        for resource in resources:
            rtype, rid = resource["resourceType"], resource["id"]
            try:
                current = service.store.read(rtype, rid)
                if current.body is not None and _without_meta(jsonio.loads(current.body)) == _without_meta(resource):
                    report.unchanged += 1
                    continue
            except FhirError:
                pass  # not stored yet, or deleted
            try:
                service.update(rtype, rid, resource)
                report.written += 1
            except FhirError as error:
                first = error.issues[0] if error.issues else None
                report.refused.append(
                    f"{rtype}/{rid}: {first.diagnostics if first else error.status}"
                    + (f" at {first.expression}" if first and first.expression else "")
                )
    for problem in report.refused:
        log.warning("data resource refused: %s", problem)
    log.info(
        "data folders: %s written, %s unchanged, %s refused", report.written, report.unchanged, len(report.refused)
    )
    return report
