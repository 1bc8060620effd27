"""Import jobs: the files of an import and how far it got, recorded with each batch it stores.

The job's row is updated in the database transaction of every batch (:meth:`Store.batch`), so after a
crash (``kill -9``) the row says exactly which lines are stored: a restarted import (the same command, or
``--resume JOB``) goes on from there, and nothing is stored twice. The same files again after a completed
import start a new job (PUT semantics: the resources keep their ids, the referrals their routing Tasks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

from sqlalchemy import insert, select, update

from fhir_server.bulk_import.sources import ImportFile
from fhir_server.core import jsonio
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.storage.schema import import_jobs
from fhir_server.core.storage.store import Store, WriteUnit


@dataclass
class ImportJob:
    """A job's row: its files, its position (file, lines committed, byte offset) and its counts."""

    id: str
    files: list[ImportFile]
    file_index: int = 0
    line: int = 0
    byte_offset: int = 0
    stored: int = 0
    refused: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    status: str = "running"

    def count(self, written: list[tuple[str, str]]) -> None:
        for rtype, _ in written:
            self.counts[rtype] = self.counts.get(rtype, 0) + 1
        self.stored += len(written)

    def _values(self) -> dict:
        return {
            "status": self.status,
            "file_index": self.file_index,
            "line": self.line,
            "byte_offset": self.byte_offset,
            "stored": self.stored,
            "refused": self.refused,
            "counts": jsonio.dumps(self.counts).decode(),
            "updated": now_instant(),
        }

    def save(self, unit: WriteUnit) -> None:
        """Record the position and counts (inside the batch's transaction)."""
        unit.execute(update(import_jobs).where(import_jobs.c.id == self.id).values(**self._values()))


def fingerprint(files: list[ImportFile]) -> str:
    """The files (resolved paths and sizes, in order): the same command names the same job."""
    text = "\n".join(f"{f.path.resolve()}\t{f.path.stat().st_size}" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()


def _files_json(files: list[ImportFile]) -> str:
    return jsonio.dumps([[str(f.path.resolve()), f.kind, f.resource_type] for f in files]).decode()


def _job(row) -> ImportJob:  # type: ignore[no-untyped-def]
    files = [ImportFile(Path(p), kind, rtype) for p, kind, rtype in jsonio.loads(row.files)]
    return ImportJob(
        row.id,
        files,
        row.file_index,
        row.line,
        row.byte_offset,
        row.stored,
        row.refused,
        jsonio.loads(row.counts),
        row.status,
    )


def find_job(store: Store, job_id: str) -> ImportJob | None:
    with store.reading() as conn:
        row = conn.execute(select(import_jobs).where(import_jobs.c.id == job_id)).first()
    return _job(row) if row is not None else None


def unfinished_job(store: Store, files: list[ImportFile]) -> ImportJob | None:
    """The running job of these very files, if an earlier run of the same command stopped midway."""
    return latest_job(store, files, "running")


def latest_job(store: Store, files: list[ImportFile], status: str) -> ImportJob | None:
    """The newest job of these very files in ``status`` (running, completed), if any."""
    query = (
        select(import_jobs)
        .where(import_jobs.c.fingerprint == fingerprint(files), import_jobs.c.status == status)
        .order_by(import_jobs.c.created.desc())
    )
    with store.reading() as conn:
        row = conn.execute(query).first()
    return _job(row) if row is not None else None


def start_job(store: Store, files: list[ImportFile]) -> ImportJob:
    job = ImportJob(str(uuid4()), files)
    now = now_instant()
    values = {
        "id": job.id,
        "fingerprint": fingerprint(files),
        "files": _files_json(files),
        "created": now,
        **job._values(),
    }
    store.write(lambda unit: unit.execute(insert(import_jobs).values(**values)))
    return job


def finish_job(store: Store, job: ImportJob) -> None:
    job.status = "completed"
    store.write(job.save)
