"""Keyset paging: a search's order as SQL sort keys, the cursor at a page's edge, and what lies beyond it.

Every order ends with the resource id, so the order is total and a page's last row (its sort values and
id) says exactly where the next page starts: the next page is "the rows after these values", one index
range, whatever page it is. Nothing is stored per match. Sort keys of a search parameter follow the
FHIR rule for repeating elements: ascending by the smallest value, descending by the largest; resources
without a value come last in both directions.

The same order is needed in Python for the few rows written while a client pages (see
:mod:`~fhir_server.core.search.consistency`): :func:`python_order` compares value tuples as the SQL does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true

from fhir_server.core.indexing.parameters import SearchRegistry
from fhir_server.core.issues import FhirError
from fhir_server.core.storage.schema import INDEX_TABLES, resources

#: Per parameter type: the index column an ascending sort takes the smallest of, and the column a
#: descending sort takes the largest of.
SORT_COLUMNS = {
    "string": ("value_norm", "value_norm"),
    "token": ("code", "code"),
    "date": ("low", "high"),
    "number": ("low", "high"),
    "quantity": ("low", "high"),
    "uri": ("value", "value"),
    "reference": ("target_id", "target_id"),
}

Value = str | float | int | None


@dataclass(frozen=True)
class SortKey:
    """One key of a search's order: the parameter (``_id``, ``_lastUpdated`` or a search parameter), its
    direction, and its SQL value for a row of ``resources``."""

    code: str
    desc: bool
    expr: Any  # ColumnElement: a column or a correlated scalar subquery
    nullable: bool


def order_keys(registry: SearchRegistry, resource_type: str, sort: Sequence[tuple[str, bool]]) -> list[SortKey]:
    """The keys of a search's ``_sort``, ending with the id (in the first key's direction when not sorted by
    the id already)."""
    keys: list[SortKey] = []
    for code, desc in sort:
        if code == "_id":
            keys.append(SortKey(code, desc, resources.c.res_id, False))
            break  # the id is unique: keys after it never decide anything
        if code == "_lastUpdated":
            keys.append(SortKey(code, desc, resources.c.last_updated, False))
            continue
        param = registry.get(resource_type, code)
        assert param is not None  # checked by the parser
        table = INDEX_TABLES[param.type]
        asc_col, desc_col = SORT_COLUMNS[param.type]
        agg = func.max(table.c[desc_col]) if desc else func.min(table.c[asc_col])
        value = (
            select(agg)
            .where(
                table.c.res_type == resources.c.res_type,
                table.c.res_id == resources.c.res_id,
                table.c.param == code,
            )
            .scalar_subquery()
        )
        keys.append(SortKey(code, desc, value, True))
    if not keys or keys[-1].code != "_id":  # ties go the first key's way, so an index walks them in order
        keys.append(SortKey("_id", bool(keys) and keys[0].desc, resources.c.res_id, False))
    return keys


def order_by(keys: Sequence[SortKey], *, forward: bool = True) -> list[ColumnElement]:
    """ORDER BY terms: the search's order, or (``forward`` False) its exact reverse, nulls last / first."""
    terms = []
    for key in keys:
        descending = key.desc if forward else not key.desc
        term = key.expr.desc() if descending else key.expr.asc()
        if key.nullable:
            term = term.nulls_last() if forward else term.nulls_first()
        terms.append(term)
    return terms


def beyond(keys: Sequence[SortKey], values: Sequence[Value], *, forward: bool = True) -> ColumnElement:
    """SQL: the row comes after (``forward``) or before the row whose key values are ``values``."""
    alternatives = []
    ties: list[ColumnElement] = []
    for key, value in zip(keys, values, strict=True):
        alternatives.append(and_(*ties, _strictly(key, value, forward)))
        ties.append(key.expr.is_(None) if value is None else key.expr == value)
    return or_(*alternatives)


def _strictly(key: SortKey, value: Value, forward: bool) -> ColumnElement:
    """One key strictly beyond ``value`` in the page direction (nulls sort last in the search's order)."""
    if value is None:  # nothing comes after a null, everything else before it
        return false() if forward else (key.expr.is_not(None) if key.nullable else true())
    later = key.expr < value if key.desc else key.expr > value
    earlier = key.expr > value if key.desc else key.expr < value
    if forward:
        return or_(later, key.expr.is_(None)) if key.nullable else later
    return earlier


def python_order(keys: Sequence[SortKey]) -> Callable[[Sequence[Value]], Any]:
    """A sort key function over value tuples that orders them as :func:`order_by` does."""

    def compare(a: Sequence[Value], b: Sequence[Value]) -> int:
        for key, x, y in zip(keys, a, b, strict=True):
            if x == y:
                continue
            if x is None or y is None:
                return 1 if x is None else -1  # nulls last
            less = x < y  # type: ignore[operator]
            return (1 if less else -1) if key.desc else (-1 if less else 1)
        return 0

    return functools.cmp_to_key(compare)


@dataclass(frozen=True)
class Cursor:
    """The edge of a page: the key values of its last row (``forward``: the page after it) or of its first
    row (the page before it), and where the page asked for starts (for the links)."""

    forward: bool
    values: tuple[Value, ...]
    offset: int

    def encode(self) -> str:
        """Readable text for a link (percent-encoded by the link, so log masking still sees what it holds)."""
        return json.dumps(["next" if self.forward else "previous", self.offset, *self.values], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str, keys: Sequence[SortKey]) -> Cursor:
        """The cursor of a paging link; 400 naming ``_cursor`` when it is not one of this search's."""
        try:
            data = json.loads(text)
            direction, offset, *values = data
            if direction not in ("next", "previous") or not isinstance(offset, int) or offset < 0:
                raise ValueError
            if len(values) != len(keys) or not all(v is None or isinstance(v, str | int | float) for v in values):
                raise ValueError
        except (ValueError, TypeError):
            raise FhirError.single(
                400, "invalid", "_cursor is not a paging position of this search: follow the Bundle's links", "_cursor"
            ) from None
        return cls(direction == "next", tuple(values), offset)
