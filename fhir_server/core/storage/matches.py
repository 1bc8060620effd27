"""Plain matches (equality on indexed values): the SQL selecting the ids a search of them selects.

Conditional creates, updates and deletes, and the delivery of referrals, ask "which current resources
meet these plain conditions?" many times a second; :meth:`Store.match_ids` answers with prepared SQL
text built here once per shape of conditions, with the same rows in the same order as the general
search. PostgreSQL plans the text itself; on SQLite (no statistics) the text fixes the plan: see
:class:`MatchText`. A caller whose access filters gets :func:`match_query`, the same selection as a
SQLAlchemy statement the access condition is added to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from fhir_server.core.indexing.rows import IndexMatch
from fhir_server.core.storage.dialect import Dialect
from fhir_server.core.storage.schema import INDEX_TABLES, resources

#: A plain condition met by this many index rows or more is answered by walking the type in search order.
SCAN_FROM = 64


def match_sql_text(
    shape: tuple[tuple[str, tuple[str, ...]], ...], limit: int | None, scan: bool, *, sqlite: bool, ordered: bool = True
) -> str:
    """SQL text selecting what :func:`match_query` selects (parameters: type, False, then per condition
    the type, the parameter code and the column values)."""
    mark = "?" if sqlite else "%s"
    if scan:  # the type's rows in id order (its primary key)
        head = f"SELECT res_id FROM {resources.name} AS r WHERE res_type = {mark} AND deleted = {mark}"
    else:
        head = f"SELECT res_id FROM {resources.name} WHERE res_type = {mark} AND deleted = {mark}"
    parts = [head]
    for kind, columns in shape:
        table = INDEX_TABLES[kind]
        if scan:
            equal = "".join(f" AND i.{column} = {mark}" for column in columns)
            parts.append(
                f" AND EXISTS (SELECT 1 FROM {table.name} AS i INDEXED BY ix_{table.name}_owner "
                f"WHERE i.res_type = {mark} AND i.param = {mark} AND i.res_id = r.res_id{equal})"
            )
        else:
            equal = "".join(f" AND {column} = {mark}" for column in columns)
            parts.append(
                f" AND res_id IN (SELECT res_id FROM {table.name} WHERE res_type = {mark} AND param = {mark}{equal})"
            )
    parts.append(" ORDER BY res_id" if ordered else "")
    parts.append(f" LIMIT {int(limit)}" if limit is not None else "")
    return "".join(parts)


def match_query(resource_type: str, matches: list[IndexMatch], limit: int | None, *, sort_apart: bool = False) -> Any:
    """The ids of current resources meeting every plain condition, ordered as a search orders them.

    ``sort_apart`` sorts by an expression of the id (the same order) that no index serves, so SQLite looks
    the few matches up by primary key instead of walking the type (see :class:`MatchText`)."""
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
        .order_by(resources.c.res_id.concat("") if sort_apart else resources.c.res_id)
    )
    return query.limit(limit) if limit is not None else query


def is_common(run: Callable[[str, Sequence[Any]], list[tuple]], resource_type: str, match: IndexMatch) -> bool:
    """True when at least :data:`SCAN_FROM` index rows meet the condition (counting stops there; SQLite)."""
    table = INDEX_TABLES[match.kind].name
    equal = "".join(f" AND {column} = ?" for column, _ in match.values)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE res_type = ? AND param = ?{equal} LIMIT {SCAN_FROM})"
    return run(sql, [resource_type, match.param, *(value for _, value in match.values)])[0][0] >= SCAN_FROM


class MatchText:
    """The SQL text of plain matches, built once per shape of conditions."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._sql: dict[tuple, str] = {}

    def text(self, matches: list[IndexMatch], limit: int | None, scan: bool, ordered: bool = True) -> str:
        """The SQL text of :func:`match_query` for this shape of conditions (built once per shape).

        Without statistics SQLite may walk every resource of the type in id order (to skip the sort)
        and test each against the conditions: a conditional create would then cost time in proportion
        to the number of stored resources of its type. So on SQLite the text chooses: a few matching
        index rows are looked up by primary key; a condition many resources meet (``scan``) walks the
        type in search order, probing the index rows' owner index, and stops at ``limit``. Same rows,
        same order.
        """
        shape = (tuple((m.kind, tuple(column for column, _ in m.values)) for m in matches), limit, scan, ordered)
        sql = self._sql.get(shape)
        if sql is None:
            sql = self._sql[shape] = match_sql_text(
                shape[0], limit, scan, sqlite=self.dialect.plans_by_hand, ordered=ordered
            )
        return sql
