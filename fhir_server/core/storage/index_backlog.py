"""Search index rows built later: for resources written often and searched seldom (AuditEvents).

Every request writes an AuditEvent; few people ever search them. Computing and inserting an event's
search index rows cost about twice as much as storing the event itself, so the audit writer stores
events with ``WriteUnit.put(..., defer_index=True)``: the resource and its version are stored at
once (read, vread and history see it), and its key goes into the ``index_backlog`` table.

The backlog is worked off, in batches, by :func:`catch_up`:

* before any search that can return or reach such a resource (:func:`catch_up_for_search`), so a
  search never misses a stored event;
* by the audit writer: a small batch after each batch of events it stores (about a tenth of a core at
  most, so under moderate load the backlog stays near empty), a large one when its process is idle.

Under a sustained load above what that small share indexes, the backlog grows and the next AuditEvent
search (or idle time) pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from sqlalchemy import delete, select

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import index_rows
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import index_backlog, resources
from fhir_server.core.storage.store import Store, WriteUnit

log = logging.getLogger(__name__)

#: Resource types the server stores with deferred index rows.
DEFERRED_TYPES = frozenset({"AuditEvent"})
BATCH = 500


def has_backlog(store: Store, resource_type: str) -> bool:
    """True when some stored ``resource_type`` still waits for its index rows."""
    mark = store.dialect.mark
    sql = f"SELECT 1 FROM {index_backlog.name} WHERE res_type = {mark} LIMIT 1"
    return bool(store.fast.rows(sql, (resource_type,)))


def catch_up(store: Store, resource_type: str, *, limit: int | None = None, batch: int = BATCH) -> int:
    """Index waiting resources of ``resource_type`` (all, or about ``limit``), ``batch`` per write
    transaction; returns how many.

    Each batch's rows are computed from a plain read, outside the write lock; the write transaction
    only inserts them, for the resources still waiting (another process may have indexed some
    meanwhile) and still at their first version (a later version was indexed when it was put).

    The server's own work (:data:`access.SYSTEM`), also when a caller's search asks for it: it indexes
    every waiting resource, whoever may see it."""
    done = tried = 0  # a limit counts what was tried: another process may index some of it first
    with access.acting_as(access.SYSTEM):
        while limit is None or tried < limit:
            prepared = _prepare_batch(store, resource_type, batch)
            if not prepared:
                break
            tried += len(prepared)
            done += store.write(partial(_store_batch, resource_type=resource_type, prepared=prepared))
            if len(prepared) < batch:
                break
    if done:
        log.info("indexed %s %s resources from the backlog", done, resource_type)
    return done


def catch_up_for_search(store: Store, resource_type: str, params: Iterable[tuple[str, str]]) -> None:
    """Complete the index of every deferred type a search of ``resource_type`` with ``params`` can reach."""
    for deferred in DEFERRED_TYPES:
        if _reaches(deferred, resource_type, params) and has_backlog(store, deferred):
            catch_up(store, deferred)


def _reaches(deferred: str, resource_type: str, params: Iterable[tuple[str, str]]) -> bool:
    if resource_type == deferred:
        return True
    for name, value in params:
        if deferred in name or deferred in value:  # _has:AuditEvent:…, _revinclude=AuditEvent:…, chains
            return True
        if name.startswith(("_include", "_revinclude")) and "*" in value:
            return True
    return False


def _prepare_batch(store: Store, resource_type: str, batch: int) -> dict[str, dict]:
    """Up to ``batch`` waiting resources of ``resource_type``, read without the write lock: id -> the
    index rows of its first version (empty for one updated or deleted since: it needs none from here)."""
    mark = store.dialect.mark
    sql = (
        f"SELECT b.res_id, r.version_id, r.body FROM {index_backlog.name} b JOIN {resources.name} r "
        "ON r.res_type = b.res_type AND r.res_id = b.res_id "
        f"WHERE b.res_type = {mark} LIMIT {int(batch)}"
    )
    return {
        res_id: index_rows(store.registry, jsonio.loads(body)) if version == 1 and body else {}
        for res_id, version, body in store.fast.rows(sql, (resource_type,))
    }


def _store_batch(unit: WriteUnit, resource_type: str, prepared: dict[str, dict]) -> int:
    """Insert the prepared rows of the resources of ``prepared`` still waiting; returns how many."""
    ids = list(prepared)
    waiting = select(index_backlog.c.res_id).where(
        index_backlog.c.res_type == resource_type, index_backlog.c.res_id.in_(ids)
    )
    if unit.store.dialect.row_lock:  # PostgreSQL (SQLite's writer holds the database)
        waiting = waiting.with_for_update()  # a second process catching up waits, then finds them gone
    still = list(unit.execute(waiting).scalars())
    if not still:
        return 0
    current = unit.execute(
        select(resources.c.res_id, resources.c.version_id, resources.c.deleted).where(
            resources.c.res_type == resource_type, resources.c.res_id.in_(still)
        )
    ).all()
    for res_id, version, deleted in current:
        # only the version stored with its index deferred lacks rows: a later one was indexed when put
        # (versions only grow, so a resource still at version 1 was read at version 1)
        if version == 1 and not deleted:
            unit.add_index_rows(resource_type, res_id, {}, prepared[res_id])
    unit.execute(
        delete(index_backlog).where(index_backlog.c.res_type == resource_type, index_backlog.c.res_id.in_(still))
    )
    return len(still)
