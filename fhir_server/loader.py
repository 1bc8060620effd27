"""Bulk loading of files into the database, each file as one transaction, with progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fhir_server.components import build_server, start_workers
from fhir_server.config import Settings
from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access


@dataclass
class LoadSummary:
    files: int = 0
    loaded: int = 0
    refused: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{self.files} file(s): {self.loaded} resource(s) loaded, {self.refused} file(s) refused"]
        lines += [f"  {rtype}: {n}" for rtype, n in sorted(self.by_type.items())]
        lines += [f"  refused: {p}" for p in self.problems[:50]]
        return "\n".join(lines)


def as_transaction(content: dict) -> dict:
    """A Bundle to run as a transaction: transactions as they are, anything else wrapped in PUT/POST entries."""
    if content.get("resourceType") == "Bundle" and content.get("type") in ("transaction", "batch"):
        return {**content, "type": "transaction"}
    if content.get("resourceType") == "Bundle" and content.get("type") == "collection":
        resources = [e["resource"] for e in content.get("entry", []) if isinstance(e, dict) and e.get("resource")]
    else:
        resources = [content]
    entries = []
    for resource in resources:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": rtype}
        entries.append({"resource": resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in (".json", ".xml"))
        else:
            found.append(path)
    return found


def load_paths(paths: list[Path], settings: Settings, *, progress: bool = True) -> LoadSummary:
    from fhir_server.api.formats import xml_to_json

    server = build_server(settings)
    workers = start_workers(server, delivery=False)
    processor = BundleProcessor(server.service, max_entries=100_000)
    summary = LoadSummary()
    files = _files(paths)
    with access.acting_as(access.SYSTEM):  # the operator loads data: the server's own work
        for path in tqdm(files, desc="loading", unit="file", disable=not progress):
            summary.files += 1
            try:
                data = path.read_bytes()
                content = xml_to_json(data) if path.suffix.lower() == ".xml" else jsonio.loads(data)
                result = processor.process(as_transaction(content))
            except FhirError as error:
                summary.refused += 1
                first = error.issues[0] if error.issues else None
                where = f" at {first.expression}" if first and first.expression else ""
                summary.problems.append(f"{path.name}: {first.diagnostics if first else error.status}{where}")
                continue
            except (OSError, jsonio.JsonError) as error:
                summary.refused += 1
                summary.problems.append(f"{path.name}: {error}")
                continue
            for entry in result["entry"]:  # what each entry stored, and what a write policy stored with it
                related = [link.get("url", "") for link in entry.get("link", []) if link.get("relation") == "related"]
                for location in (entry.get("response", {}).get("location", ""), *related):
                    if location:
                        rtype = location.split("/")[0]
                        summary.by_type[rtype] = summary.by_type.get(rtype, 0) + 1
                        summary.loaded += 1
    workers.stop()
    server.db.dispose()
    return summary
