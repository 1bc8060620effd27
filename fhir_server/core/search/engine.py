"""Running searches: matching ids in order, snapshot paging, _include/_revinclude.

Paging consistency: when a search has more matches than one page, the ordered list of matching
ids is stored once (``search_results``) and every page reads from that list. Writes that happen
while a client pages through cannot shift results between pages, so there are neither
duplicates nor omissions; resources deleted meanwhile are left out of later pages. A stored
search belongs to the caller who made it (:attr:`Access.owner <fhir_server.core.storage.access.Access.owner>`):
to anyone else it is unknown.

The snapshots are bounded (:class:`SnapshotLimits`): the first ``max_ids`` matches are kept (the total
is still counted), at most ``max_count`` snapshots per caller are kept (its oldest go first), none beyond
its lifetime.

Included resources are those the caller may see (storage's access filter) of the types its scopes
let it read (:attr:`Access.readable <fhir_server.core.storage.access.Access.readable>`); the types
left out are named in :attr:`SearchPage.withheld`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import Connection, delete, func, insert, select

from fhir_server.core.issues import FhirError
from fhir_server.core.search.query import Include, SearchRequest
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import INDEX_TABLES, resources, search_results, search_snapshots
from fhir_server.core.storage.store import Store, StoredResource


@dataclass(frozen=True)
class SnapshotLimits:
    """Bounds of the stored paging snapshots (settings)."""

    max_ids: int = 10_000
    max_count: int = 100
    lifetime: timedelta = timedelta(hours=1)


_SORT_COLUMNS = {
    "string": ("value_norm", "value_norm"),
    "token": ("code", "code"),
    "date": ("low", "high"),
    "number": ("low", "high"),
    "quantity": ("low", "high"),
    "uri": ("value", "value"),
    "reference": ("target_id", "target_id"),
}


@dataclass
class SearchPage:
    """One page of results: matches in order, included resources, and where the page sits."""

    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    offset: int = 0
    count: int = 20
    snapshot_id: str | None = None
    #: How many matches can be paged to (the snapshot keeps at most ``SnapshotLimits.max_ids``).
    kept: int | None = None
    #: Types of included resources left out because the caller's scopes do not let it read them.
    withheld: set[str] = field(default_factory=set)


class SearchEngine:
    """Executes parsed searches against the store's database."""

    def __init__(self, store: Store, limits: SnapshotLimits | None = None) -> None:
        self.store = store
        self.registry = store.registry
        self.limits = limits or SnapshotLimits()

    def search(self, request: SearchRequest) -> SearchPage:
        with self.store.reading() as conn:
            if request.summary == "count" or request.count == 0:
                return SearchPage([], total=self._count(conn, request), count=0)
            max_ids = self.limits.max_ids
            ids = list(conn.execute(self._id_query(request).limit(max_ids + 1)).scalars())
            page = self._load_page(conn, request, request.resource_type, ids[: request.count])
            page.total = len(ids) if len(ids) <= max_ids else self._count(conn, request)
        ids = ids[:max_ids]
        page.count, page.kept = request.count, len(ids)
        if len(ids) > request.count:
            page.snapshot_id = self._save_snapshot(request, ids, page.total)
        return page

    def stored_search(self, snapshot_id: str, conn: Connection | None = None):  # type: ignore[no-untyped-def]
        """The stored search ``snapshot_id`` (its type, query and total) when the caller made it; 410 as for an
        unknown or expired search otherwise, so another caller learns nothing of it."""
        if conn is None:
            with self.store.reading() as c:
                return self.stored_search(snapshot_id, c)
        snap = conn.execute(select(search_snapshots).where(search_snapshots.c.id == snapshot_id)).first()
        if snap is None or snap.owner != access.current().owner:
            raise FhirError.single(
                410, "not-found", f"the search {snapshot_id} has expired or is unknown; run the search again"
            )
        return snap

    def page(self, snapshot_id: str, offset: int, count: int, request: SearchRequest) -> SearchPage:
        """A later page of a stored search (the caller's own: see :meth:`stored_search`)."""
        with self.store.reading() as conn:
            snap = self.stored_search(snapshot_id, conn)
            rows = conn.execute(
                select(search_results.c.res_id)
                .where(
                    search_results.c.snapshot_id == snapshot_id,
                    search_results.c.position >= offset,
                    search_results.c.position < offset + count,
                )
                .order_by(search_results.c.position)
            ).scalars()
            page = self._load_page(conn, request, snap.res_type, list(rows))
        page.total, page.offset, page.count, page.snapshot_id = snap.total, offset, count, snapshot_id
        page.kept = min(snap.total, self.limits.max_ids)
        return page

    def first(self, request: SearchRequest, offset: int = 0) -> SearchPage:
        """Matches ``offset`` to ``offset + count`` in order, with their includes, and no paging snapshot
        (for callers that page by their own means, e.g. the web app); ``total`` is not counted."""
        with self.store.reading() as conn:
            ids = list(conn.execute(self._id_query(request).limit(request.count).offset(offset)).scalars())
            page = self._load_page(conn, request, request.resource_type, ids)
        page.offset, page.count = offset, request.count
        return page

    def count(self, request: SearchRequest) -> int:
        """How many resources the search matches (what the caller may see)."""
        with self.store.reading() as conn:
            return self._count(conn, request)

    # -- internals --------------------------------------------------------------------------

    def _base_query(self, request: SearchRequest):  # type: ignore[no-untyped-def]
        query = select(resources.c.res_id).where(
            resources.c.res_type == request.resource_type, resources.c.deleted.is_(False), *request.conditions
        )
        visible = access.labelled_condition(request.resource_type, resources.c.res_id)
        return query if visible is None else query.where(visible)

    def _count(self, conn: Connection, request: SearchRequest) -> int:
        return conn.execute(select(func.count()).select_from(self._base_query(request).subquery())).scalar_one()

    def _id_query(self, request: SearchRequest):  # type: ignore[no-untyped-def]
        query = self._base_query(request)
        order = []
        for code, desc in request.sort:
            if code == "_id":
                order.append(resources.c.res_id.desc() if desc else resources.c.res_id)
                continue
            if code == "_lastUpdated":
                order.append(resources.c.last_updated.desc() if desc else resources.c.last_updated)
                continue
            param = self.registry.get(request.resource_type, code)
            assert param is not None  # checked by the parser
            table = INDEX_TABLES[param.type]
            asc_col, desc_col = _SORT_COLUMNS[param.type]
            agg = func.max(table.c[desc_col]) if desc else func.min(table.c[asc_col])
            key = (
                select(agg)
                .where(
                    table.c.res_type == resources.c.res_type,
                    table.c.res_id == resources.c.res_id,
                    table.c.param == code,
                )
                .scalar_subquery()
            )
            order.append(key.desc().nulls_last() if desc else key.asc().nulls_last())
        order += [resources.c.last_updated, resources.c.res_id]
        return query.order_by(*order)

    def _load_page(self, conn: Connection, request: SearchRequest, rtype: str, ids: list[str]) -> SearchPage:
        loaded = self.store.load_many(conn, [(rtype, i) for i in ids])
        matches = [loaded[(rtype, i)] for i in ids if (rtype, i) in loaded]
        page = SearchPage(matches)
        if request.includes:
            page.included = self._includes(conn, request.includes, matches, page.withheld)
        return page

    def _includes(
        self, conn: Connection, includes: list[Include], matches: list[StoredResource], withheld: set[str]
    ) -> list[StoredResource]:
        """Resources the includes reach (iterating), of readable types only; other types go to ``withheld``."""
        seen = {(m.resource_type, m.id) for m in matches}
        found: list[StoredResource] = []
        frontier = list(matches)
        first = True
        while frontier:
            wanted: list[tuple[str, str]] = []
            for inc in includes:
                if not first and not inc.iterate:
                    continue
                wanted.extend(self._include_keys(conn, inc, frontier))
            first = False
            new_keys = [k for k in dict.fromkeys(wanted) if k not in seen]
            loaded = self.store.load_many(conn, new_keys)  # what the caller may see: withheld names no other
            withheld.update(t for t, _ in loaded if not access.may_read(t))
            frontier = [loaded[k] for k in new_keys if k in loaded and access.may_read(k[0])]
            seen.update(new_keys)
            found.extend(frontier)
        return found

    def _include_keys(self, conn: Connection, inc: Include, sources: list[StoredResource]) -> list[tuple[str, str]]:
        table = INDEX_TABLES["reference"]
        if inc.reverse:
            targets = [(s.resource_type, s.id) for s in sources]
            keys: list[tuple[str, str]] = []
            for rtype in {t for t, _ in targets}:
                ids = [i for t, i in targets if t == rtype]
                query = select(table.c.res_type, table.c.res_id).where(
                    table.c.target_type == rtype, table.c.target_id.in_(ids)
                )
                if inc.source_type != "*":
                    query = query.where(table.c.res_type == inc.source_type)
                if inc.param != "*":
                    query = query.where(table.c.param == inc.param)
                keys.extend((r.res_type, r.res_id) for r in conn.execute(query))
            return keys
        ids = [s.id for s in sources if s.resource_type == inc.source_type or inc.param == "*"]
        if not ids:
            return []
        query = select(table.c.target_type, table.c.target_id).where(
            table.c.res_id.in_(ids), table.c.target_id.is_not(None), table.c.target_type.is_not(None)
        )
        if inc.param != "*":
            query = query.where(table.c.res_type == inc.source_type, table.c.param == inc.param)
        if inc.target_type:
            query = query.where(table.c.target_type == inc.target_type)
        return [(r.target_type, r.target_id) for r in conn.execute(query)]

    def _save_snapshot(self, request: SearchRequest, ids: list[str], total: int) -> str:
        snapshot_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        owner = access.current().owner

        def work(unit) -> None:  # type: ignore[no-untyped-def]
            conn = unit.conn
            conn.execute(
                insert(search_snapshots).values(
                    id=snapshot_id,
                    created=now.isoformat(),
                    res_type=request.resource_type,
                    query=urlencode(request.used),
                    total=total,
                    owner=owner,
                )
            )
            rows = [
                {"snapshot_id": snapshot_id, "position": i, "res_type": request.resource_type, "res_id": rid}
                for i, rid in enumerate(ids)
            ]
            for start in range(0, len(rows), 5000):
                conn.execute(insert(search_results), rows[start : start + 5000])
            self._expire_old(conn, now, owner)

        self.store.write(work)
        return snapshot_id

    def _expire_old(self, conn: Connection, now: datetime, owner: str) -> None:
        """Drop snapshots past their lifetime, and the owner's oldest beyond ``max_count``."""
        cutoff = (now - self.limits.lifetime).isoformat()
        old = select(search_snapshots.c.id).where(search_snapshots.c.created < cutoff).limit(50)
        old_ids = list(conn.execute(old).scalars())
        mine = search_snapshots.c.owner == owner
        count = conn.execute(select(func.count()).select_from(search_snapshots).where(mine)).scalar_one()
        if count > self.limits.max_count:
            oldest = select(search_snapshots.c.id).where(mine).order_by(search_snapshots.c.created)
            old_ids += [
                i for i in conn.execute(oldest.limit(count - self.limits.max_count)).scalars() if i not in old_ids
            ]
        if old_ids:
            conn.execute(delete(search_results).where(search_results.c.snapshot_id.in_(old_ids)))
            conn.execute(delete(search_snapshots).where(search_snapshots.c.id.in_(old_ids)))
