"""The import: files read batch by batch, each batch one database transaction through the interactions.

Every line is written by the same interactions a REST write uses (``FhirService.update`` for a resource
with an id, keeping it: PUT semantics; ``create`` without one), so it is validated the same way (base R4,
identifiers, claimed profiles), indexed, labelled, and every write policy applies: a referral goes
through the intake and gets its routing Task and Provenance. What a batch stores and the job's new
position commit together (:meth:`Store.batch`); a line that is refused undoes only its own writes (its
savepoint) and is reported; the others of its batch are stored.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from fhir_server.bulk_import.audit import import_audit_event
from fhir_server.bulk_import.jobs import ImportJob, find_job, finish_job, start_job, unfinished_job
from fhir_server.bulk_import.report import ImportSummary, Refusal, RefusalReport
from fhir_server.bulk_import.sources import ImportFile, Line, count_lines, import_files, read_lines
from fhir_server.components import Components
from fhir_server.config import Settings
from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.storage import access, statistics
from fhir_server.data import data_folders


@dataclass
class ImportOptions:
    #: Lines per database transaction.
    batch_size: int = 500
    #: Where the refusals go (NDJSON, appended); None: only the summary names them.
    report: Path | None = None
    progress: bool = True
    #: Who runs the import (the AuditEvent's agent).
    operator: str = ""


class CannotImport(Exception):
    """An import that cannot start (no such job, no files)."""


class Importer:
    """Runs import jobs against built components."""

    def __init__(self, components: Components, options: ImportOptions | None = None) -> None:
        self.components = components
        self.service = components.service
        self.store = components.store
        self.options = options or ImportOptions()
        self.processor = BundleProcessor(self.service, max_entries=100_000)
        #: lines of the current run left as they were (their stored version has the same content)
        self.unchanged = 0

    def run(self, paths: list[Path], *, resume: str | None = None) -> ImportSummary:
        """Import ``paths`` (files or folders), or go on with the job ``resume``; an unfinished job of the same
        files goes on where it stopped."""
        with access.acting_as(access.SYSTEM):  # the operator imports: the server's own work
            job, resumed = self._job(paths, resume)
            summary = ImportSummary(job.id, len(job.files), report_path=self.options.report)
            if resumed:
                summary.resumed_at = f"file {job.file_index + 1} of {len(job.files)}, line {job.line}"
            report = RefusalReport(self.options.report)
            self.unchanged = 0
            started, cpu = time.monotonic(), time.process_time()
            before = (job.stored, dict(job.counts), job.refused)
            status = 500
            try:
                with self._progress(job) as progress:
                    for index in range(job.file_index, len(job.files)):
                        if index != job.file_index:
                            job.file_index, job.line, job.byte_offset = index, 0, 0
                        self._import_file(job, job.files[index], summary, report, progress)
                finish_job(self.store, job)
                statistics.refresh(self.store)  # the planner sees the imported volume at once
                status = 200 if job.refused == before[2] else 422
            finally:
                report.close()
                summary.seconds = time.monotonic() - started
                summary.cpu_seconds = time.process_time() - cpu
                summary.stored = job.stored - before[0]
                summary.refused = job.refused - before[2]
                summary.by_type = {t: n - before[1].get(t, 0) for t, n in job.counts.items() if n - before[1].get(t, 0)}
                summary.refusals = report.shown
                summary.unchanged = self.unchanged
                self._audit(job, summary, status)
        return summary

    def _job(self, paths: list[Path], resume: str | None) -> tuple[ImportJob, bool]:
        if resume:
            job = find_job(self.store, resume)
            if job is None:
                raise CannotImport(f"no import job {resume}")
            return job, True
        files = import_files(paths)
        if not files:
            raise CannotImport("no NDJSON, JSON or XML files in " + ", ".join(map(str, paths)))
        job = unfinished_job(self.store, files)
        return (job, True) if job is not None else (start_job(self.store, files), False)

    @contextmanager
    def _progress(self, job: ImportJob) -> Iterator[tqdm]:
        sizes = [count_lines(f.path) if f.kind == "ndjson" else 1 for f in job.files]
        done = sum(sizes[: job.file_index]) + job.line
        with tqdm(
            total=sum(sizes),
            initial=done,
            desc="importing",
            unit=" resources",
            disable=not self.options.progress,
            smoothing=0.1,
        ) as bar:
            yield bar

    # -- files --------------------------------------------------------------------------------

    def _import_file(
        self, job: ImportJob, file: ImportFile, summary: ImportSummary, report: RefusalReport, progress: tqdm
    ) -> None:
        if file.kind == "bundle":
            if job.line == 0:  # not stored yet
                self._store_batch(job, file, [Line(1, b"", file.path.stat().st_size)], summary, report, progress)
            return
        lines = read_lines(file.path, job.line, job.byte_offset)
        while chunk := list(islice(lines, self.options.batch_size)):
            self._store_batch(job, file, chunk, summary, report, progress)

    def _store_batch(
        self,
        job: ImportJob,
        file: ImportFile,
        chunk: list[Line],
        summary: ImportSummary,
        report: RefusalReport,
        progress: tqdm,
    ) -> None:
        """Store ``chunk`` and the job's new position in one database transaction; then report its refusals."""
        refusals: list[Refusal] = []
        first = job.line
        with self.store.batch() as batch:
            if file.kind == "bundle":
                refusals += filter(None, [self._write_bundle(file)])
            else:
                refusals += self._write_lines(file, chunk)
            job.count(list(dict.fromkeys(batch.written)))
            job.refused += len(refusals)
            job.line, job.byte_offset = chunk[-1].number, chunk[-1].next_offset
            self.store.write(job.save)
        report.add(refusals)
        summary.lines += len(chunk)
        progress.set_postfix(stored=job.stored, refused=job.refused, refresh=False)
        progress.update(job.line - first)

    def _write_lines(self, file: ImportFile, chunk: list[Line]) -> list[Refusal]:
        """Write the resources of NDJSON lines (their ids kept); the refusals of those not stored.

        Runs of lines no write policy claims are written together (:meth:`FhirService.update_many`: one write
        unit); a line a policy claims (a referral) is written on its own through the policy."""
        refusals: list[Refusal] = []
        parsed = [(line, resource) for line in chunk if (resource := self._parse(file, line, refusals)) is not None]
        claimed = [(line, resource) for line, resource in parsed if self.service.policy_for(resource) is not None]
        # a resource's first line in the chunk is compared with what was stored before (one look-up for all of
        # them), a later line of the same resource with what the chunk wrote
        firsts = _first_lines(claimed)
        compared = self._changed([(line, r) for line, r in claimed if line.number in firsts], covered=True)
        changed = {line.number for line, _ in compared}
        plain: list[tuple[Line, dict]] = []
        for line, resource in parsed:
            if self.service.policy_for(resource) is None:
                plain.append((line, resource))
                continue
            refusals += self._write_plain(file, plain)
            plain = []
            if line.number in firsts:
                if line.number not in changed:
                    continue
            elif not self._changed([(line, resource)], covered=True):
                continue
            rid = resource.get("id")
            try:
                if isinstance(rid, str):
                    self.service.update(str(resource.get("resourceType")), rid, resource)
                else:
                    self.service.create(resource)
            except FhirError as error:
                refusals.append(_refusal(file, line, resource, error))
        refusals += self._write_plain(file, plain)
        return sorted(refusals, key=lambda r: r.line or 0)

    def _write_plain(self, file: ImportFile, lines: list[tuple[Line, dict]]) -> list[Refusal]:
        """Write lines no policy claims together; a resource whose stored version has the same content is
        left as it is (a re-run of an import adds no versions)."""
        lines = self._changed(lines)
        answers = self.service.update_many([resource for _, resource in lines]) if lines else []
        return [
            _refusal(file, line, resource, answer)
            for (line, resource), answer in zip(lines, answers, strict=True)
            if isinstance(answer, FhirError)
        ]

    def _changed(self, lines: list[tuple[Line, dict]], *, covered: bool = False) -> list[tuple[Line, dict]]:
        """The lines whose resource differs from its stored version (or is not stored); counts the others
        (one look-up for all of them).

        ``covered``: for lines a write policy writes (a referral: the intake adds its stamps), a stored version
        that holds everything the line says counts as the same: a re-run stores no new version of it, and
        sends no update to the region it was routed to."""
        keys = [_key(resource) for _, resource in lines]
        with self.store.reading() as conn:  # the batch's own transaction
            stored = self.store.load_many(conn, [k for k in keys if k is not None])
        changed = []
        for (line, resource), key in zip(lines, keys, strict=True):
            current = stored.get(key) if key is not None else None
            if current is not None and current.body and _same(jsonio.loads(current.body), resource, covered):
                self.unchanged += 1
            else:
                changed.append((line, resource))
        return changed

    @staticmethod
    def _parse(file: ImportFile, line: Line, refusals: list[Refusal]) -> dict | None:
        """A line's resource; None (and its refusal added) when it is not a JSON object."""
        try:
            resource = jsonio.loads(line.text)
        except jsonio.JsonError as error:
            issue = Issue("error", "structure", f"not JSON: {error}")
            refusals.append(Refusal(str(file.path), line.number, None, None, [issue]))
            return None
        if not isinstance(resource, dict):
            issue = Issue("error", "structure", "the line is not a JSON object (a FHIR resource)")
            refusals.append(Refusal(str(file.path), line.number, None, None, [issue]))
            return None
        return resource

    def _write_bundle(self, file: ImportFile) -> Refusal | None:
        """Run a JSON or XML file (a Bundle, or one resource) as one transaction; the refusal if refused."""
        from fhir_server.api.formats import xml_to_json

        try:
            data = file.path.read_bytes()
            content = xml_to_json(data) if file.path.suffix.lower() == ".xml" else jsonio.loads(data)
            self.processor.process(as_transaction(content))
        except FhirError as error:
            return Refusal(str(file.path), None, None, None, error.issues)
        except (OSError, jsonio.JsonError) as error:
            return Refusal(str(file.path), None, None, None, [Issue("error", "structure", str(error))])
        return None

    def _audit(self, job: ImportJob, summary: ImportSummary, status: int) -> None:
        """One AuditEvent for this run of the import: who, which files, how many stored and refused."""
        operator = self.options.operator or getpass.getuser()
        event = import_audit_event(job, summary, status, operator)
        self.store.write(lambda unit: unit.put(event, fresh_id=True, defer_index=True))


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


def _first_lines(lines: list[tuple[Line, dict]]) -> set[int]:
    """Numbers of the lines that are their resource's first in ``lines`` (a line without an id is its own)."""
    seen: set[object] = set()
    firsts = set()
    for line, resource in lines:
        key = _key(resource) or line.number
        if key not in seen:
            seen.add(key)
            firsts.add(line.number)
    return firsts


def _key(resource: dict) -> tuple[str, str] | None:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    return (rtype, rid) if isinstance(rtype, str) and isinstance(rid, str) else None


#: What the server sets in ``meta`` on every write (not part of what a client sent).
_SERVER_META = ("versionId", "lastUpdated")


def _content(resource: dict) -> dict:
    """A resource without what the server stamps on a write."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    return {**{k: v for k, v in resource.items() if k != "meta"}, **({"meta": meta} if meta else {})}


def _same(stored: dict, resource: dict, covered: bool) -> bool:
    if not covered:
        return _content(stored) == _content(resource)
    return _covers(_content(stored), _content(resource))


def _covers(stored: object, sent: object) -> bool:
    """True when ``stored`` holds everything ``sent`` says: the same values, objects with at least its
    members, arrays that start with its items."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(k in stored and _covers(stored[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return (
            isinstance(stored, list)
            and len(stored) >= len(sent)
            and all(_covers(a, b) for a, b in zip(stored, sent, strict=False))
        )
    return stored == sent


def _refusal(file: ImportFile, line: Line, resource: dict, error: FhirError) -> Refusal:
    rtype, rid = resource.get("resourceType"), resource.get("id")
    return Refusal(str(file.path), line.number, _text(rtype), _text(rid), error.issues)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def import_paths(
    paths: list[Path], settings: Settings, options: ImportOptions | None = None, *, resume: str | None = None
) -> ImportSummary:
    """Open the database of ``settings``, store the data folders (the regions' organisations, profiles: as
    ``serve`` does at start, so the referrals route to stored owners), and import ``paths``."""
    from fhir_server.components import build_server, start_workers
    from fhir_server.core.conformance.seed import seed, seed_conformance

    server = build_server(settings)
    workers = start_workers(server, delivery=False)
    try:
        seed(server.service, data_folders(settings.data_dir))
        seed_conformance(server.service, server.conformance)
        return Importer(server, options).run(paths, resume=resume)
    finally:
        workers.stop()
        server.db.dispose()
