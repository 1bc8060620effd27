"""The files of an import, in a dependency-safe order, and their lines read from where an import stopped.

NDJSON files (Bulk Data format, one resource a line) are imported type by type: what others refer to
first (organisations, practitioners, patients, conditions ...), referrals last but for what refers to
them (Tasks, Provenance), so the referral intake finds each referral's patient stored. A folder's
``manifest.json`` (a Bulk Data export manifest: ``output`` entries naming files by ``url``) gives its
own order instead. JSON and XML files (a Bundle or one resource, what ``fhir-server load`` took) follow,
each as one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from fhir_server.core import jsonio

NDJSON_SUFFIXES = (".ndjson", ".jsonl")
BUNDLE_SUFFIXES = (".json", ".xml")
MANIFEST = "manifest.json"

#: What other resources refer to comes first; types not named here go between these and the last ones.
FIRST = (
    "Organization",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
    "EpisodeOfCare",
    "Encounter",
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "MedicationStatement",
    "Procedure",
    "DocumentReference",
    "QuestionnaireResponse",
)
#: Referrals after everything they may name; what names a referral after them.
LAST = ("ServiceRequest", "Task", "Provenance")


@dataclass(frozen=True)
class ImportFile:
    """One file of an import: ``ndjson`` (one resource a line) or ``bundle`` (one Bundle or resource)."""

    path: Path
    kind: str
    resource_type: str | None = None


def type_rank(resource_type: str | None) -> int:
    """Where a type's NDJSON file goes in the import order."""
    if resource_type in FIRST:
        return FIRST.index(resource_type)
    if resource_type in LAST:
        return len(FIRST) + 1 + LAST.index(resource_type)
    return len(FIRST)


def first_type(path: Path) -> str | None:
    """The resourceType of an NDJSON file's first resource (None if it has none or is not JSON)."""
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    found = jsonio.loads(line)
                except jsonio.JsonError:
                    return None
                return found.get("resourceType") if isinstance(found, dict) else None
    return None


def _manifest_files(folder: Path) -> list[Path] | None:
    """The files a folder's Bulk Data manifest lists, in its order (None without a manifest)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = jsonio.loads(path.read_bytes())
    listed = []
    for output in manifest.get("output") or []:
        url = str(output.get("url", ""))
        parsed = urlparse(url)
        name = unquote(parsed.path) if parsed.scheme == "file" else url
        listed.append((folder / name).resolve())
    return listed


def import_files(paths: list[Path]) -> list[ImportFile]:
    """The files ``paths`` name (folders searched recursively), in import order."""
    ndjson: list[Path] = []
    bundles: list[Path] = []
    manifest_order: list[Path] = []
    for path in paths:
        if path.is_dir():
            listed = _manifest_files(path)
            if listed is not None:
                manifest_order += listed
                continue
            for found in sorted(path.rglob("*")):
                if found.suffix.lower() in NDJSON_SUFFIXES:
                    ndjson.append(found)
                elif found.suffix.lower() in BUNDLE_SUFFIXES and found.name != MANIFEST:
                    bundles.append(found)
        elif path.suffix.lower() in NDJSON_SUFFIXES:
            ndjson.append(path)
        else:
            bundles.append(path)
    typed = [ImportFile(p, "ndjson", first_type(p)) for p in ndjson]
    typed.sort(key=lambda f: (type_rank(f.resource_type), str(f.path)))
    in_manifest = [
        ImportFile(p, "ndjson", first_type(p)) if p.suffix.lower() in NDJSON_SUFFIXES else ImportFile(p, "bundle")
        for p in manifest_order
    ]
    return in_manifest + typed + [ImportFile(p, "bundle") for p in bundles]


def count_lines(path: Path) -> int:
    """The lines of an NDJSON file (for the progress bar's total)."""
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


@dataclass
class Line:
    """One line of an NDJSON file: its number (from 1), its bytes, and where the next line starts."""

    number: int
    text: bytes
    next_offset: int


def read_lines(path: Path, line: int, offset: int) -> Iterator[Line]:
    """The lines of ``path`` after the first ``line`` ones (which end at byte ``offset``); blank lines are
    skipped but counted."""
    with path.open("rb") as handle:
        handle.seek(offset)
        number = line
        for text in handle:
            number += 1
            offset += len(text)
            if text.strip():
                yield Line(number, text, offset)
