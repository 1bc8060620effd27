"""Combo index rows for resources stored before their combo existed (a database of an earlier schema or
data version), built from the stored index rows when a store opens the database.

Each combo the registry defines is recorded in ``schema_info`` (key ``combo:<type>:<code>``, value its
components) once its rows are built. When a store opens a database whose record differs from its
combos (a new combo, changed components, a combo no longer defined), :func:`ensure_combo_rows` deletes
that combo's rows and builds them anew from the components' index rows, a batch of resources at a time
with a progress line each, in one write transaction before the store serves anything (so a half-built
combo is never searched); later writes keep them (``core/indexing/rows.py``). On PostgreSQL the
transaction locks ``idx_combo`` against writers first, so no write in flight meanwhile leaves rows the
build cannot see.

The combined values are computed in SQL exactly as :func:`fhir_server.core.indexing.combos.combo_rows`
computes them on a write (component keys, escaping, ``$`` between them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, delete, func, insert, literal, select

from fhir_server.core.indexing.combos import Combo
from fhir_server.core.storage.postgres import lock_schema
from fhir_server.core.storage.schema import INDEX_TABLES, idx_combo, resources, schema_info
from fhir_server.core.storage.statement_timeout import without_limit

if TYPE_CHECKING:
    from fhir_server.core.storage.store import Store

log = logging.getLogger(__name__)

#: Resources whose combo rows one statement builds.
BATCH = 20000
_PREFIX = "combo:"


def ensure_combo_rows(store: Store) -> int:
    """Build the rows of every combo of ``store.registry`` not yet built in its database (and drop those of
    combos no longer defined); returns how many combo rows were written. Cheap when all are built."""
    wanted = {
        f"{_PREFIX}{combo.resource_type}:{combo.code}": combo
        for combos in store.registry.combos_by_type.values()
        for combo in combos
    }
    with store.db.read.connect() as conn:
        if _built(conn) == {key: _record(c) for key, c in wanted.items()}:
            return 0

    with store.db.write.begin() as conn, without_limit(conn):  # as the schema's upgrades: the writer holds it
        if not store.db.is_sqlite:
            lock_schema(conn)  # one process builds; the others find it built
            conn.exec_driver_sql(f"LOCK TABLE {idx_combo.name} IN SHARE ROW EXCLUSIVE MODE")
        built = _built(conn)
        written = 0
        for key, record in built.items():
            if key not in wanted or record != _record(wanted[key]):
                rtype, _, code = key[len(_PREFIX) :].partition(":")
                conn.execute(delete(idx_combo).where(idx_combo.c.res_type == rtype, idx_combo.c.param == code))
                conn.execute(delete(schema_info).where(schema_info.c.key == key))
        for key, combo in wanted.items():
            if built.get(key) != _record(combo):
                written += build(conn, combo)
                conn.execute(insert(schema_info).values(key=key, value=_record(combo)))
    return written


def build(conn: Connection, combo: Combo, batch: int = BATCH) -> int:
    """Delete and build the rows of ``combo`` from the stored index rows of its components, ``batch``
    resources at a time (a progress line each); returns how many rows were written."""
    rtype = combo.resource_type
    if conn.dialect.name == "postgresql":  # rows loaded since the last autovacuum: plan the joins knowing them
        conn.exec_driver_sql(f"ANALYZE {', '.join(sorted({INDEX_TABLES[kind].name for kind in combo.kinds}))}")
    conn.execute(delete(idx_combo).where(idx_combo.c.res_type == rtype, idx_combo.c.param == combo.code))
    # the ids walked in batches from the primary key alone (its rows carry no body); the combo's rows come from
    # index rows, which only current, undeleted resources have
    mine = resources.c.res_type == rtype
    total = conn.execute(select(func.count()).select_from(resources).where(mine)).scalar_one()
    log.info("building combo index %s of %s: %s resources", combo.code, rtype, total)
    after, done, written = "", 0, 0
    while done < total:
        last = conn.execute(
            select(resources.c.res_id)
            .where(mine, resources.c.res_id > after)
            .order_by(resources.c.res_id)
            .offset(batch - 1)
            .limit(1)
        ).scalar()
        written += conn.execute(
            insert(idx_combo).from_select(["res_type", "res_id", "param", "value"], _rows(combo, after, last))
        ).rowcount
        done = min(total, done + batch)
        log.info("combo index %s of %s: %s of %s resources", combo.code, rtype, done, total)
        if last is None:
            break
        after = last
    return written


def _rows(combo: Combo, after: str, upto: str | None):  # type: ignore[no-untyped-def]
    """SQL: the combo rows of the resources with ids in (``after``, ``upto``] (to the end when None)."""
    parts = [INDEX_TABLES[kind].alias(f"c{i}") for i, kind in enumerate(combo.kinds)]
    first = parts[0]
    where: list[ColumnElement] = [first.c.res_type == combo.resource_type, first.c.res_id > after]
    if upto is not None:
        where.append(first.c.res_id <= upto)
    keys: list[ColumnElement] = []
    for part, code, kind in zip(parts, combo.components, combo.kinds, strict=True):
        where += [part.c.res_type == first.c.res_type, part.c.res_id == first.c.res_id, part.c.param == code]
        if kind == "token":
            where.append(part.c.code.is_not(None))
            keys.append(part.c.code)
        else:
            where += [part.c.target_type.is_not(None), part.c.target_id.is_not(None)]
            keys.append(part.c.target_type + "/" + part.c.target_id)
    value = _escaped(keys[0])
    for key in keys[1:]:
        value = value + "$" + _escaped(key)
    return (
        select(first.c.res_type, first.c.res_id, literal(combo.code), value)
        .select_from(*parts)
        .where(*where)
        .distinct()
    )


def _escaped(key: ColumnElement) -> ColumnElement:
    """SQL of :func:`fhir_server.core.indexing.combos.escape`."""
    return func.replace(func.replace(key, "\\", "\\\\"), "$", "\\$")


def _record(combo: Combo) -> str:
    return ",".join(combo.components)


def _built(conn: Connection) -> dict[str, str]:
    """The combos recorded as built in the database: key -> components."""
    rows = conn.execute(select(schema_info.c.key, schema_info.c.value).where(schema_info.c.key.startswith(_PREFIX)))
    return {key: value for key, value in rows}
