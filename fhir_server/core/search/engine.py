"""Running searches: matching ids in order, keyset paging, _include/_revinclude.

A page costs what the page asks for: the first page is the first ``_count`` rows of the search's order
(:mod:`~fhir_server.core.search.keyset`), and a later page is the rows beyond the previous page's edge,
named by a cursor in the ``next``/``previous`` links. No list of matches is stored. A search that spans
pages is recorded once (``search_snapshots``: its query, its caller, its total when counted, and its
consistency point), so later pages show the data as it was ordered at the first page
(:mod:`~fhir_server.core.search.consistency`): no duplicates and no omissions while writes go on.
A stored search belongs to the caller who made it (:attr:`Access.owner
<fhir_server.core.storage.access.Access.owner>`): to anyone else it is unknown (410).

Totals: a search that fits one page knows its total. Beyond one page, ``_total=accurate`` counts every
match, ``_total=estimate`` counts up to :attr:`PagingLimits.count_bound` (a larger total is left out),
and by default no total is given: a count costs what the matches cost, a page only what it holds.
``_summary=count`` always counts.

Included resources are those the caller may see (storage's access filter) of the types its scopes
let it read (:attr:`Access.readable <fhir_server.core.storage.access.Access.readable>`); the types
left out are named in :attr:`SearchPage.withheld`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, and_, delete, exists, func, insert, select, union

from fhir_server.core.issues import FhirError
from fhir_server.core.search import consistency
from fhir_server.core.search.keyset import (
    SORT_COLUMNS,
    Cursor,
    SortKey,
    Value,
    beyond,
    order_by,
    order_keys,
    python_order,
)
from fhir_server.core.search.query import Include, SearchRequest
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import INDEX_TABLES, idx_combo, resources, search_snapshots
from fhir_server.core.storage.store import Store, StoredResource

#: A condition keeping fewer resources than this drives a search: its matches are looked up and sorted.
SMALL = 1000
#: Index rows of each ordered filter sampled to choose the walk (see ``SearchEngine._densest``).
SAMPLE = 200
#: A chain reaching at most this many resources is looked up first and searched as their ids.
FEW_TARGETS = 1000
#: A combo index serves a search whose filters on its components name at most this many combinations
#: (one ordered walk each, merged).
COMBO_WALKS = 10


@dataclass(frozen=True)
class PagingLimits:
    """Bounds of searches (settings): matches counted for a default total, stored searches kept per
    caller (its oldest go first), and their lifetime."""

    count_bound: int = 1000
    max_count: int = 100
    lifetime: timedelta = timedelta(hours=1)


@dataclass
class SearchPage:
    """One page of results: matches in order, included resources, and where the page sits."""

    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    offset: int = 0
    count: int = 20
    #: The stored search later pages belong to (None: everything fitted this page).
    search_id: str | None = None
    #: Where the next and the previous page start (None: there is none).
    next: Cursor | None = None
    previous: Cursor | None = None
    #: Types of included resources left out because the caller's scopes do not let it read them.
    withheld: set[str] = field(default_factory=set)


@dataclass
class _Segment:
    """Rows of a search in one stretch of its order: ``(id, *sort values)`` per row, by ``keys``; the
    ``nulls`` stretch holds the resources without the sort parameter's value (``(id, id)``). In id order,
    ``merged`` are further queries of the same shape whose rows interleave with ``query``'s (one ordered
    walk each: a combo index's values): a page takes the first rows of each and merges them."""

    query: Any  # Select
    keys: list[SortKey]
    nulls: bool = False
    merged: list[Any] = field(default_factory=list)

    def values(self, row: Any) -> tuple[Value, ...]:
        """A row's sort values in the search's keys (a resource without a value sorts as None)."""
        return (None, row[1]) if self.nulls else tuple(row[1:])

    def whole(self) -> Any:
        """All the segment's rows (for a count): each resource once."""
        return union(self.query, *self.merged) if self.merged else self.query

    def page(self, where: list[Any], forward: bool, limit: int, leave_out: list[str]) -> Any:
        """The first ``limit`` rows meeting ``where`` in the keys' order (``forward``) or its reverse, but for
        the resources ``leave_out`` (by each query's own id column: no other table joins in)."""
        walks = [
            q.where(*where, *([q.selected_columns[0].not_in(leave_out)] if leave_out else []))
            .order_by(*order_by(self.keys, forward=forward))
            .limit(limit)
            for q in [self.query, *self.merged]
        ]
        if len(walks) == 1:
            return walks[0]
        rows = union(*(select(walk.subquery()) for walk in walks)).subquery()
        (key,) = self.keys
        merged = SortKey(key.code, key.desc, rows.c.k, False)
        return select(rows).order_by(*order_by([merged], forward=forward)).limit(limit)


@dataclass
class _Rows:
    """Ids in order with their sort values, and whether more rows lie beyond them."""

    ids: list[str]
    values: list[tuple[Value, ...]]
    more: bool


class SearchEngine:
    """Executes parsed searches against the store's database."""

    def __init__(self, store: Store, limits: PagingLimits | None = None) -> None:
        self.store = store
        self.registry = store.registry
        self.limits = limits or PagingLimits()

    def search(self, request: SearchRequest) -> SearchPage:
        """The first page of a search (its next pages through :meth:`page`)."""
        with self.store.reading() as conn:
            if request.summary == "count" or request.count == 0:
                return SearchPage([], total=self._count(conn, request), count=0)
            as_of = consistency.latest_sequence(conn)
            keys = self._keys(request)
            rows = self._rows(conn, request, keys, None, request.count)
            page = self._load_page(conn, request, request.resource_type, rows.ids)
            page.total = len(rows.ids) if not rows.more else self._total(conn, request)
        page.count = request.count
        if rows.more:
            page.search_id = self._save_search(request, as_of, page.total)
            page.next = Cursor(True, rows.values[-1], request.count)
        return page

    def stored_search(self, search_id: str, conn: Connection | None = None):  # type: ignore[no-untyped-def]
        """The stored search ``search_id`` (its type, query, total and consistency point) when the caller made
        it; 410 as for an unknown or expired search otherwise, so another caller learns nothing of it."""
        if conn is None:
            with self.store.reading() as c:
                return self.stored_search(search_id, c)
        snap = conn.execute(select(search_snapshots).where(search_snapshots.c.id == search_id)).first()
        if snap is None or snap.owner != access.current().owner:
            raise FhirError.single(
                410, "not-found", f"the search {search_id} has expired or is unknown; run the search again"
            )
        return snap

    def page(self, search_id: str, cursor_text: str | None, count: int, request: SearchRequest) -> SearchPage:
        """A page of a stored search (the caller's own: see :meth:`stored_search`): the first page again when
        ``cursor_text`` is None, else the page the cursor of a ``next`` or ``previous`` link names."""
        keys = self._keys(request)
        with self.store.reading() as conn:
            snap = self.stored_search(search_id, conn)
            cursor = Cursor.decode(cursor_text, keys) if cursor_text else None
            as_of = int(snap.as_of_seq or 0)
            changed = consistency.changed_since(conn, request.resource_type, as_of)
            forward = cursor is None or cursor.forward
            rows = self._rows(conn, request, keys, cursor, count, changed)
            if not forward:  # the rows before the cursor, nearest first: the page is their reverse
                rows.ids.reverse()
                rows.values.reverse()
            page = self._load_page(conn, request, snap.res_type, rows.ids)
        offset = 0 if cursor is None else cursor.offset
        if not forward and not rows.more:
            offset = 0  # the page before reached the first row: it is the first page
        page.total, page.offset, page.count, page.search_id = snap.total, offset, count, search_id
        if rows.ids and (not forward or rows.more):
            page.next = Cursor(True, rows.values[-1], offset + count)
        if rows.ids and offset > 0:
            page.previous = Cursor(False, rows.values[0], max(0, offset - count))
        return page

    def first(self, request: SearchRequest, offset: int = 0) -> SearchPage:
        """Matches ``offset`` to ``offset + count`` in order, with their includes, and no stored search
        (for callers that page by their own means, e.g. the web app: the cost follows ``offset + count``);
        ``total`` is not counted."""
        with self.store.reading() as conn:  # the plan of a page, ``offset`` rows longer
            rows = self._rows(conn, request, self._keys(request), None, offset + request.count)
            page = self._load_page(conn, request, request.resource_type, rows.ids[offset:])
        page.offset, page.count = offset, request.count
        return page

    def count(self, request: SearchRequest) -> int:
        """How many resources the search matches (what the caller may see)."""
        with self.store.reading() as conn:
            return self._count(conn, request)

    # -- internals --------------------------------------------------------------------------

    def _resolve_chains(self, conn: Connection, request: SearchRequest) -> None:
        """Look up the targets of each chain first: a chain reaching at most :data:`FEW_TARGETS` resources
        becomes a filter on their ids (an ordered one for a single target), which the index serves directly."""
        for i, found in list(request.filters.items()):
            if not found.targets:
                continue
            ids = {t: list(dict.fromkeys(conn.execute(q.limit(FEW_TARGETS + 1)).scalars())) for t, q in found.targets}
            if sum(len(v) for v in ids.values()) > FEW_TARGETS:
                continue
            resolved = found.resolved(ids)
            request.filters[i] = resolved
            request.id_queries[i] = resolved.ids()
            request.conditions[i] = resources.c.res_id.in_(resolved.ids())

    def _keys(self, request: SearchRequest) -> list[SortKey]:
        return order_keys(self.registry, request.resource_type, request.sort)

    def _base_query(self, request: SearchRequest, conditions: list | None = None):  # type: ignore[no-untyped-def]
        """Ids of the type's current resources the caller may see that meet ``conditions`` (the search's own
        when None)."""
        query = select(resources.c.res_id).where(
            resources.c.res_type == request.resource_type,
            resources.c.deleted.is_(False),
            *(request.conditions if conditions is None else conditions),
        )
        visible = access.labelled_condition(request.resource_type, resources.c.res_id)
        return query if visible is None else query.where(visible)

    def _count(self, conn: Connection, request: SearchRequest, bound: int | None = None) -> int:
        """How many resources the search matches (up to ``bound`` + 1 when bounded), by the same plan as its
        pages in id order (:meth:`_plan`)."""
        (segment,) = self._plan(conn, request, order_keys(self.registry, request.resource_type, []), counting=True)
        query = segment.whole()
        if bound is not None:
            query = query.limit(bound + 1)
        return conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()

    def _total(self, conn: Connection, request: SearchRequest) -> int | None:
        """The total of a search spanning pages: counted for ``_total=accurate``, counted up to the bound for
        ``_total=estimate`` (left out beyond it), left out otherwise (counting costs what the matches cost)."""
        if request.total == "accurate":
            return self._count(conn, request)
        if request.total != "estimate":
            return None
        counted = self._count(conn, request, self.limits.count_bound)
        return counted if counted <= self.limits.count_bound else None

    def _id_query(self, request: SearchRequest):  # type: ignore[no-untyped-def]
        """The search's ids in its order (for conditional matches)."""
        return self._base_query(request).order_by(*order_by(self._keys(request)))

    def _rows(
        self,
        conn: Connection,
        request: SearchRequest,
        keys: list[SortKey],
        cursor: Cursor | None,
        count: int,
        changed: consistency.Changed | None = None,
    ) -> _Rows:
        """Up to ``count`` rows from the cursor on (before it, nearest first, for a backward cursor), with
        the rows changed since the consistency point in their place at that point."""
        forward = cursor is None or cursor.forward
        segments = self._plan(conn, request, keys)
        in_nulls = cursor is not None and len(segments) == 2 and cursor.values[0] is None
        found: list[tuple[tuple[Value, ...], str]] = []
        for segment in segments if forward else reversed(segments):
            if len(found) > count:
                break
            where = []
            if cursor is not None and segment.nulls == in_nulls:  # the cursor lies in this segment
                edge = (cursor.values[-1],) if segment.nulls else cursor.values
                where.append(beyond(segment.keys, edge, forward=forward))
            elif cursor is not None and segment.nulls != forward:
                continue  # the cursor lies beyond this segment
            leave_out = changed.ids if changed is not None else []
            ordered = segment.page(where, forward, count + 1 - len(found), leave_out)
            found += [(segment.values(row), row[0]) for row in conn.execute(ordered)]
        if changed is not None and changed.existing:
            earlier = consistency.earlier_positions(
                conn, self.registry, request.resource_type, keys, changed, self._base_query(request)
            )
            position = python_order(keys)
            if cursor is not None:
                edge_position = position(cursor.values)
                earlier = [e for e in earlier if (position(e[0]) > edge_position) == forward and e[0] != cursor.values]
            found += earlier
            found.sort(key=lambda row: position(row[0]), reverse=not forward)
        more = len(found) > count
        found = found[:count]
        return _Rows([rid for _, rid in found], [values for values, _ in found], more)

    def _plan(
        self, conn: Connection, request: SearchRequest, keys: list[SortKey], *, counting: bool = False
    ) -> list[_Segment]:
        """The search's rows with their sort values, shaped so that a page costs what it holds.

        * In id order with exact values on every component of a combo index (:meth:`_combo`): the combo's
          rows of those values drive (one ordered walk per combination, merged), the other conditions are
          probed per row, and the walk stops once the page is full (a count counts the combo's rows); unless
          another condition keeps fewer than ten pages of resources (as below).
        * In id order with an ordered index filter (one token, reference or uri value): that filter's index
          rows come in id order and drive, the other conditions are probed per row, and the walk stops
          once the page is full; unless another condition keeps fewer than ten pages of resources: then
          that one drives (its ids looked up, the rest probed, the few rows sorted).
        * Otherwise a condition keeping fewer than :data:`SMALL` resources drives in the same way.
        * Sorted by one search parameter: its index is walked in the sort's order (the resources with a
          value), then the resources without one, by id; the conditions are probed per row.
        * Otherwise the database walks the type's rows in the search's order, probing every condition;
          when ``counting`` (every match is visited anyway) the smallest condition drives instead.
        Conditions are sized by counting their matches up to a bound, never further; chains reaching few
        resources are looked up first (:meth:`_resolve_chains`).
        """
        self._resolve_chains(conn, request)
        id_order = len(keys) == 1
        ordered = [i for i in request.filters if request.filters[i].ordered]
        positive = {i: q for i, q in enumerate(request.id_queries) if q is not None}
        combo = self._combo(request) if id_order else None
        if combo is not None or (id_order and ordered):
            few = 10 * max(request.count, 1)
            covered = combo[1] if combo is not None else ordered
            sizes = {
                i: self._size(conn, request.sizing.get(i, q), few)
                for i, q in positive.items()
                if i not in ordered and i not in covered
            }
            tiny = [i for i in sizes if sizes[i] < few]
            if tiny:
                return [self._drive(request, min(tiny, key=sizes.__getitem__), keys)]
            if combo is not None:
                return [self._combo_walk(request, *combo, keys[0].desc)]
            if len(ordered) > 1:
                return [self._walk(request, self._densest(conn, request, ordered, keys[0].desc), keys[0].desc)]
            return [self._walk(request, ordered[0], keys[0].desc)]
        sizes = {i: self._size(conn, request.sizing.get(i, q), SMALL) for i, q in positive.items()}
        smallest = min(sizes, key=sizes.__getitem__) if sizes else None
        if smallest is not None and (sizes[smallest] < SMALL or counting):
            return [self._drive(request, smallest, keys)]
        if len(keys) == 2 and keys[0].nullable:
            return self._sort_walk(request, keys)
        return [_Segment(self._probing(request, drive=None).add_columns(*(k.expr for k in keys)), keys)]

    def _combo(self, request: SearchRequest) -> tuple[str, list[int], list[str]] | None:
        """The combo index that serves the search, if any: one whose every component the search filters
        on with exact values (:attr:`IndexFilter.keys`), naming at most :data:`COMBO_WALKS` combinations
        (the fewest of the combos that do); as (its code, the filters it answers, the combined values)."""
        best = None
        for combo in self.registry.combos(request.resource_type):
            chosen = []
            for code in combo.components:
                exact = [i for i, f in request.filters.items() if f.param == code and f.keys is not None]
                if not exact:
                    break
                chosen.append(min(exact, key=lambda i: len(request.filters[i].keys or ())))
            else:
                values = combo.values([request.filters[i].keys or () for i in chosen])
                if 0 < len(values) <= COMBO_WALKS and (best is None or len(values) < len(best[2])):
                    best = (combo.code, chosen, values)
        return best

    def _densest(self, conn: Connection, request: SearchRequest, ordered: list[int], descending: bool) -> int:
        """Of several ordered filters, the one whose first :data:`SAMPLE` index rows (in the walk's order) hold
        the most matches of the whole search: matches cluster (the open referrals are the newest), so the
        sizes of the filters alone do not tell which walk fills a page soonest; when none holds any, the
        one with fewer rows (counted up to a bound)."""
        hits, sizes = {}, {}
        for i in ordered:
            table = request.filters[i].table
            first = (
                select(table.c.res_type, table.c.res_id)
                .where(*request.filters[i].rows())
                .order_by(table.c.res_id.desc() if descending else table.c.res_id)
                .limit(SAMPLE)
                .subquery()
            )
            matching = self._driven(request, first, (i,)).distinct().subquery()
            hits[i] = conn.execute(select(func.count()).select_from(matching)).scalar_one()
        if any(hits.values()):
            return max(ordered, key=hits.__getitem__)
        for i in ordered:  # no match near the start of any walk: the one with fewer rows to walk
            sizes[i] = self._size(conn, request.filters[i].ids(), 20 * SMALL)
        return min(ordered, key=sizes.__getitem__)

    @staticmethod
    def _size(conn: Connection, ids, bound: int) -> int:  # type: ignore[no-untyped-def]
        """How many ids a condition keeps, counted up to ``bound``."""
        return conn.execute(select(func.count()).select_from(ids.limit(bound).subquery())).scalar_one()

    def _drive(self, request: SearchRequest, drive: int, keys: list[SortKey]) -> _Segment:
        """The rows of a small condition's ids, the others probed, sorted by the search's keys."""
        return _Segment(self._probing(request, drive=drive).add_columns(*(k.expr for k in keys)), keys)

    def _probing(self, request: SearchRequest, drive: int | None):  # type: ignore[no-untyped-def]
        """Rows of ``resources`` with every condition: the ``drive`` one as an id lookup, the other index
        filters as per-row probes (so the database does not read all their matches first)."""
        conditions = [
            condition if i == drive else self._probe(request, i, resources.c.res_id)
            for i, condition in enumerate(request.conditions)
        ]
        return self._base_query(request, conditions)

    @staticmethod
    def _probe(request: SearchRequest, index: int, id_column):  # type: ignore[no-untyped-def]
        """Condition ``index`` as a check of the row whose id is ``id_column`` (index filters and ``_has``);
        other conditions as they are (on ``resources``)."""
        if index in request.filters:
            return request.filters[index].holds_for(id_column)
        if index in request.probes:
            return request.probes[index](id_column)
        return request.conditions[index]

    def _driven(self, request: SearchRequest, rows, skip: Collection[int], *where):  # type: ignore[no-untyped-def]
        """Ids from the index rows ``rows`` (an alias), with the conditions other than those of ``skip`` (the
        ones ``rows`` answer) probed per row and the caller's access applied. Index rows exist for current,
        undeleted resources only, so the resource row is joined only for a condition that is not an index
        filter."""
        others = [i for i in range(len(request.conditions)) if i not in skip]
        probed = [i for i in others if i in request.filters or i in request.probes]
        conditions = [self._probe(request, i, rows.c.res_id) for i in probed]
        plain = [request.conditions[i] for i in others if i not in probed]
        query = select(rows.c.res_id).where(*where, *conditions)
        if plain:
            joined = rows.join(
                resources, and_(resources.c.res_type == rows.c.res_type, resources.c.res_id == rows.c.res_id)
            )
            query = query.select_from(joined).where(resources.c.deleted.is_(False), *plain)
        visible = access.labelled_condition(request.resource_type, rows.c.res_id)
        return query if visible is None else query.where(visible)

    def _walk(self, request: SearchRequest, drive: int, descending: bool) -> _Segment:
        """Rows in id order from the index rows of the ordered filter ``drive``, the other conditions probed."""
        driver = request.filters[drive]
        rows = driver.table.alias("driver")
        query = self._driven(request, rows, (drive,), *driver.rows(rows))
        return _Segment(
            query.add_columns(rows.c.res_id.label("k")).distinct(), [SortKey("_id", descending, rows.c.res_id, False)]
        )

    def _combo_walk(
        self, request: SearchRequest, code: str, covered: list[int], values: list[str], descending: bool
    ) -> _Segment:
        """Rows in id order from the combo index ``code``'s rows of ``values`` (answering the filters
        ``covered``): one ordered walk per value, merged; the other conditions probed. A combo holds one row
        per resource and value, so a walk needs no DISTINCT."""
        rows = idx_combo.alias("combo")
        mine = (rows.c.res_type == request.resource_type, rows.c.param == code)
        walks = [
            self._driven(request, rows, covered, *mine, rows.c.value == value).add_columns(rows.c.res_id.label("k"))
            for value in values
        ]
        return _Segment(walks[0], [SortKey("_id", descending, rows.c.res_id, False)], merged=walks[1:])

    def _sort_walk(self, request: SearchRequest, keys: list[SortKey]) -> list[_Segment]:
        """Sorted by one parameter: its index rows in the sort's order (each resource at its smallest value
        ascending, its largest descending), then the resources without a value, by id."""
        sort, tie = keys
        param = self.registry.get(request.resource_type, sort.code)
        assert param is not None
        table = INDEX_TABLES[param.type]
        asc_col, desc_col = SORT_COLUMNS[param.type]
        column = desc_col if sort.desc else asc_col
        rows, other = table.alias("walk"), table.alias("other")
        extreme = ~exists().where(
            other.c.res_type == rows.c.res_type,
            other.c.res_id == rows.c.res_id,
            other.c.param == sort.code,
            (other.c[column] > rows.c[column]) if sort.desc else (other.c[column] < rows.c[column]),
        )
        mine = (rows.c.res_type == request.resource_type, rows.c.param == sort.code, rows.c[column].is_not(None))
        walked = self._driven(request, rows, (), *mine, extreme).add_columns(rows.c[column], rows.c.res_id.label("k"))
        valued = _Segment(
            walked.distinct(),
            [SortKey(sort.code, sort.desc, rows.c[column], False), SortKey("_id", tie.desc, rows.c.res_id, False)],
        )
        present = exists().where(
            table.c.res_type == resources.c.res_type, table.c.res_id == resources.c.res_id, table.c.param == sort.code
        )
        bare = self._probing(request, drive=None).where(~present).add_columns(resources.c.res_id)
        return [valued, _Segment(bare, [tie], nulls=True)]

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
        keys = []
        wanted = (s.resource_type for s in sources if s.resource_type == inc.source_type or inc.param == "*")
        for rtype in dict.fromkeys(wanted):
            ids = [s.id for s in sources if s.resource_type == rtype]
            query = select(table.c.target_type, table.c.target_id).where(
                table.c.res_type == rtype,
                table.c.res_id.in_(ids),
                table.c.target_id.is_not(None),
                table.c.target_type.is_not(None),
            )
            if inc.param != "*":
                query = query.where(table.c.param == inc.param)

            if inc.target_type:
                query = query.where(table.c.target_type == inc.target_type)
            keys.extend((r.target_type, r.target_id) for r in conn.execute(query))
        return keys

    def _save_search(self, request: SearchRequest, as_of: int, total: int | None) -> str:
        """Record a search that spans pages (its query, caller, total and consistency point)."""
        search_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        owner = access.current().owner

        def work(unit) -> None:  # type: ignore[no-untyped-def]
            unit.conn.execute(
                insert(search_snapshots).values(
                    id=search_id,
                    created=now.isoformat(),
                    res_type=request.resource_type,
                    query=urlencode(request.used),
                    total=total,
                    owner=owner,
                    as_of_seq=as_of,
                )
            )
            self._expire_old(unit.conn, now, owner)

        self.store.write(work)
        return search_id

    def _expire_old(self, conn: Connection, now: datetime, owner: str) -> None:
        """Drop searches past their lifetime, and the owner's oldest beyond ``max_count``."""
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
            conn.execute(delete(search_snapshots).where(search_snapshots.c.id.in_(old_ids)))
