"""Build a FHIR package (npm-style ``.tgz``) of the project's conformance resources.

The package holds ``package/package.json``, ``package/.index.json`` and one JSON file per resource:
the project's profiles and extension definitions (with snapshots), value sets, code systems, naming
systems, concept maps, and the pathway PlanDefinitions and ActivityDefinitions. IG tooling, validators
and this server's own package loader read it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.core.conformance.seed import read_data_resources
from fhir_server.core.resource_types import FHIR_VERSION
from fhir_server.data import data_folders
from fhir_server.naming import BASE

PACKAGE_NAME = "no.referral-hub.fhir"
PACKAGE_TYPES = frozenset(
    {
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "NamingSystem",
        "ConceptMap",
        "PlanDefinition",
        "ActivityDefinition",
        "SearchParameter",
        "OperationDefinition",
    }
)


@dataclass
class BuiltPackage:
    path: Path
    files: int


def _index_entry(filename: str, resource: dict) -> dict:
    entry = {"filename": filename, "resourceType": resource["resourceType"], "id": resource["id"]}
    for key in ("url", "version", "kind", "type"):
        if key in resource:
            entry[key] = resource[key]
    return entry


def build_package(out: Path, version: str = "0.1.0", folders: list[Path] | None = None) -> BuiltPackage:
    """Write the package to ``out`` (a .tgz) and return where it is and how many resources it holds.

    Raises FileNotFoundError when the folders hold no conformance resource (a package of nothing is an error).
    """
    folders = folders or data_folders()
    resources = [r for r in read_data_resources(folders) if r["resourceType"] in PACKAGE_TYPES]
    if not resources:
        raise FileNotFoundError(f"no conformance resources in {', '.join(map(str, folders))}: nothing to package")
    manifest = {
        "name": PACKAGE_NAME,
        "version": version,
        "description": "Conformance resources of the Norwegian Referral Hub: referral profiles, terminology, "
        "national pathways for mental health and substance use",
        "fhirVersions": [FHIR_VERSION],
        "type": "fhir.ig",
        "license": "CC0-1.0",
        "author": "Norwegian Referral Hub project",
        "canonical": BASE,
        "dependencies": {"hl7.fhir.r4.core": "4.0.1", "hl7.fhir.no.basis": "2.2.2"},
    }
    files: dict[str, bytes] = {"package/package.json": json.dumps(manifest, indent=2).encode()}
    index = []
    for resource in resources:
        filename = f"{resource['resourceType']}-{resource['id']}.json"
        files[f"package/{filename}"] = jsonio.dumps(resource)
        index.append(_index_entry(filename, resource))
    files["package/.index.json"] = json.dumps({"index-version": 1, "files": index}, indent=2).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return BuiltPackage(out, len(resources))
