"""Parsing FHIR search parameters and turning them into SQL over the index tables.

A search is parsed into a :class:`SearchRequest` (filters, sort, paging and result options);
unknown parameters are collected so the caller can ignore them (lenient) or refuse (strict).
Every parameter becomes a condition ``resources.res_id IN (subquery)``; chains and ``_has``
nest those subqueries. Every resource a condition joins through (a chain's target, a ``_has``
source, at any depth) must be one the caller may see (:mod:`~fhir_server.core.storage.access`) and
whose type its scopes let it read, so no condition tells anything about what the caller cannot see.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sqlalchemy import ColumnElement, FromClause, Select, Table, and_, false, literal, or_, select
from sqlalchemy.sql.util import ClauseAdapter

from fhir_server.core.indexing.parameters import RESULT_PARAMETERS, SearchParam, SearchRegistry
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.indexing.values import date_range, normalise_text, number_range
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import INDEX_TABLES, resources
from fhir_server.core.text import clean, text_problem

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
DEFAULT_COUNT = 20
MAX_COUNT = 1000
SUMMARY_MODES = ("true", "false", "count", "data", "text")


@dataclass
class Include:
    source_type: str
    param: str
    target_type: str | None
    iterate: bool = False
    reverse: bool = False


@dataclass(frozen=True)
class IndexFilter:
    """A condition on one index table: ``resource_type`` resources with a ``param`` row whose columns
    satisfy ``value``. When ``ordered``, ``value`` is one equality on the index's leading value columns, so
    the matching rows come from the index in id order: the engine can walk them as the search's driver."""

    resource_type: str
    param: str
    table: Table
    value: ColumnElement
    ordered: bool = False
    #: A chain's targets: per target type, the ids of the resources its chain matches (see :meth:`resolved`).
    targets: tuple[tuple[str, Select], ...] = ()
    #: The exact values the filter is (any of them), as a combo index names a component's values
    #: (:func:`~fhir_server.core.indexing.combos.component_key`); None when it is no such filter.
    keys: tuple[str, ...] | None = None

    def resolved(self, found: dict[str, list[str]]) -> IndexFilter:
        """The chain's filter on the target ids ``found`` (by type), looked up beforehand: one target is an
        ordered filter (its referrers come from the index in id order)."""
        table = self.table
        conds = [and_(table.c.target_type == t, table.c.target_id.in_(ids)) for t, ids in found.items() if ids]
        one = sum(len(ids) for ids in found.values()) == 1
        keys = tuple(f"{t}/{i}" for t, ids in found.items() for i in ids)
        return IndexFilter(self.resource_type, self.param, table, or_(false(), *conds), ordered=one, keys=keys)

    def rows(self, table: FromClause | None = None) -> list[ColumnElement]:
        """The filter as clauses on ``table`` (the index table, or an alias of it for an ordered filter)."""
        if table is None:
            return [self.table.c.res_type == self.resource_type, self.table.c.param == self.param, self.value]
        value = ClauseAdapter(table).traverse(self.value)
        return [table.c.res_type == self.resource_type, table.c.param == self.param, value]

    def ids(self) -> Select:
        """Ids of the matching resources (rows of several values may repeat an id)."""
        return select(self.table.c.res_id).where(*self.rows())

    def holds_for(self, id_column: ColumnElement) -> ColumnElement:
        """SQL: the resource whose id is ``id_column`` matches (a correlated probe of the index)."""
        return probe(self.table.c.res_id == id_column, *self.rows())


@dataclass
class SearchRequest:
    """A parsed search: what to match, in which order, and how to shape the result."""

    resource_type: str
    #: One SQL condition per search parameter on ``resources`` rows (``res_id IN (...)``).
    conditions: list[ColumnElement] = field(default_factory=list)
    #: The ids each condition keeps (by position in ``conditions``; None for ``:not``, which excludes them).
    id_queries: list[Select | None] = field(default_factory=list)
    #: The index filter of a condition (by its position in ``conditions``), for conditions that are one.
    filters: dict[int, IndexFilter] = field(default_factory=dict)
    #: A per-row check of a condition that is no index filter (``_has``), by position: SQL on an id column.
    probes: dict[int, Callable[[ColumnElement], ColumnElement]] = field(default_factory=dict)
    #: Ids that size a condition more cheaply than its own (a ``_has``: its inner filter's), by position.
    sizing: dict[int, Select] = field(default_factory=dict)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param code, descending)
    count: int = DEFAULT_COUNT
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None
    elements: list[str] | None = None
    total: str | None = None
    ignored: list[Issue] = field(default_factory=list)
    #: The parameters that were used, normalised, for the Bundle's self link.
    used: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class SearchLimits:
    """What one search may ask (settings): parameters in all, repeats of one parameter, values in all."""

    max_parameters: int = 60
    max_repeats: int = 20
    max_values: int = 300

    def check(self, params: list[tuple[str, str]]) -> None:
        """Raise 400 naming the parameter when ``params`` exceed a bound or hold a character text may not."""
        for name, value in params:
            problem = text_problem(name) or text_problem(value)
            if problem:
                raise FhirError.single(400, "invalid", f"search parameter '{clean(name)}': {problem}", clean(name))
        repeats: dict[str, int] = {}
        values = 0
        for name, value in params:
            base = name.split(":", 1)[0].split(".", 1)[0]
            repeats[base] = repeats.get(base, 0) + 1
            values += value.count(",") + 1
            if repeats[base] > self.max_repeats:
                raise FhirError.single(
                    400,
                    "too-costly",
                    f"the search parameter '{base}' is repeated more than {self.max_repeats} times",
                    base,
                )
            if values > self.max_values:
                raise FhirError.single(
                    400,
                    "too-costly",
                    f"the search has more than {self.max_values} values in all (at parameter '{name}')",
                    name,
                )
        if len(params) > self.max_parameters:
            raise FhirError.single(
                400, "too-costly", f"the search has {len(params)} parameters; at most {self.max_parameters} are run"
            )


class SearchParser:
    """Builds :class:`SearchRequest` objects against a :class:`SearchRegistry`."""

    def __init__(self, registry: SearchRegistry, base_url: str = "", limits: SearchLimits | None = None) -> None:
        self.registry = registry
        self.base_url = base_url.rstrip("/")
        self.limits = limits or SearchLimits()

    # -- entry point ------------------------------------------------------------------------

    def parse(self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False) -> SearchRequest:
        self.limits.check(params)
        request = SearchRequest(resource_type)
        errors: list[Issue] = []
        for name, value in params:
            try:
                self._parse_one(request, name, value)
            except _Unknown as unknown:
                issue = Issue(
                    "error" if strict else "warning",
                    "not-supported",
                    f"The search parameter '{unknown.name}' is not known for {resource_type}; it was "
                    + ("refused" if strict else "ignored"),
                    unknown.name,
                    f"Søkeparameteren '{unknown.name}' er ukjent for {resource_type}",
                )
                (errors if strict else request.ignored).append(issue)
            except _BadValue as bad:
                errors.append(Issue("error", "invalid", bad.message, bad.name))
        if errors:
            raise FhirError(400, errors)
        return request

    def _parse_one(self, request: SearchRequest, name: str, value: str) -> None:
        rtype = request.resource_type
        if name in RESULT_PARAMETERS or name.startswith(("_include:", "_revinclude:")):
            self._parse_result_param(request, name, value)
            return
        if _is_negative(name):
            request.conditions.append(self._negative(rtype, name, value))
            request.id_queries.append(None)
        else:
            found = self.index_filter(rtype, name, value)
            if found is not None:
                request.filters[len(request.conditions)] = found
            ids = found.ids() if found is not None else self._other_ids(rtype, name, value)
            if name.startswith("_has:"):
                position = len(request.conditions)
                request.probes[position], inner_filter = self.has_probe(rtype, name, value)
                if inner_filter is not None:  # about one referrer a target: sized by what the inner keeps
                    request.sizing[position] = inner_filter.ids()
            request.conditions.append(resources.c.res_id.in_(ids))
            request.id_queries.append(ids)
        request.used.append((name, value))

    # -- result parameters ------------------------------------------------------------------

    def _parse_result_param(self, request: SearchRequest, name: str, value: str) -> None:
        if name == "_count":
            if not value.isdigit():
                raise _BadValue(name, f"_count must be a whole number, not '{value}'")
            request.count = min(int(value), MAX_COUNT)
            if int(value) > MAX_COUNT:
                request.ignored.append(
                    Issue(
                        "information",
                        "too-costly",
                        f"_count={value} is more than this server returns per page; pages hold {MAX_COUNT} entries",
                        "_count",
                        f"_count={value} er mer enn tjeneren gir per side; sidene har {MAX_COUNT} treff",
                    )
                )
        elif name == "_sort":
            for key in filter(None, (k.strip() for k in value.split(","))):
                desc = key.startswith("-")
                code = key.lstrip("-")
                if code not in ("_id", "_lastUpdated") and self.registry.get(request.resource_type, code) is None:
                    raise _BadValue(name, f"cannot sort {request.resource_type} by unknown parameter '{code}'")
                request.sort.append((code, desc))
        elif name in ("_include", "_revinclude") or name.startswith(("_include:", "_revinclude:")):
            base, _, modifier = name.partition(":")
            request.includes.append(
                self._include(
                    request.resource_type, value, base == "_revinclude", modifier == "iterate" or modifier == "recurse"
                )
            )
        elif name == "_summary":
            if value not in SUMMARY_MODES:
                raise _BadValue(name, f"_summary must be one of {', '.join(SUMMARY_MODES)}, not '{value}'")
            request.summary = None if value == "false" else value
        elif name == "_elements":
            request.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise _BadValue(name, f"_total must be none, estimate or accurate, not '{value}'")
            request.total = value
        else:
            return  # _format, _pretty and paging are handled by the caller
        if name not in ("_getpages", "_getpagesoffset", "_format", "_pretty"):
            request.used.append((name, value))

    def _include(self, rtype: str, value: str, reverse: bool, iterate: bool) -> Include:
        if value == "*":
            return Include(rtype, "*", None, iterate, reverse)
        parts = value.split(":")
        if len(parts) not in (2, 3) or parts[0] not in STORABLE_TYPES:
            raise _BadValue(
                "_revinclude" if reverse else "_include", f"'{value}' is not of the form Type:parameter[:targetType]"
            )
        source, code = parts[0], parts[1]
        param = self.registry.get(source, code)
        if param is None or param.type != "reference":
            raise _BadValue("_include", f"'{code}' is not a reference search parameter of {source}")
        target = parts[2] if len(parts) == 3 else None
        return Include(source, code, target, iterate, reverse)

    # -- filters ----------------------------------------------------------------------------

    def matching_ids(self, rtype: str, name: str, value: str) -> Select:
        """Ids of ``rtype`` resources matching one parameter (chains and ``_has`` followed)."""
        found = self.index_filter(rtype, name, value)
        if found is not None:
            return found.ids()
        return self._other_ids(rtype, name, value)

    def index_filter(self, rtype: str, name: str, value: str) -> IndexFilter | None:
        """The index filter of one parameter (a value or a chain); None for ``_has``, ``_id``,
        ``_lastUpdated`` and ``:missing``, which are other shapes of SQL."""
        if name.startswith("_has:"):
            return None
        head = name.partition(".")[0]
        code, _, modifier = head.partition(":")
        if code in ("_id", "_lastUpdated") or modifier == "missing":
            return None
        param = self.registry.get(rtype, code)
        if param is None:
            raise _Unknown(name)
        if "." in name:
            return self._chain(rtype, param, modifier, name.partition(".")[2], value)
        table = INDEX_TABLES[param.type]
        values = _split_or(value)
        conds = [self._value_condition(param, modifier, v, name) for v in values]
        ordered = len(values) == 1 and _is_one_key(param.type, modifier, values[0])
        return IndexFilter(rtype, code, table, or_(*conds), ordered, keys=_exact_keys(param.type, modifier, values))

    def _other_ids(self, rtype: str, name: str, value: str) -> Select:
        """Ids for the parameters that are not an index filter (see :meth:`index_filter`)."""
        if name.startswith("_has:"):
            return self._has(rtype, name, value)
        code, _, modifier = name.partition(".")[0].partition(":")
        if code == "_id":
            ids = [v for v in value.split(",") if v]
            return select(resources.c.res_id).where(
                resources.c.res_type == rtype, resources.c.deleted.is_(False), resources.c.res_id.in_(ids)
            )
        if code == "_lastUpdated":
            conds = [
                self._date_condition(resources.c.last_updated, resources.c.last_updated, v, name)
                for v in value.split(",")
            ]
            return select(resources.c.res_id).where(
                resources.c.res_type == rtype, resources.c.deleted.is_(False), or_(*conds)
            )
        param = self.registry.get(rtype, code)
        if param is None:
            raise _Unknown(name)
        if modifier == "missing":
            if value not in ("true", "false"):
                raise _BadValue(name, f":missing takes true or false, not '{value}'")
            table = INDEX_TABLES[param.type]
            present = select(table.c.res_id).where(table.c.res_type == rtype, table.c.param == code)
            owner = select(resources.c.res_id).where(resources.c.res_type == rtype, resources.c.deleted.is_(False))
            return owner.where(
                resources.c.res_id.not_in(present) if value == "true" else resources.c.res_id.in_(present)
            )
        raise AssertionError(f"{name} is an index filter")  # pragma: no cover: index_filter handles it

    def _negative(self, rtype: str, name: str, value: str) -> ColumnElement:
        """``:not`` (token): resources with no value matching any of the given ones."""
        positive = self.matching_ids(rtype, name.replace(":not", ""), value)
        return resources.c.res_id.not_in(positive)

    def _chain(self, rtype: str, param: SearchParam, modifier: str, chain: str, value: str) -> IndexFilter:
        if param.type != "reference":
            raise _BadValue(param.code, f"'{param.code}' is not a reference parameter and cannot be chained")
        targets = [modifier] if modifier else [t for t in param.targets if t in STORABLE_TYPES]
        if modifier and modifier not in STORABLE_TYPES:
            raise _BadValue(param.code, f"'{modifier}' is not a resource type")
        matched = [
            t
            for t in targets
            if self.registry.get(t, chain.split(".")[0].split(":")[0]) or chain.split(":")[0] in ("_id", "_lastUpdated")
        ]
        if not matched:
            raise _Unknown(f"{param.code}.{chain}")
        readable = [t for t in matched if access.may_read(t)]
        if not readable:
            raise _not_readable(matched, f"{param.code}.{chain}")
        table = INDEX_TABLES["reference"]
        reached: list[tuple[str, Select]] = []
        for t in readable:  # the chain's targets the caller may see, per type
            ids = self.matching_ids(t, chain, value)
            reached.append((t, ids.where(*_visible(t, ids.selected_columns[0]))))
        conds = [and_(table.c.target_type == t, table.c.target_id.in_(ids)) for t, ids in reached]
        return IndexFilter(rtype, param.code, table, or_(*conds), targets=tuple(reached))

    def _has(self, rtype: str, name: str, value: str) -> Select:
        """``_has:Observation:patient:code=x``: ids that resources of another type point to."""
        source, ref_code, inner = self._has_parts(name)
        table = INDEX_TABLES["reference"]
        return select(table.c.target_id).where(
            table.c.res_type == source,
            table.c.param == ref_code,
            table.c.target_type == rtype,
            table.c.res_id.in_(self.matching_ids(source, inner, value)),
            *_visible(source, table.c.res_id),
        )

    def has_probe(
        self, rtype: str, name: str, value: str
    ) -> tuple[Callable[[ColumnElement], ColumnElement], IndexFilter | None]:
        """``_has`` as a per-row check: SQL that the resource whose id is the given column is pointed to by
        a matching resource (the inner condition probed too when it is an index filter), so a search walking
        its type's rows in order need not read every match of the ``_has`` first; and that inner filter."""
        source, ref_code, inner = self._has_parts(name)
        table = INDEX_TABLES["reference"]
        inner_filter = self.index_filter(source, inner, value) if not inner.startswith("_has:") else None
        matches = (
            inner_filter.holds_for(table.c.res_id)
            if inner_filter is not None
            else table.c.res_id.in_(self.matching_ids(source, inner, value))
        )
        visible = _visible(source, table.c.res_id)

        def has(id_column: ColumnElement) -> ColumnElement:
            return probe(
                table.c.res_type == source,
                table.c.param == ref_code,
                table.c.target_type == rtype,
                table.c.target_id == id_column,
                matches,
                *visible,
            )

        return has, inner_filter

    def _has_parts(self, name: str) -> tuple[str, str, str]:
        """(source type, its reference parameter, the inner parameter) of ``_has:Type:reference:parameter``."""
        parts = name.split(":", 3)
        if len(parts) != 4 or parts[1] not in STORABLE_TYPES:
            raise _BadValue(name, f"'{name}' is not of the form _has:Type:reference:parameter")
        _, source, ref_code, inner = parts
        ref_param = self.registry.get(source, ref_code)
        if ref_param is None or ref_param.type != "reference":
            raise _BadValue(name, f"'{ref_code}' is not a reference search parameter of {source}")
        if not access.may_read(source):
            raise _not_readable([source], name)
        return source, ref_code, inner

    # -- one value of one parameter ---------------------------------------------------------

    def _value_condition(self, param: SearchParam, modifier: str, value: str, name: str) -> ColumnElement:
        table = INDEX_TABLES[param.type]
        kind = param.type
        if modifier and not _modifier_allowed(kind, modifier):
            raise _BadValue(name, f"the modifier ':{modifier}' is not supported on {kind} parameter '{param.code}'")
        if kind == "token":
            return _token_condition(table.c.system, table.c.code, value)
        if kind == "string":
            if modifier == "exact":
                return table.c.value_exact == value
            pattern = _like_escape(normalise_text(value))
            if modifier == "contains":
                return table.c.value_norm.like(f"%{pattern}%", escape="\\")
            return table.c.value_norm.like(f"{pattern}%", escape="\\")
        if kind == "uri":
            if modifier == "below":
                return table.c.value.like(_like_escape(value) + "%", escape="\\")
            if modifier == "above":
                return literal(value).like(table.c.value + "%")
            return table.c.value == value
        if kind == "date":
            return self._date_condition(table.c.low, table.c.high, value, name)
        if kind in ("number", "quantity"):
            return self._number_condition(table, value, name, quantity=kind == "quantity")
        return self._reference_condition(param, table, modifier, value, name)

    def _reference_condition(self, param: SearchParam, table, modifier: str, value: str, name: str):  # type: ignore[no-untyped-def]
        if modifier == "identifier":
            system, sep, code = value.partition("|")
            if not sep:
                return table.c.id_value == value
            return and_(table.c.id_system == system, table.c.id_value == code) if system else table.c.id_value == code
        if modifier and modifier not in STORABLE_TYPES:
            raise _BadValue(name, f"'{modifier}' is not a resource type")
        url, _, version = value.partition("|")
        if self.base_url and url.startswith(self.base_url + "/"):
            url = url[len(self.base_url) + 1 :]
        rtype, rid, _ = parse_reference(url)
        if "://" in url or url.startswith("urn:"):
            cond = table.c.target_url == url
            if version:
                cond = and_(cond, table.c.target_version == version)
            if rtype:
                cond = or_(cond, and_(table.c.target_type == rtype, table.c.target_id == rid))
            return cond
        if rtype:
            if modifier and modifier != rtype:
                return false()
            return and_(table.c.target_type == rtype, table.c.target_id == rid)
        conds = [table.c.target_id == url]
        if modifier:
            conds.append(table.c.target_type == modifier)
        return and_(*conds)

    def _date_condition(self, low_col, high_col, value: str, name: str):  # type: ignore[no-untyped-def]
        prefix, text = _prefix(value)
        rng = date_range(text)
        if rng is None:
            raise _BadValue(name, f"'{text}' is not a FHIR date, dateTime or instant (YYYY, YYYY-MM-DD, ...)")
        lo, hi = rng
        return _range_condition(prefix, low_col, high_col, lo, hi)

    def _number_condition(self, table, value: str, name: str, *, quantity: bool):  # type: ignore[no-untyped-def]
        prefix, text = _prefix(value)
        number, system, code = text, None, None
        if quantity and "|" in text:
            number, system, code = ([*text.split("|"), "", ""])[:3]
        try:
            Decimal(number)
        except InvalidOperation:
            raise _BadValue(name, f"'{number}' is not a number") from None
        rng = number_range(number)
        if rng is None:
            raise _BadValue(name, f"'{number}' is not a number")
        if prefix not in ("eq", "ne", "ap"):  # comparisons use the value itself, not its precision range
            exact = float(Decimal(number))
            rng = (exact, exact)
        cond = _range_condition(prefix, table.c.low, table.c.high, rng[0], rng[1])
        if quantity and system:
            cond = and_(cond, table.c.system == system)
        if quantity and code:
            cond = and_(cond, table.c.code == code)
        return cond


class _Unknown(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


class _BadValue(Exception):
    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message


def _visible(resource_type: str, id_column: ColumnElement) -> list[ColumnElement]:
    """The access condition on rows a condition joins through (none for a caller who sees all)."""
    condition = access.labelled_condition(resource_type, id_column)
    return [] if condition is None else [condition]


def _not_readable(types: list[str], name: str) -> FhirError:
    """403: a condition reaching through types the token grants no read or search on."""
    wanted = " or ".join(f"system/{t}.rs" for t in types)
    return FhirError.single(
        403, "forbidden", f"the search parameter '{name}' reads {', '.join(types)}: the token needs {wanted}", name
    )


def probe(*where: ColumnElement) -> ColumnElement:
    """SQL ``EXISTS`` of index rows meeting ``where``, checked row by row: an ``OFFSET`` keeps PostgreSQL from
    turning it into a join over every match (a plan whose cost follows the matches, not the page)."""
    return select(literal(1)).where(*where).limit(1).offset(0).exists()


def _is_one_key(kind: str, modifier: str, value: str) -> bool:
    """True when one value of a parameter is one equality on its index's leading value columns (token
    code, reference type and id, uri), whose rows the index keeps in id order."""
    if modifier:
        return kind == "reference" and modifier in STORABLE_TYPES and "/" not in value and "://" not in value
    if kind == "token":
        return not value.endswith("|")
    if kind == "uri":
        return True
    if kind == "reference":
        return "://" not in value and not value.startswith("urn:") and "/" in value and "|" not in value
    return False


def _exact_keys(kind: str, modifier: str, values: list[str]) -> tuple[str, ...] | None:
    """The values of a token or reference filter as a combo index names them (a token's code, a reference's
    ``Type/id``), when the filter matches exactly the rows with one of them; else None."""
    keys = []
    for value in values:
        if kind == "token" and not modifier and "|" not in value:
            keys.append(value)
        elif kind != "reference" or "://" in value or value.startswith("urn:") or "|" in value:
            return None
        elif modifier in STORABLE_TYPES and "/" not in value:
            keys.append(f"{modifier}/{value}")
        else:
            rtype, rid, _ = parse_reference(value)
            if modifier or not rtype or value != f"{rtype}/{rid}":
                return None
            keys.append(value)
    return tuple(keys)


def _is_negative(name: str) -> bool:
    return name.endswith(":not") and "." not in name and not name.startswith("_has:")


def _split_or(value: str) -> list[str]:
    """Split on commas that are not escaped with a backslash."""
    parts = re.split(r"(?<!\\),", value)
    return [p.replace("\\,", ",") for p in parts]


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def _range_condition(prefix: str, low_col, high_col, lo, hi):  # type: ignore[no-untyped-def]
    """Compare a stored range [low, high] with a search range [lo, hi] as the FHIR search spec says."""
    if prefix == "eq":
        return and_(low_col >= lo, high_col <= hi)
    if prefix == "ne":
        return or_(low_col < lo, high_col > hi)
    if prefix == "gt":
        return high_col > hi
    if prefix == "lt":
        return low_col < lo
    if prefix == "ge":
        return high_col >= lo
    if prefix == "le":
        return low_col <= hi
    if prefix == "sa":
        return low_col > hi
    if prefix == "eb":
        return high_col < lo
    return and_(low_col <= hi, high_col >= lo)  # ap: overlapping


def _token_condition(system_col, code_col, value: str):  # type: ignore[no-untyped-def]
    if "|" not in value:
        return code_col == value
    system, _, code = value.partition("|")
    if not system:
        return and_(system_col.is_(None), code_col == code)
    if not code:
        return system_col == system
    return and_(system_col == system, code_col == code)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_MODIFIERS = {
    "token": {"not"},
    "string": {"exact", "contains"},
    "uri": {"below", "above"},
    "reference": {"identifier"},
    "date": set(),
    "number": set(),
    "quantity": set(),
}


def _modifier_allowed(kind: str, modifier: str) -> bool:
    return modifier in _MODIFIERS[kind] or (kind == "reference" and modifier in STORABLE_TYPES)
