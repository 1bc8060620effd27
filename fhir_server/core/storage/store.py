"""The resource repository: versioned create/read/update/delete/history over SQLAlchemy Core.

All writes of one request happen in one :class:`WriteUnit` (one database transaction): the
resource version, the current row and the search index rows commit together or not at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode

from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from fhir_server.core import jsonio
from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.indexing.rows import IndexMatch, index_rows
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.issues import FhirError, not_found
from fhir_server.core.storage import access
from fhir_server.core.storage.db import Database
from fhir_server.core.storage.group_commit import GroupCommit
from fhir_server.core.storage.schema import INDEX_TABLES, access_labels, index_backlog, resource_versions, resources

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


class CurrentRow(NamedTuple):
    """The version facts of a resource's current row."""

    version_id: int
    deleted: bool


#: Parameters in one multi-row INSERT (SQLite allows 32766 since 3.32, PostgreSQL 65535).
MAX_STATEMENT_PARAMETERS = 30000


def new_id() -> str:
    """A server-assigned id: a time-ordered UUID (version 7 layout, RFC 9562).

    The first 48 bits are the Unix time in milliseconds, the rest random. Ids made one after another
    sort one after another, so new rows land at the end of every index keyed by id instead of on a
    random page each: a write transaction touches (and a commit writes) far fewer database pages.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant RFC 4122
    return str(uuid.UUID(int=value))


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
        getattr(row, "seq", 0),
    )


class WriteUnit:
    """The writes of one request inside one database transaction.

    Inserts are collected and sent in one ``executemany`` per table when the unit flushes
    (before any read through the unit, and at commit), so a transaction of many resources
    costs a handful of statements rather than dozens per resource.
    """

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self._versions: list[dict] = []
        self._new_current: list[dict] = []
        self._index_rows: dict[str, list[dict]] = {}
        self._stale_index: dict[str, list[str]] = {}
        self._labels: list[dict] = []
        self._backlog: list[dict] = []
        self._written: dict[tuple[str, str], StoredResource] = {}  # the latest version this unit wrote

    # -- locking and reading ------------------------------------------------------------------

    def lock_conditional(self, resource_type: str, query: str) -> None:
        """Serialise conditional operations with the same condition until commit (PostgreSQL; SQLite
        already holds the write lock). As in HAPI FHIR, the condition's text is the key: identical
        conditional creates leave exactly one resource; different conditions do not wait for each other."""
        if not self.store.db.is_sqlite:
            key = f"cond:{resource_type}?{urlencode(sorted(parse_qsl(query, keep_blank_values=True)))}"
            self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))

    def current(self, resource_type: str, resource_id: str, *, for_update: bool = True) -> CurrentRow | None:
        """The current row's version facts (locked for this transaction on PostgreSQL); None if never stored."""
        self.flush()
        sql = self.store.current_sql + (" FOR UPDATE" if for_update and not self.store.db.is_sqlite else "")
        rows = _fetch_all(self.conn, sql, (resource_type, resource_id))
        return CurrentRow(rows[0][0], bool(rows[0][1])) if rows else None

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        """The current version as this transaction sees it.

        A caller whom nothing restricts gets what this unit wrote from memory, and anything else
        straight from the database: the unit's pending inserts cannot change another resource's row.
        For a restricted caller the pending writes (access labels among them) are flushed first.
        """
        if access.restriction(resource_type) is None:
            written = self._written.get((resource_type, resource_id))
            if written is None:
                return self.store.read(resource_type, resource_id, self.conn)
            if not written.deleted:
                return written
        self.flush()
        return self.store.read(resource_type, resource_id, self.conn)

    def execute(self, statement: Any) -> Any:
        """Run a query inside this transaction (pending writes flushed first)."""
        self.flush()
        return self.conn.execute(statement)

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """Run prepared SQL text inside this transaction (pending writes flushed first)."""
        self.flush()
        return _fetch_all(self.conn, sql, params)

    def match_ids(self, resource_type: str, matches: list[IndexMatch], *, limit: int | None = None) -> list[str]:
        """:meth:`Store.match_ids` inside this transaction."""
        return self.store.match_ids(resource_type, matches, unit=self, limit=limit)

    # -- writes -----------------------------------------------------------------------------

    def put(
        self,
        resource: dict,
        *,
        resource_id: str | None = None,
        if_match: int | None = None,
        must_exist: bool = False,
        must_not_exist: bool = False,
        fresh_id: bool = False,
        defer_index: bool = False,
        index: dict[str, list[dict]] | None = None,
    ) -> tuple[StoredResource, bool]:
        """Create or update ``resource``; returns the stored version and whether it was created.

        ``if_match`` refuses with 412 unless the current version is that one;
        ``must_not_exist`` refuses with 409 when the id is taken; ``fresh_id`` says the id was
        just generated by the server (a UUID), so there is nothing to look up. ``defer_index`` (new
        resources only) leaves the search index rows to :mod:`fhir_server.core.index_backlog`; ``index``
        gives them as computed beforehand from exactly this content (:func:`index_rows`), outside the
        write lock.
        """
        resource_type = resource["resourceType"]
        if resource_id is None and resource.get("id") is None:
            resource_id, fresh_id = new_id(), True
        resource_id = resource_id or resource["id"]
        row = None if fresh_id else self.current(resource_type, resource_id)
        if row is not None and not access.is_visible(self.conn, resource_type, resource_id):
            raise not_found(resource_type, resource_id)  # as if it did not exist: its existence is not told
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
            self._new_current.append(self._current_values(stored))
        else:
            self._replace_current(stored)
        if defer_index and row is None:
            self._backlog.append({"res_type": resource_type, "res_id": resource_id})
        else:
            self.add_index_rows(resource_type, resource_id, resource, index)
        writer = access.current()
        if writer is not None and writer.stamps:
            self._labels.extend(access.label_rows([(resource_type, resource_id)], writer.stamps))
        for hook in self.store.write_hooks:
            hook(self, resource)
        return stored, not exists

    def add_index_rows(
        self, resource_type: str, resource_id: str, resource: dict, computed: dict[str, list[dict]] | None = None
    ) -> None:
        """Queue the search index rows of ``resource`` (stored as ``resource_type/resource_id``), or
        ``computed``: its rows computed earlier."""
        grouped = computed if computed is not None else index_rows(self.store.registry, resource)
        for kind, rows in grouped.items():
            for row in rows:  # fresh dicts: the owner columns go straight in
                row["res_type"], row["res_id"] = resource_type, resource_id
            self._index_rows.setdefault(kind, []).extend(rows)

    def wrote(self, resource_type: str, resource_id: str) -> bool:
        """True when this unit wrote the resource (for write hooks: something stored with this very write)."""
        return (resource_type, resource_id) in self._written

    def add_labels(self, keys: list[tuple[str, str]], labels: list[str]) -> None:
        """Let holders of ``labels`` see the resources ``keys`` too (kept if already there)."""
        self._labels.extend(access.label_rows(keys, labels))

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Mark a resource deleted (a new version without body); None when there was nothing to delete."""
        row = self.current(resource_type, resource_id)
        if row is None or row.deleted or not access.is_visible(self.conn, resource_type, resource_id):
            return None
        stored = self._write_version(None, resource_type, resource_id, row.version_id + 1, "DELETE")
        self._replace_current(stored)
        return stored

    def flush(self) -> None:
        """Send the collected inserts (versions, new current rows, index rows)."""
        pending = (self._versions, self._new_current, self._stale_index, self._index_rows, self._labels)
        if not any(pending) and not self._backlog:
            return
        # plain DBAPI statements on the transaction's own connection: these inserts are the hot path
        # of every write, and SQLAlchemy's per-row parameter processing costs more than SQLite itself
        inserts = [(resource_versions, self._versions), (resources, self._new_current)]
        inserts += [(INDEX_TABLES[kind], rows) for kind, rows in self._index_rows.items()]
        inserts.append((index_backlog, self._backlog))
        stale, labels = self._stale_index, self._labels
        self._versions, self._new_current, self._index_rows, self._backlog = [], [], {}, []
        self._stale_index, self._labels = {}, []
        cursor = self.conn.connection.cursor()
        try:
            self.store.write_rows(cursor, [(t, rows) for t, rows in inserts if rows], stale, labels)
        finally:
            cursor.close()

    def _replace_current(self, stored: StoredResource) -> None:
        self.conn.execute(
            update(resources)
            .where(resources.c.res_type == stored.resource_type, resources.c.res_id == stored.id)
            .values(**self._current_values(stored))
        )
        self._stale_index.setdefault(stored.resource_type, []).append(stored.id)
        # index rows collected earlier in this unit for the same resource are stale too
        for kind, rows in self._index_rows.items():
            self._index_rows[kind] = [
                r for r in rows if not (r["res_type"] == stored.resource_type and r["res_id"] == stored.id)
            ]

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
        self._versions.append(
            {
                "res_type": resource_type,
                "res_id": resource_id,
                "version_id": version_id,
                "last_updated": last_updated,
                "method": method,
                "deleted": resource is None,
                "body": body.decode() if body is not None else None,
            }
        )
        stored = StoredResource(resource_type, resource_id, version_id, last_updated, body, resource is None, method)
        self._written[(resource_type, resource_id)] = stored
        return stored

    @staticmethod
    def _current_values(stored: StoredResource) -> dict:
        return {
            "res_type": stored.resource_type,
            "res_id": stored.id,
            "version_id": stored.version_id,
            "last_updated": stored.last_updated,
            "deleted": stored.deleted,
            "body": stored.body.decode() if stored.body is not None else None,
        }


class _FastReads:
    """Read by id on a dedicated raw DBAPI connection per thread: the hot path of a FHIR server.

    A single ``SELECT`` by primary key needs no explicit transaction; going past SQLAlchemy's
    statement machinery here makes a read about 20 times cheaper. The connection runs in
    autocommit mode, so it never holds a snapshot or a lock between requests.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        mark = "?" if db.is_sqlite else "%s"
        self.sql = (
            "SELECT res_type, res_id, version_id, last_updated, deleted, body FROM resources "
            f"WHERE res_type = {mark} AND res_id = {mark}"
        )
        self.local = threading.local()

    def _cursor(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.db.read.raw_connection()
            if not self.db.is_sqlite:
                conn.driver_connection.autocommit = True
            self.local.conn = conn
        return conn.cursor()

    def row(self, resource_type: str, resource_id: str) -> tuple | None:
        rows = self.rows(self.sql, (resource_type, resource_id))
        return rows[0] if rows else None

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """All rows of one prepared ``SELECT`` (no transaction around it: one statement is one snapshot).

        A connection the database server closed (a restart) is replaced, and the statement tried once more.
        """
        for attempt in (1, 2):
            try:
                cursor = self._cursor()
                cursor.execute(sql, params)
                return cursor.fetchall()
            except self.db.read.dialect.dbapi.OperationalError:  # type: ignore[union-attr]
                self.local.conn = None
                if attempt == 2:
                    raise
            except Exception:
                self.local.conn = None  # a broken connection: open a new one next time
                raise
        raise AssertionError("unreachable")


#: From this many rows on, PostgreSQL inserts go through COPY (fewer: one pipelined executemany is quicker).
COPY_THRESHOLD = 100


class Store:
    """Reads and transactional writes of versioned resources."""

    def __init__(self, db: Database, registry: SearchRegistry) -> None:
        self.db = db
        self.registry = registry
        self.fast = _FastReads(db)
        #: SQLite: concurrent writers of this process share commits (see core/group_commit.py).
        self.group_commit = GroupCommit(db) if db.is_sqlite else None
        self._insert_columns: dict[str, list[str]] = {}
        #: Called with (unit, resource) after each resource is put, inside its transaction (domain rules
        #: that add access labels, e.g. a referral becoming visible to the region its Task is owned by).
        self.write_hooks: list[Callable[[WriteUnit, dict], None]] = []
        self._match_sql: dict[tuple, str] = {}
        mark = self._mark = "?" if db.is_sqlite else "%s"
        self.current_sql = f"SELECT version_id, deleted FROM resources WHERE res_type = {mark} AND res_id = {mark}"

    def bulk_insert(self, cursor: Any, table: Any, rows: list[dict]) -> None:
        """Insert ``rows`` into ``table`` (its columns, minus an auto-increment key): COPY for many rows on
        PostgreSQL, else :meth:`_insert_values`."""
        columns = self._insert_columns.get(table.name)
        if columns is None:
            columns = [c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)]
            self._insert_columns[table.name] = columns
        if not self.db.is_sqlite and len(rows) >= COPY_THRESHOLD:
            # PostgreSQL: COPY streams the rows in one statement, several times cheaper than one INSERT each
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(map(row.get, columns)))
            return
        head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
        self._insert_values(cursor, head, [tuple(map(row.get, columns)) for row in rows])

    def _insert_values(self, cursor: Any, head: str, values: list[tuple], tail: str = "") -> None:
        """``head`` + one ``(?, ...)`` per row + ``tail``: multi-row statements, as few as the databases'
        parameter limits allow. One statement per table, not one per row: the database has fewer
        statements to run, and on SQLite a writer releases (and must win back) Python's GIL once per
        statement, not once per row, while it holds the database's write lock."""
        one = f"({', '.join([self._mark] * len(values[0]))})"
        per_statement = max(1, MAX_STATEMENT_PARAMETERS // len(values[0]))
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            cursor.execute(head + ", ".join([one] * len(chunk)) + tail, [v for row in chunk for v in row])

    def write_rows(
        self, cursor: Any, inserts: list[tuple[Any, list[dict]]], stale: dict[str, list[str]], labels: list[dict]
    ) -> None:
        """Delete the stale index rows of ``stale`` (type -> ids), then insert ``inserts`` and ``labels``.

        On PostgreSQL the statements go in one pipeline (one round trip to the server), except for
        tables with many rows, which follow through COPY.
        """
        copy = not self.db.is_sqlite
        copies = [(table, rows) for table, rows in inserts if copy and len(rows) >= COPY_THRESHOLD]
        small = [(table, rows) for table, rows in inserts if not (copy and len(rows) >= COPY_THRESHOLD)]
        with self._pipeline(cursor):
            for rtype, all_ids in stale.items():
                for start in range(0, len(all_ids), 500):  # bound the statement's parameter count
                    ids = all_ids[start : start + 500]
                    owned = f"res_type = {self._mark} AND res_id IN ({', '.join([self._mark] * len(ids))})"
                    for table in INDEX_TABLES.values():
                        cursor.execute(f"DELETE FROM {table.name} WHERE {owned}", (rtype, *ids))
            for table, rows in small:
                self.bulk_insert(cursor, table, rows)
            if labels:
                self.insert_labels(cursor, labels)
        for table, rows in copies:
            self.bulk_insert(cursor, table, rows)

    def _pipeline(self, cursor: Any) -> Any:
        """PostgreSQL: send what follows in one pipeline; SQLite: nothing to do."""
        return nullcontext() if self.db.is_sqlite else cursor.connection.pipeline()

    def insert_labels(self, cursor: Any, rows: list[dict]) -> None:
        """Add access labels; a label a resource already carries is kept as it is."""
        values = list(dict.fromkeys((r["res_type"], r["res_id"], r["label"]) for r in rows))
        head = f"INSERT INTO {access_labels.name} (res_type, res_id, label) VALUES "
        self._insert_values(cursor, head, values, " ON CONFLICT DO NOTHING")

    # -- writes -----------------------------------------------------------------------------

    def write(self, work: Callable[[WriteUnit], T], *, attempts: int = 5) -> T:
        """Run ``work`` in one write transaction; retried on a lost race (unique key or deadlock)."""

        def run(conn: Connection) -> T:
            unit = WriteUnit(self, conn)
            result = work(unit)
            unit.flush()
            return result

        for attempt in range(1, attempts + 1):
            try:
                if self.group_commit is not None:
                    return self.group_commit.run(run)
                with self.db.write.begin() as conn:
                    return run(conn)
            except (IntegrityError, OperationalError, DBAPIError) as exc:
                if (isinstance(exc, DBAPIError) and not _retryable(exc)) or attempt == attempts:
                    raise
                log.info("write conflict, retrying (attempt %s): %s", attempt, type(exc.orig).__name__)
                time.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

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
        On SQLite the text also fixes the plan (see :meth:`_match_text`). ``ordered=False`` (for callers
        that only count, up to ``limit``) lets PostgreSQL stop at ``limit`` rows instead of sorting every
        match; SQLite keeps its planned order."""
        ordered = ordered or self.db.is_sqlite
        run = unit.rows if unit is not None else self.fast.rows
        scan = limit is not None and self.db.is_sqlite and all(self._common(run, resource_type, m) for m in matches)
        visible = access.labelled_condition(resource_type, resources.c.res_id)
        if visible is not None:  # the caller sees labelled resources only, as in every search
            sort_apart = self.db.is_sqlite and not scan
            query = _match_query(resource_type, matches, limit, sort_apart=sort_apart).where(visible)
            query = query if ordered else query.order_by(None)
            if unit is not None:
                return list(unit.execute(query).scalars())
            with self.reading() as conn:
                return list(conn.execute(query).scalars())
        params: list[Any] = [resource_type, False]
        for match in matches:
            params += [resource_type, match.param, *(value for _, value in match.values)]
        return [row[0] for row in run(self._match_text(matches, limit, scan, ordered), params)]

    def _common(self, run: Callable[[str, Sequence[Any]], list[tuple]], resource_type: str, match: IndexMatch) -> bool:
        """True when at least :data:`SCAN_FROM` index rows meet the condition (counting stops there)."""
        table = INDEX_TABLES[match.kind].name
        equal = "".join(f" AND {column} = ?" for column, _ in match.values)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE res_type = ? AND param = ?{equal} LIMIT {SCAN_FROM})"
        return run(sql, [resource_type, match.param, *(value for _, value in match.values)])[0][0] >= SCAN_FROM

    def _match_text(self, matches: list[IndexMatch], limit: int | None, scan: bool, ordered: bool = True) -> str:
        """The SQL text of :func:`_match_query` for this shape of conditions (built once per shape).

        Without statistics SQLite walks every resource of the type in ``last_updated`` order (to skip
        the sort) and tests each against the conditions: a conditional create then costs time in
        proportion to the number of stored resources of its type. So on SQLite the text chooses:
        a few matching index rows are looked up by primary key and sorted (``ORDER BY +last_updated``
        keeps the ordered index out); a condition many resources meet (``scan``) walks the type in
        search order through the index rows' owner index and stops at ``limit``. Same rows, same order.
        """
        shape = (tuple((m.kind, tuple(column for column, _ in m.values)) for m in matches), limit, scan, ordered)
        sql = self._match_sql.get(shape)
        if sql is None:
            sql = self._match_sql[shape] = _match_sql_text(
                shape[0], limit, scan, sqlite=self.db.is_sqlite, ordered=ordered
            )
        return sql

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot for a search and its includes)."""
        with self.db.read.begin() as conn:
            yield conn

    def read(self, resource_type: str, resource_id: str, conn: Connection | None = None) -> StoredResource:
        """The current version; 404 if unknown, 410 if deleted."""
        if conn is None:
            raw = self.fast.row(resource_type, resource_id)
        else:
            rows = _fetch_all(conn, self.fast.sql, (resource_type, resource_id))
            raw = rows[0] if rows else None
        if raw is None:
            raise not_found(resource_type, resource_id)
        body = raw[5].encode() if isinstance(raw[5], str) else raw[5]
        stored = StoredResource(raw[0], raw[1], raw[2], raw[3], body, bool(raw[4]))
        if access.restriction(resource_type) is not None and not self._visible(resource_type, resource_id, conn):
            raise not_found(resource_type, resource_id)
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
        if access.restriction(resource_type) is not None and not self._visible(resource_type, resource_id, None):
            raise not_found(resource_type, f"{resource_id}/_history/{version_id}")
        stored = _row_to_stored(row)
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
                query = select(resources).where(
                    resources.c.res_type == rtype, resources.c.res_id.in_(chunk), resources.c.deleted.is_(False)
                )
                visible = access.labelled_condition(rtype, resources.c.res_id)
                if visible is not None:
                    query = query.where(visible)
                rows = conn.execute(query).all()
                for row in rows:
                    found[(row.res_type, row.res_id)] = _row_to_stored(row)
        return found

    def _first(self, query: Any, conn: Connection | None) -> Any:
        if conn is not None:
            return conn.execute(query).first()
        with self.reading() as c:
            return c.execute(query).first()


#: A plain condition met by this many index rows or more is answered by walking the type in search order.
SCAN_FROM = 64


def _match_sql_text(
    shape: tuple[tuple[str, tuple[str, ...]], ...], limit: int | None, scan: bool, *, sqlite: bool, ordered: bool = True
) -> str:
    """SQL text selecting what :func:`_match_query` selects (parameters: type, False, then per condition
    the type, the parameter code and the column values)."""
    mark = "?" if sqlite else "%s"
    if scan:
        head = (
            f"SELECT res_id FROM {resources.name} AS r INDEXED BY {_index_on(resources, 'res_type', 'last_updated')} "
            f"WHERE res_type = {mark} AND deleted = {mark}"
        )
    else:
        head = f"SELECT res_id FROM {resources.name} WHERE res_type = {mark} AND deleted = {mark}"
    parts = [head]
    for kind, columns in shape:
        table = INDEX_TABLES[kind]
        if scan:
            equal = "".join(f" AND i.{column} = {mark}" for column in columns)
            parts.append(
                f" AND EXISTS (SELECT 1 FROM {table.name} AS i INDEXED BY {_index_on(table, 'res_type', 'res_id')} "
                f"WHERE i.res_type = {mark} AND i.param = {mark} AND i.res_id = r.res_id{equal})"
            )
        else:
            equal = "".join(f" AND {column} = {mark}" for column in columns)
            parts.append(
                f" AND res_id IN (SELECT res_id FROM {table.name} WHERE res_type = {mark} AND param = {mark}{equal})"
            )
    order = "+last_updated" if sqlite and not scan else "last_updated"
    parts.append(f" ORDER BY {order}, res_id" if ordered else "")
    parts.append(f" LIMIT {int(limit)}" if limit is not None else "")
    return "".join(parts)


def _index_on(table: Any, *columns: str) -> str:
    """The name of the table's index on exactly these columns."""
    return next(ix.name for ix in table.indexes if [c.name for c in ix.columns] == list(columns))


def _match_query(resource_type: str, matches: list[IndexMatch], limit: int | None, *, sort_apart: bool = False) -> Any:
    """The ids of current resources meeting every plain condition, ordered as a search orders them.

    ``sort_apart`` sorts by an expression of ``last_updated`` (the same order) that no index serves, so
    SQLite looks the few matches up by primary key instead of walking the type (see ``Store._match_text``)."""
    conditions = []
    for match in matches:
        table = INDEX_TABLES[match.kind]
        rows = select(table.c.res_id).where(
            table.c.res_type == resource_type,
            table.c.param == match.param,
            *(table.c[column] == value for column, value in match.values),
        )
        conditions.append(resources.c.res_id.in_(rows))
    query = (
        select(resources.c.res_id)
        .where(resources.c.res_type == resource_type, resources.c.deleted.is_(False), *conditions)
        .order_by(resources.c.last_updated.concat("") if sort_apart else resources.c.last_updated, resources.c.res_id)
    )
    return query.limit(limit) if limit is not None else query


def _fetch_all(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple]:
    """Prepared SQL text on the DBAPI connection under ``conn`` (inside its transaction, if any)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


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
