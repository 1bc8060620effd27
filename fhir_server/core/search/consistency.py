"""Pages that agree with the first page while writes go on: the search's consistency point.

A search that spans pages records the version sequence (``resource_versions.seq``) of the last write
before its first page. Later pages show the data as ordered then:

* resources created after that point are not shown;
* resources updated after it keep the place their version at that point had in the order (its sort
  values, computed from that version's body), and are shown as they are now if they still match;
* resources deleted after it are left out.

Only the resources of the search's type written since that point are looked at (the type-and-sequence
index finds them), so the cost follows the writes made while the client pages, not the matches. When
more than :data:`MAX_CHANGED` versions of them were written, the search is too old to continue consistently: 410,
run it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Select, func, select

from fhir_server.core import jsonio
from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.indexing.rows import rows_for_param
from fhir_server.core.issues import FhirError
from fhir_server.core.search.keyset import SORT_COLUMNS, SortKey, Value
from fhir_server.core.storage.schema import resource_versions, resources

#: Writes of the searched type after the consistency point beyond which later pages are refused.
MAX_CHANGED = 5000


def latest_sequence(conn: Connection) -> int:
    """The version sequence of the last write (the consistency point of a search starting now)."""
    return int(conn.execute(select(func.max(resource_versions.c.seq))).scalar() or 0)


@dataclass
class Changed:
    """Resources of one type written after a consistency point: id → the sequence of its version at that
    point (None: created after it)."""

    before: dict[str, int | None]

    @property
    def ids(self) -> list[str]:
        return list(self.before)

    @property
    def existing(self) -> list[str]:
        return [rid for rid, seq in self.before.items() if seq is not None]


def changed_since(conn: Connection, resource_type: str, as_of: int) -> Changed:
    """The resources of ``resource_type`` written after ``as_of`` (410 when there are too many)."""
    v = resource_versions.c
    # versions, not distinct ids: DISTINCT would have the database walk the type's versions in id order
    written = list(
        conn.execute(
            select(v.res_id).where(v.res_type == resource_type, v.seq > as_of).limit(MAX_CHANGED + 1)
        ).scalars()
    )
    ids = list(dict.fromkeys(written))
    if len(written) > MAX_CHANGED:
        raise FhirError.single(
            410,
            "not-found",
            f"more than {MAX_CHANGED} {resource_type} versions were written since this search began; "
            "run the search again",
        )
    before: dict[str, int | None] = dict.fromkeys(ids)
    if ids:
        rows = conn.execute(
            select(v.res_id, func.max(v.seq))
            .where(v.res_type == resource_type, v.res_id.in_(ids), v.seq <= as_of)
            .group_by(v.res_id)
        )
        before.update({rid: int(seq) for rid, seq in rows})
    return Changed(before)


def earlier_positions(
    conn: Connection,
    registry: SearchRegistry,
    resource_type: str,
    keys: Sequence[SortKey],
    changed: Changed,
    matching: Select,
) -> list[tuple[tuple[Value, ...], str]]:
    """(sort values at the consistency point, id) of the changed resources that existed then and match
    now (``matching``: the search's id query, restricted here to them)."""
    existing = changed.existing
    if not existing:
        return []
    still = set(conn.execute(matching.where(resources.c.res_id.in_(existing))).scalars())
    if not still:
        return []
    v = resource_versions.c
    seqs = [changed.before[rid] for rid in existing if rid in still]
    old = conn.execute(select(v.res_id, v.last_updated, v.body).where(v.seq.in_(seqs)))
    positions = []
    for rid, last_updated, body in old:
        resource = jsonio.loads(body) if body else {}
        values = tuple(_old_value(registry, resource_type, key, rid, last_updated, resource) for key in keys)
        positions.append((values, rid))
    return positions


def _old_value(
    registry: SearchRegistry, resource_type: str, key: SortKey, rid: str, last_updated: str, resource: dict
) -> Value:
    if key.code == "_id":
        return rid
    if key.code == "_lastUpdated":
        return last_updated
    param = registry.get(resource_type, key.code)
    assert param is not None
    asc_col, desc_col = SORT_COLUMNS[param.type]
    column = desc_col if key.desc else asc_col
    found = [row[column] for row in rows_for_param(param, resource) if row.get(column) is not None]
    if not found:
        return None
    return max(found) if key.desc else min(found)
