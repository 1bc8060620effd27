"""One request's writes inside one database transaction: versions, current rows, index rows, labels.

Dialect-neutral: the database-specific parts (row and condition locks, bulk inserts) are the store's
:class:`~fhir_server.core.storage.dialect.Dialect`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import IndexMatch, index_rows
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.issues import FhirError, not_found
from fhir_server.core.storage import access
from fhir_server.core.storage.inserts import write_rows
from fhir_server.core.storage.reads import execute_sql, fetch_all
from fhir_server.core.storage.records import CurrentRow, StoredResource, new_id
from fhir_server.core.storage.schema import INDEX_TABLES, index_backlog, resource_versions, resources

if TYPE_CHECKING:
    from fhir_server.core.storage.store import Store


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
        self._new_current: dict[tuple[str, str], dict] = {}  # current rows to insert, by (type, id)
        self._index_rows: dict[str, list[dict]] = {}
        self._indexed: set[tuple[str, str]] = set()  # (type, id) of the resources with pending index rows
        self._stale_index: dict[str, list[str]] = {}
        self._labels: list[dict] = []
        self._backlog: list[dict] = []
        self._written: dict[tuple[str, str], StoredResource] = {}  # the latest version this unit wrote
        self._at_end: list[Callable[[], None]] = []

    # -- locking and reading ------------------------------------------------------------------

    def lock_conditional(self, resource_type: str, query: str) -> None:
        """Serialise conditional operations with the same condition until commit (PostgreSQL; SQLite
        already holds the write lock). As in HAPI FHIR, the condition's text is the key: identical
        conditional creates leave exactly one resource; different conditions do not wait for each other."""
        self.store.dialect.lock_conditional(self.conn, resource_type, query)

    def current(self, resource_type: str, resource_id: str, *, for_update: bool = True) -> CurrentRow | None:
        """The current row's version facts (locked for this transaction on PostgreSQL); None if never stored.

        A resource this unit wrote is answered from memory; any other from the database without sending the
        pending inserts first (none of them is its row): a unit writing many resources flushes once."""
        written = self._written.get((resource_type, resource_id))
        if written is not None:
            return CurrentRow(written.version_id, written.deleted)
        sql = self.store.current_sql + (self.store.dialect.row_lock if for_update else "")
        rows = fetch_all(self.conn, sql, (resource_type, resource_id))
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
        return fetch_all(self.conn, sql, params)

    def run(self, sql: str, params: Sequence[Any]) -> None:
        """Run prepared SQL text that returns no rows inside this transaction (pending writes flushed first)."""
        self.flush()
        execute_sql(self.conn, sql, params)

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
        if row is not None and not self.visible(resource_type, resource_id):
            raise not_found(resource_type, resource_id)  # as if it did not exist: its existence is not told
        exists = row is not None and not row.deleted
        if must_not_exist and row is not None:
            raise FhirError.single(409, "duplicate", f"{resource_type}/{resource_id} already exists")
        if must_exist and not exists:
            raise not_found(resource_type, resource_id)
        if if_match is not None:
            current_version = row.version_id if row is not None else None
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
            self._new_current[(resource_type, resource_id)] = self._current_values(stored)
        else:
            self._replace_current(stored)
        if defer_index and row is None:
            self._backlog.append({"res_type": resource_type, "res_id": resource_id})
        else:
            self.add_index_rows(resource_type, resource_id, resource, index)
        writer = access.current()
        if writer.stamps:
            self._labels.extend(access.label_rows([(resource_type, resource_id)], writer.stamps))
        for hook in self.store.write_hooks:
            hook(self, resource)
        return stored, not exists

    def visible(self, resource_type: str, resource_id: str) -> bool:
        """May the writer see the stored resource? (One this unit wrote: yes, it wrote it.)"""
        if (resource_type, resource_id) in self._written or access.restriction(resource_type) is None:
            return True
        self.flush()  # labels this unit added may be what lets the writer see it
        return access.is_visible(self.conn, resource_type, resource_id)

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
        self._indexed.add((resource_type, resource_id))

    def written_keys(self) -> list[tuple[str, str]]:
        """(type, id) of every resource this unit put or deleted."""
        return list(self._written)

    def wrote(self, resource_type: str, resource_id: str) -> bool:
        """True when this unit wrote the resource (for write hooks: something stored with this very write)."""
        return (resource_type, resource_id) in self._written

    def add_labels(self, keys: list[tuple[str, str]], labels: list[str]) -> None:
        """Let holders of ``labels`` see the resources ``keys`` too (kept if already there)."""
        self._labels.extend(access.label_rows(keys, labels))

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """Mark a resource deleted (a new version without body); None when there was nothing to delete."""
        row = self.current(resource_type, resource_id)
        if row is None or row.deleted or not self.visible(resource_type, resource_id):
            return None
        stored = self._write_version(None, resource_type, resource_id, row.version_id + 1, "DELETE")
        self._replace_current(stored)
        return stored

    def at_end(self, step: Callable[[], None]) -> None:
        """Run ``step`` once this unit's work is done, still inside its transaction (write hooks that need
        the whole write, e.g. its access labels, to decide: recording subscription events)."""
        self._at_end.append(step)

    def finish(self) -> None:
        """Run the steps :meth:`at_end` queued (they may queue more), then send the pending inserts."""
        while self._at_end:
            self._at_end.pop(0)()
        self.flush()

    def flush(self) -> None:
        """Send the collected inserts (versions, new current rows, index rows)."""
        pending = (self._versions, self._new_current, self._stale_index, self._index_rows, self._labels)
        if not any(pending) and not self._backlog:
            return
        # plain DBAPI statements on the transaction's own connection (see inserts.py)
        inserts = [(resource_versions, self._versions), (resources, list(self._new_current.values()))]
        inserts += [(INDEX_TABLES[kind], rows) for kind, rows in self._index_rows.items()]
        inserts.append((index_backlog, self._backlog))
        stale, labels = self._stale_index, self._labels
        self._versions, self._new_current, self._index_rows, self._backlog = [], {}, {}, []
        self._stale_index, self._labels, self._indexed = {}, [], set()
        cursor = self.conn.connection.cursor()
        try:
            write_rows(self.store.dialect, cursor, [(t, rows) for t, rows in inserts if rows], stale, labels)
        finally:
            cursor.close()

    def _replace_current(self, stored: StoredResource) -> None:
        key = (stored.resource_type, stored.id)
        pending = self._new_current.get(key)
        if pending is not None:  # created by this unit and not sent yet: its row to insert is this version's
            pending.update(self._current_values(stored))
        else:
            mark = self.store.dialect.mark
            values = self._current_values(stored)
            execute_sql(
                self.conn,
                f"UPDATE {resources.name} SET version_id = {mark}, last_updated = {mark}, deleted = {mark}, "
                f"body = {mark} WHERE res_type = {mark} AND res_id = {mark}",
                (values["version_id"], values["last_updated"], values["deleted"], values["body"], *key),
            )
            self._stale_index.setdefault(stored.resource_type, []).append(stored.id)
        if key in self._indexed:  # index rows collected earlier in this unit for the same resource are stale
            for kind, rows in self._index_rows.items():
                self._index_rows[kind] = [r for r in rows if (r["res_type"], r["res_id"]) != key]
            self._indexed.discard(key)

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
