"""Bulk export jobs: what a kick-off asks (:class:`ExportSpec`), the job rows, and the worker that writes
their NDJSON files.

A job is exported type by type, in id order, a chunk at a time: each chunk's file row and the job's
cursor (type, last id) commit together, under the lease of the process doing the work (fenced: a process
whose lease has passed to another writes nothing). After a restart, or in another process, the job goes
on from its cursor: no resource twice, none left out. Only what the job's owner may see is exported (its
access labels, kept with the job), and only what was there at the job's ``transactionTime``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from uuid import uuid4

from sqlalchemy import delete, insert, select, update

from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.polling import PollingWorker
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import export_files, export_jobs, idx_reference, resources
from fhir_server.core.storage.store import WriteUnit

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class ExportSpec:
    """What is exported: types in order, ``_since``, ``_typeFilter`` queries, the patients (None: all)."""

    types: list[str]
    since: str | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)
    #: Patient-level exports: the patients whose compartments are exported; None for a system export
    patients: list[str] | None = None
    patient_level: bool = False
    labels: list[str] = field(default_factory=list)
    unrestricted: bool = False

    def access(self) -> access.Access:
        return access.Access(frozenset(self.labels), frozenset(), unrestricted=self.unrestricted, name="export")


def start_job(service: FhirService, owner: str, request_url: str, spec: ExportSpec) -> str:
    """Record a new job (its ``transactionTime`` is now); the worker takes it from there."""
    job_id = str(uuid4())
    now = now_iso()
    values = {
        "id": job_id,
        "owner": owner,
        "request": request_url,
        "status": "accepted",
        "spec": jsonio.dumps(asdict(spec)).decode(),
        "transaction_time": now,
        "cursor": '[0, ""]',
        "exported": 0,
        "files": 0,
        "created": now,
    }
    service.store.write(lambda unit: unit.execute(insert(export_jobs).values(**values)))
    return job_id


def read_job(service: FhirService, job_id: str) -> Any | None:
    with service.store.reading() as conn:
        return conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()


def cancel_job(service: FhirService, job_id: str) -> None:
    """Cancel a job and drop its files."""

    def work(unit: WriteUnit) -> None:
        unit.execute(update(export_jobs).where(export_jobs.c.id == job_id).values(status="cancelled"))
        unit.execute(delete(export_files).where(export_files.c.job_id == job_id))

    service.store.write(work)


def job_files(service: FhirService, job_id: str) -> list:
    """(number, type, count) of a job's files, in order."""
    query = (
        select(export_files.c.number, export_files.c.res_type, export_files.c.count)
        .where(export_files.c.job_id == job_id)
        .order_by(export_files.c.number)
    )
    with service.store.reading() as conn:
        return list(conn.execute(query).all())


def file_body(service: FhirService, job_id: str, number: int) -> str | None:
    query = select(export_files.c.body).where(export_files.c.job_id == job_id, export_files.c.number == number)
    with service.store.reading() as conn:
        row = conn.execute(query).first()
    return row[0] if row else None


@dataclass
class ExportSettings:
    poll_seconds: float = 0.5
    chunk_size: int = 1000
    lease_seconds: float = 30.0


class ExportWorker(PollingWorker):
    """Runs export jobs chunk by chunk; safe in many processes at once (a lease per job)."""

    thread_name = "bulk-export"

    def __init__(self, service: FhirService, settings: ExportSettings) -> None:
        self.service = service
        self.store = service.store
        self.settings = settings
        super().__init__(settings.poll_seconds)

    def run_once(self) -> bool:
        """Claim one job and export one chunk of it; False when there was nothing to do."""
        with access.acting_as(access.SYSTEM):
            claimed = self._claim()
        if claimed is None:
            return False
        job, lease = claimed
        spec = ExportSpec(**jsonio.loads(job.spec))
        try:
            with access.acting_as(spec.access()):
                self._chunk(job, spec, lease)
        except Exception as exc:  # a job that cannot go on says why in its status
            log.exception("export %s failed", job.id)
            with access.acting_as(access.SYSTEM):
                self._fenced(job.id, lease, status="error", error=str(exc)[:500], lease_until=None)
        return True

    def _claim(self) -> tuple[Any, str] | None:
        now = now_iso()
        t = export_jobs.c
        due = (t.status == "accepted") & (t.lease_until.is_(None) | (t.lease_until < now))
        with self.store.reading() as conn:
            if conn.execute(select(t.id).where(due).limit(1)).first() is None:
                return None
        lease = (datetime.now(UTC) + timedelta(seconds=self.settings.lease_seconds)).isoformat(timespec="milliseconds")

        def work(unit: WriteUnit) -> object | None:
            query = select(export_jobs).where(due).order_by(t.created).limit(1)
            if not self.store.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            row = unit.execute(query).first()
            if row is not None:
                unit.execute(update(export_jobs).where(t.id == row.id).values(lease_until=lease))
            return row

        row = self.store.write(work)
        return (row, lease) if row is not None else None

    def _chunk(self, job, spec: ExportSpec, lease: str) -> None:  # type: ignore[no-untyped-def]
        index, after = jsonio.loads(job.cursor)
        if index >= len(spec.types):
            with access.acting_as(access.SYSTEM):
                self._fenced(job.id, lease, status="completed", lease_until=None)
            return
        rtype = spec.types[index]
        query = self._query(rtype, spec, job.transaction_time, after)
        with self.store.reading() as conn:
            rows = conn.execute(query.limit(self.settings.chunk_size)).all()
        with access.acting_as(access.SYSTEM):
            done = len(rows) < self.settings.chunk_size  # the type's last chunk: on to the next type
            cursor = [index + 1, ""] if done else [index, rows[-1][0]]
            body = "".join(r[1] + "\n" for r in rows)
            self._fenced(
                job.id,
                lease,
                file=(rtype, len(rows), body) if rows else None,
                cursor=jsonio.dumps(cursor).decode(),
                exported=job.exported + len(rows),
                files=job.files + (1 if rows else 0),
                lease_until=None,
            )

    def _query(self, rtype: str, spec: ExportSpec, transaction_time: str, after: str):  # type: ignore[no-untyped-def]
        r = resources.c
        query = (
            select(r.res_id, r.body)
            .where(r.res_type == rtype, r.deleted.is_(False), r.res_id > after, r.last_updated <= transaction_time)
            .order_by(r.res_id)
        )
        if spec.since:
            query = query.where(r.last_updated >= spec.since)
        visible = access.labelled_condition(rtype, r.res_id)
        if visible is not None:
            query = query.where(visible)
        if spec.patient_level:
            query = query.where(self._in_compartment(rtype, spec.patients))
        filters = spec.type_filters.get(rtype)
        if filters:
            from sqlalchemy import and_, or_

            parsed = [self.service.parser.parse(rtype, parse_qsl(q), strict=True).conditions for q in filters]
            query = query.where(or_(*(and_(*conditions) for conditions in parsed)))
        return query

    @staticmethod
    def _in_compartment(rtype: str, patients: list[str] | None):  # type: ignore[no-untyped-def]
        r = resources.c
        if rtype == "Patient":
            return r.res_id.in_(patients) if patients is not None else r.res_id.is_not(None)
        refs = select(idx_reference.c.res_id).where(
            idx_reference.c.res_type == rtype, idx_reference.c.target_type == "Patient"
        )
        if patients is not None:
            refs = refs.where(idx_reference.c.target_id.in_(patients or [""]))
        return r.res_id.in_(refs)

    def _fenced(self, job_id: str, lease: str, file: tuple[str, int, str] | None = None, **values: object) -> None:
        """Update the job (and add a file) only while this process holds its lease."""

        def work(unit: WriteUnit) -> None:
            t = export_jobs.c
            row = unit.execute(select(t.lease_until, t.status, t.files).where(t.id == job_id)).first()
            if row is None or row.lease_until != lease or row.status != "accepted":
                return  # cancelled, or another process has it now
            if file is not None:
                rtype, count, body = file
                unit.execute(
                    insert(export_files).values(
                        job_id=job_id, number=row.files + 1, res_type=rtype, count=count, body=body
                    )
                )
            unit.execute(update(export_jobs).where(t.id == job_id).values(**values))

        self.store.write(work)
