"""The resource repository: versioned create/read/update/delete/history over SQLAlchemy Core.

All writes of one request happen in one :class:`WriteUnit` (one database transaction): the
resource version, the current row and the search index rows commit together or not at all.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from fhir_server.core import jsonio
from fhir_server.core.db import Database
from fhir_server.core.issues import FhirError, not_found
from fhir_server.core.schema import INDEX_TABLES, resource_versions, resources
from fhir_server.core.search.index import index_rows
from fhir_server.core.search.parameters import SearchRegistry
from fhir_server.core.search.values import now_instant

log = logging.getLogger(__name__)

T = TypeVar("T")

_INDEX_COLUMNS = {name: [c.name for c in table.columns] for name, table in INDEX_TABLES.items()}


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: its JSON bytes and its version facts."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    body: bytes | None
    deleted: bool = False
    method: str | None = None
    seq: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


def new_id() -> str:
    return str(uuid.uuid4())


def _row_to_stored(row: Any, method: str | None = None) -> StoredResource:
    body = row.body.encode() if isinstance(row.body, str) else row.body
    return StoredResource(
        row.res_type,
        row.res_id,
        row.version_id,
        row.last_updated,
        body,
        bool(row.deleted),
        method or getattr(row, "method", None),
        row.seq,
    )


class WriteUnit:
    """The writes of one request inside one database transaction."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn

    # -- locking ----------------------------------------------------------------------------

    def lock_conditional(self, resource_type: str) -> None:
        """Serialise conditional operations on a type (PostgreSQL; SQLite already holds the write lock)."""
        if not self.store.db.is_sqlite:
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("cond:" + resource_type))))

    def current(self, resource_type: str, resource_id: str, *, for_update: bool = True) -> Any:
        query = select(resources).where(resources.c.res_type == resource_type, resources.c.res_id == resource_id)
        if for_update and not self.store.db.is_sqlite:
            query = query.with_for_update()
        return self.conn.execute(query).first()

    # -- writes -----------------------------------------------------------------------------

    def put(
        self,
        resource: dict,
        *,
        resource_id: str | None = None,
        if_match: int | None = None,
        must_exist: bool = False,
        must_not_exist: bool = False,
    ) -> tuple[StoredResource, bool]:
        """Create or update ``resource``; returns the stored version and whether it was created.

        ``if_match`` refuses with 412 unless the current version is that one;
        ``must_not_exist`` refuses with 409 when the id is taken (create with a server id never collides).
        """
        resource_type = resource["resourceType"]
        resource_id = resource_id or resource.get("id") or new_id()
        row = self.current(resource_type, resource_id)
        exists = row is not None and not row.deleted
        if must_not_exist and row is not None:
            raise FhirError.single(409, "duplicate", f"{resource_type}/{resource_id} already exists")
        if must_exist and not exists:
            raise not_found(resource_type, resource_id)
        if if_match is not None:
            current_version = row.version_id if exists else None
            if current_version != if_match:
                raise FhirError.single(
                    412,
                    "conflict",
                    f"version conflict: If-Match asked for version {if_match} of {resource_type}/{resource_id}, "
                    f"the current version is {current_version if current_version is not None else 'none'}",
                )
        version_id = (row.version_id + 1) if row is not None else 1
        stored = self._write_version(resource, resource_type, resource_id, version_id, "PUT" if row else "POST")
        if row is None:
            self.conn.execute(insert(resources).values(**self._current_values(stored)))
        else:
            self.conn.execute(
                update(resources)
                .where(resources.c.res_type == resource_type, resources.c.res_id == resource_id)
                .values(**self._current_values(stored))
            )
            self._delete_index(resource_type, resource_id)
        self._insert_index(resource_type, resource_id, resource)
        return stored, not exists

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Mark a resource deleted (a new version without body); None when there was nothing to delete."""
        row = self.current(resource_type, resource_id)
        if row is None or row.deleted:
            return None
        stored = self._write_version(None, resource_type, resource_id, row.version_id + 1, "DELETE")
        self.conn.execute(
            update(resources)
            .where(resources.c.res_type == resource_type, resources.c.res_id == resource_id)
            .values(**self._current_values(stored))
        )
        self._delete_index(resource_type, resource_id)
        return stored

    def _write_version(
        self, resource: dict | None, resource_type: str, resource_id: str, version_id: int, method: str
    ) -> StoredResource:
        last_updated = now_instant()
        body: bytes | None = None
        if resource is not None:
            resource["id"] = resource_id
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version_id)
            meta["lastUpdated"] = last_updated
            resource["meta"] = meta
            body = jsonio.dumps(resource)
        result = self.conn.execute(
            insert(resource_versions).values(
                res_type=resource_type,
                res_id=resource_id,
                version_id=version_id,
                last_updated=last_updated,
                method=method,
                deleted=resource is None,
                body=body.decode() if body is not None else None,
            )
        )
        seq = result.inserted_primary_key[0]
        return StoredResource(resource_type, resource_id, version_id, last_updated, body, resource is None, method, seq)

    @staticmethod
    def _current_values(stored: StoredResource) -> dict:
        return {
            "res_type": stored.resource_type,
            "res_id": stored.id,
            "version_id": stored.version_id,
            "seq": stored.seq,
            "last_updated": stored.last_updated,
            "deleted": stored.deleted,
            "body": stored.body.decode() if stored.body is not None else None,
        }

    def _insert_index(self, resource_type: str, resource_id: str, resource: dict) -> None:
        for kind, rows in index_rows(self.store.registry, resource).items():
            columns = _INDEX_COLUMNS[kind]
            full = [
                {c: row.get(c) for c in columns} | {"res_type": resource_type, "res_id": resource_id} for row in rows
            ]
            self.conn.execute(insert(INDEX_TABLES[kind]), full)

    def _delete_index(self, resource_type: str, resource_id: str) -> None:
        for table in INDEX_TABLES.values():
            self.conn.execute(delete(table).where(table.c.res_type == resource_type, table.c.res_id == resource_id))


class Store:
    """Reads and transactional writes of versioned resources."""

    def __init__(self, db: Database, registry: SearchRegistry) -> None:
        self.db = db
        self.registry = registry

    # -- writes -----------------------------------------------------------------------------

    def write(self, work: Callable[[WriteUnit], T], *, attempts: int = 5) -> T:
        """Run ``work`` in one write transaction; retried on a lost race (unique key or deadlock)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.db.write.begin() as conn:
                    return work(WriteUnit(self, conn))
            except (IntegrityError, OperationalError, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and not _retryable(exc) or attempt == attempts:
                    raise
                log.info("write conflict, retrying (attempt %s): %s", attempt, type(exc.orig).__name__)
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    # -- reads ------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot for a search and its includes)."""
        with self.db.read.begin() as conn:
            yield conn

    def read(self, resource_type: str, resource_id: str, conn: Connection | None = None) -> StoredResource:
        """The current version; 404 if unknown, 410 if deleted."""
        query = select(resources).where(resources.c.res_type == resource_type, resources.c.res_id == resource_id)
        row = self._first(query, conn)
        if row is None:
            raise not_found(resource_type, resource_id)
        stored = _row_to_stored(row)
        if stored.deleted:
            raise FhirError(
                410,
                [_gone_issue(resource_type, resource_id)],
                headers={"ETag": stored.etag, "Last-Modified": stored.last_updated},
            )
        return stored

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        if not version_id.isdigit():
            raise not_found(resource_type, f"{resource_id}/_history/{version_id}")
        query = select(resource_versions).where(
            resource_versions.c.res_type == resource_type,
            resource_versions.c.res_id == resource_id,
            resource_versions.c.version_id == int(version_id),
        )
        row = self._first(query, None)
        if row is None:
            raise not_found(resource_type, f"{resource_id}/_history/{version_id}")
        stored = _row_to_stored(row)
        if stored.deleted:
            raise FhirError(410, [_gone_issue(resource_type, resource_id, version_id)])
        return stored

    def exists(self, resource_type: str, resource_id: str) -> bool:
        query = select(resources.c.deleted).where(
            resources.c.res_type == resource_type, resources.c.res_id == resource_id
        )
        row = self._first(query, None)
        return row is not None and not row.deleted

    def history(
        self,
        resource_type: str | None = None,
        resource_id: str | None = None,
        *,
        since: str | None = None,
        at_most: int = 100,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """Versions newest first, and how many there are in all."""
        conditions = []
        if resource_type:
            conditions.append(resource_versions.c.res_type == resource_type)
        if resource_id:
            conditions.append(resource_versions.c.res_id == resource_id)
        if since:
            conditions.append(resource_versions.c.last_updated >= since)
        where = and_(*conditions) if conditions else None
        query = select(resource_versions).order_by(resource_versions.c.seq.desc()).limit(at_most).offset(offset)
        count = select(func.count()).select_from(resource_versions)
        if where is not None:
            query, count = query.where(where), count.where(where)
        with self.reading() as conn:
            rows = conn.execute(query).all()
            total = conn.execute(count).scalar_one()
        return [_row_to_stored(r) for r in rows], total

    def load_many(self, conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        """Current, not deleted versions for (type, id) keys."""
        found: dict[tuple[str, str], StoredResource] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                rows = conn.execute(
                    select(resources).where(
                        resources.c.res_type == rtype, resources.c.res_id.in_(chunk), resources.c.deleted.is_(False)
                    )
                ).all()
                for row in rows:
                    found[(row.res_type, row.res_id)] = _row_to_stored(row)
        return found

    def _first(self, query: Any, conn: Connection | None) -> Any:
        if conn is not None:
            return conn.execute(query).first()
        with self.reading() as c:
            return c.execute(query).first()


def _gone_issue(resource_type: str, resource_id: str, version: str | None = None):  # type: ignore[no-untyped-def]
    from fhir_server.core.issues import Issue

    what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version else "")
    return Issue("error", "deleted", f"Resource {what} has been deleted", None, f"Ressursen {what} er slettet")


def _retryable(exc: DBAPIError) -> bool:
    """Unique-key collisions, deadlocks, serialisation failures and SQLite 'database is locked'."""
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01", "23505") or "locked" in text or "busy" in text
