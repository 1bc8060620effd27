"""The resource repository: versioned create/read/update/delete/history over SQLAlchemy Core.

All writes of one request happen in one :class:`WriteUnit` (one database transaction): the
resource version, the current row and the search index rows commit together or not at all.
The store is dialect-neutral; what differs between SQLite and PostgreSQL is its
:class:`~fhir_server.core.storage.dialect.Dialect` (:mod:`.sqlite`, :mod:`.postgres`).
Every read, search, match and history filters by the caller's access
(:mod:`fhir_server.core.storage.access`), which must be set: the server's own work uses ``SYSTEM``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.indexing.rows import IndexMatch
from fhir_server.core.issues import FhirError, not_found
from fhir_server.core.storage import access
from fhir_server.core.storage.combo_index import ensure_combo_rows
from fhir_server.core.storage.db import Database
from fhir_server.core.storage.dialect import Dialect, dialect_for
from fhir_server.core.storage.group_commit import GroupCommit
from fhir_server.core.storage.matches import MatchText, is_common, match_query
from fhir_server.core.storage.reads import FastReads, execute_sql, fetch_all
from fhir_server.core.storage.records import CurrentRow, StoredResource, new_id, row_to_stored
from fhir_server.core.storage.schema import resource_versions, resources
from fhir_server.core.storage.write_unit import WriteUnit

__all__ = ["CurrentRow", "Store", "StoredResource", "WriteUnit", "new_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Batch:
    """An open batch (:meth:`Store.batch`): its transaction's connection, and what its writes stored so far."""

    conn: Connection
    #: (type, id) of every resource a write of the batch put or deleted (those of failed writes left out)
    written: list[tuple[str, str]] = field(default_factory=list)


#: The batch the writes of this context join (None: each write is its own transaction).
_batch: ContextVar[Batch | None] = ContextVar("store_batch", default=None)


class Store:
    """Reads and transactional writes of versioned resources."""

    def __init__(self, db: Database, registry: SearchRegistry) -> None:
        self.db = db
        self.registry = registry
        #: What differs between the databases (sqlite.py, postgres.py).
        self.dialect: Dialect = dialect_for(db)
        #: SQLite: concurrent writers of this process share commits (see group_commit.py); else None.
        self.group_commit: GroupCommit | None = getattr(self.dialect, "group_commit", None)
        self.fast = FastReads(db, self.dialect)
        #: Called with (unit, resource) after each resource is put, inside its transaction (domain rules
        #: that add access labels, e.g. a referral becoming visible to the region its Task is owned by).
        self.write_hooks: list[Callable[[WriteUnit, dict], None]] = []
        self._match_text = MatchText(self.dialect)
        mark = self.dialect.mark
        self.current_sql = f"SELECT version_id, deleted FROM resources WHERE res_type = {mark} AND res_id = {mark}"
        with access.acting_as(access.SYSTEM):
            ensure_combo_rows(self)  # resources stored before a combo index of the registry get its rows

    # -- writes -----------------------------------------------------------------------------

    def write(self, work: Callable[[WriteUnit], T], *, attempts: int = 5) -> T:
        """Run ``work`` in one write transaction; retried on a lost race (unique key or deadlock)."""

        def run(conn: Connection) -> T:
            unit = WriteUnit(self, conn)
            result = work(unit)
            unit.finish()
            return result

        batch = _batch.get()
        if batch is not None:  # one savepoint in the batch's transaction: a failure undoes this work only
            with _savepoint(batch.conn):
                unit = WriteUnit(self, batch.conn)
                result = work(unit)
                unit.finish()
            batch.written.extend(unit.written_keys())
            return result
        for attempt in range(1, attempts + 1):
            try:
                return self.dialect.run_write(run)
            except (IntegrityError, OperationalError, DBAPIError) as exc:
                if (isinstance(exc, DBAPIError) and not _retryable(exc)) or attempt == attempts:
                    raise
                log.info("write conflict, retrying (attempt %s): %s", attempt, type(exc.orig).__name__)
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Many writes, one database transaction (bulk import): every :meth:`write` of this context inside
        the block runs in a savepoint of one transaction, committed when the block ends (rolled back when it
        raises). A write that fails undoes only itself. The store's reads in this context read the batch's
        transaction (they see its writes); other connections see them after the commit. On SQLite the batch
        holds the write turn (the gate) throughout."""
        if _batch.get() is not None:
            raise RuntimeError("a batch is already open in this context")
        gate = self.db.gate
        if gate is not None:
            gate.acquire()
        try:
            with self.db.write.begin() as conn:
                batch = Batch(conn)
                token = _batch.set(batch)
                try:
                    yield batch
                finally:
                    _batch.reset(token)
        finally:
            if gate is not None:
                gate.release()

    # -- reads ------------------------------------------------------------------------------

    def match_ids(
        self,
        resource_type: str,
        matches: list[IndexMatch],
        *,
        unit: WriteUnit | None = None,
        limit: int | None = None,
        ordered: bool = True,
    ) -> list[str]:
        """Ids of current resources meeting every plain condition, in search order (last updated, then id).

        The same rows, in the same order, as the general search of those parameters; without its
        statement building: prepared SQL text on a raw connection, unless the caller's access filters.
        On SQLite the text also fixes the plan (see :class:`.matches.MatchText`). ``ordered=False`` (for callers
        that only count, up to ``limit``) lets PostgreSQL stop at ``limit`` rows instead of sorting every
        match; SQLite keeps its planned order."""
        by_hand = self.dialect.plans_by_hand
        ordered = ordered or by_hand
        run = unit.rows if unit is not None else self._batch_rows() or self.fast.rows
        scan = limit is not None and by_hand and all(is_common(run, resource_type, m) for m in matches)
        visible = access.labelled_condition(resource_type, resources.c.res_id)
        if visible is not None:  # the caller sees labelled resources only, as in every search
            sort_apart = by_hand and not scan
            query = match_query(resource_type, matches, limit, sort_apart=sort_apart).where(visible)
            query = query if ordered else query.order_by(None)
            if unit is not None:
                return list(unit.execute(query).scalars())
            with self.reading() as conn:
                return list(conn.execute(query).scalars())
        params: list[Any] = [resource_type, False]
        for match in matches:
            params += [resource_type, match.param, *(value for _, value in match.values)]
        return [row[0] for row in run(self._match_text.text(matches, limit, scan, ordered), params)]

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot for a search and its includes); inside a batch, the
        batch's own transaction (its writes seen)."""
        batch = _batch.get()
        if batch is not None:
            yield batch.conn
            return
        with self.db.read.begin() as conn:
            yield conn

    def _batch_rows(self) -> Callable[[str, Any], list[tuple]] | None:
        """Prepared SQL text run in the open batch's transaction (None outside a batch)."""
        batch = _batch.get()
        return None if batch is None else lambda sql, params: fetch_all(batch.conn, sql, params)

    def read(self, resource_type: str, resource_id: str, conn: Connection | None = None) -> StoredResource:
        """The current version; 404 if unknown, 410 if deleted."""
        restricted = access.restriction(resource_type) is not None  # first: no access set raises
        batch = _batch.get()
        if conn is None and batch is not None:  # a batch reads its own writes
            conn = batch.conn
        if conn is None:
            raw = self.fast.row(resource_type, resource_id)
        else:
            rows = fetch_all(conn, self.fast.sql, (resource_type, resource_id))
            raw = rows[0] if rows else None
        if raw is None:
            raise not_found(resource_type, resource_id)
        body = raw[5].encode() if isinstance(raw[5], str) else raw[5]
        stored = StoredResource(raw[0], raw[1], raw[2], raw[3], body, bool(raw[4]))
        if restricted and not self._visible(resource_type, resource_id, conn):
            raise not_found(resource_type, resource_id)
        if stored.deleted:
            raise FhirError(
                410,
                [_gone_issue(resource_type, resource_id)],
                headers={"ETag": stored.etag, "Last-Modified": stored.last_updated},
            )
        return stored

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        restricted = access.restriction(resource_type) is not None  # first: no access set raises
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
        if restricted and not self._visible(resource_type, resource_id, None):
            raise not_found(resource_type, f"{resource_id}/_history/{version_id}")
        stored = row_to_stored(row)
        if stored.deleted:
            raise FhirError(410, [_gone_issue(resource_type, resource_id, version_id)])
        return stored

    def _visible(self, resource_type: str, resource_id: str, conn: Connection | None) -> bool:
        if conn is not None:
            return access.is_visible(conn, resource_type, resource_id)
        with self.reading() as c:
            return access.is_visible(c, resource_type, resource_id)

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
        visible = access.visible_condition(resource_versions.c.res_type, resource_versions.c.res_id)
        if visible is not None:
            conditions.append(visible)
        where = and_(*conditions) if conditions else None
        query = select(resource_versions).order_by(resource_versions.c.seq.desc()).limit(at_most).offset(offset)
        count = select(func.count()).select_from(resource_versions)
        if where is not None:
            query, count = query.where(where), count.where(where)
        with self.reading() as conn:
            rows = conn.execute(query).all()
            total = conn.execute(count).scalar_one()
        return [row_to_stored(r) for r in rows], total

    def load_many(self, conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        """Current, not deleted versions for (type, id) keys."""
        found: dict[tuple[str, str], StoredResource] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, ids in by_type.items():
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                query = select(resources).where(
                    resources.c.res_type == rtype, resources.c.res_id.in_(chunk), resources.c.deleted.is_(False)
                )
                visible = access.labelled_condition(rtype, resources.c.res_id)
                if visible is not None:
                    query = query.where(visible)
                rows = conn.execute(query).all()
                for row in rows:
                    found[(row.res_type, row.res_id)] = row_to_stored(row)
        return found

    def _first(self, query: Any, conn: Connection | None) -> Any:
        if conn is not None:
            return conn.execute(query).first()
        with self.reading() as c:
            return c.execute(query).first()


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint by plain SQL on the transaction's own connection, undone when the block raises
    (SQLAlchemy's ``begin_nested`` compiles its statements anew each time: a bulk import writes thousands)."""

    execute_sql(conn, "SAVEPOINT store_write")
    try:
        yield
    except BaseException:
        execute_sql(conn, "ROLLBACK TO SAVEPOINT store_write")
        execute_sql(conn, "RELEASE SAVEPOINT store_write")
        raise
    execute_sql(conn, "RELEASE SAVEPOINT store_write")


def _gone_issue(resource_type: str, resource_id: str, version: str | None = None):  # type: ignore[no-untyped-def]
    from fhir_server.core.issues import Issue

    what = f"{resource_type}/{resource_id}" + (f"/_history/{version}" if version else "")
    return Issue("error", "deleted", f"Resource {what} has been deleted", None, f"Ressursen {what} er slettet")


def _retryable(exc: DBAPIError) -> bool:
    """Unique-key collisions, deadlocks, serialisation failures, SQLite 'database is locked', and a
    pooled connection the database server had closed (the pool is renewed; the retry gets a new one)."""
    if isinstance(exc, IntegrityError) or exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01", "23505") or "locked" in text or "busy" in text
