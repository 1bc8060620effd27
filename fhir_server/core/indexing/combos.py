"""Combo search indexes: one index row per combination of several search parameters' values.

A combo is what HAPI FHIR calls a "combo non-unique" search parameter: a SearchParameter of type
``composite`` in the data folders, marked with HAPI's ``sp-unique`` extension (``valueBoolean`` false),
whose components name the search parameters it combines (token or reference parameters of the same
resource type). Which combos exist is said there only. On every write a resource gets one row per
combination of its components' values (:func:`combo_rows`, ``idx_combo``), so a search with exact values
on every component (the regional pull's ``owner`` and ``status``) walks one ordered index range
(``res_type, param, value, res_id``) instead of walking one component's rows and checking the others.

A component's value in a combo row is the one its exact-value searches compare: a token's code (any
system), a reference's ``Type/id``. The combined value joins them in component order with ``$``, each
escaped as in FHIR's composite search syntax (``\\$``, ``\\\\``), so no two combinations share a value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

log = logging.getLogger(__name__)

#: HAPI FHIR's extension marking a composite SearchParameter as a combo index (false: not unique).
SP_UNIQUE = "http://hapifhir.io/fhir/StructureDefinition/sp-unique"
#: Parameter types a combo may combine: their exact values are one key each.
COMPONENT_TYPES = frozenset({"token", "reference"})


@dataclass(frozen=True)
class Combo:
    """A combo index of ``resource_type``: its code and the codes of the parameters it combines, in order."""

    code: str
    resource_type: str
    components: tuple[str, ...]
    kinds: tuple[str, ...]  # each component's parameter type (token or reference)

    def values(self, keys: Sequence[Iterable[str]]) -> list[str]:
        """The combined values of every combination of the components' ``keys`` (in component order)."""
        return [combined(parts) for parts in product(*(sorted(set(k)) for k in keys))]


def is_combo(sp: Mapping[str, Any]) -> bool:
    """True for a composite SearchParameter marked as a non-unique combo index (``sp-unique`` false)."""
    return sp.get("type") == "composite" and any(
        e.get("url") == SP_UNIQUE and e.get("valueBoolean") is False for e in sp.get("extension", ())
    )


def escape(part: str) -> str:
    """One component's value as it stands in a combined value."""
    return part.replace("\\", "\\\\").replace("$", "\\$")


def combined(parts: Sequence[str]) -> str:
    """The combined value of one component value each, in component order."""
    return "$".join(escape(p) for p in parts)


def component_key(kind: str, row: Mapping[str, Any]) -> str | None:
    """The value an index row of a component contributes (None: the row has none an exact search names)."""
    if kind == "token":
        return row.get("code")
    if row.get("target_type") and row.get("target_id"):
        return f"{row['target_type']}/{row['target_id']}"
    return None


def combo_rows(combos: Sequence[Combo], grouped: Mapping[str, list[dict]]) -> list[dict]:
    """The combo rows (``param``, ``value``) of a resource whose other index rows are ``grouped`` (by type)."""
    found: list[dict] = []
    for combo in combos:
        keys = []
        for code, kind in zip(combo.components, combo.kinds, strict=True):
            values = [component_key(kind, row) for row in grouped.get(kind, ()) if row["param"] == code]
            keys.append([v for v in values if v is not None])
        found.extend({"param": combo.code, "value": value} for value in combo.values(keys))
    return found
