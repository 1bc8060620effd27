"""Index rows for one resource: every search parameter's values, ready to insert."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhir_server.core.indexing.combos import combo_rows
from fhir_server.core.indexing.fhirpath_paths import CHOICE_SUFFIXES
from fhir_server.core.indexing.parameters import SearchParam, SearchRegistry
from fhir_server.core.indexing.values import HIGH_SENTINEL, LOW_SENTINEL, date_range, normalise_text, number_range

#: Parameters answered from the ``resources`` table itself, not from index rows.
TABLE_PARAMETERS = frozenset({"_id", "_lastUpdated"})

Row = dict[str, Any]


def parse_reference(reference: str) -> tuple[str | None, str | None, str | None]:
    """``Patient/1``, ``Patient/1/_history/2``, ``http://x/fhir/Patient/1`` → (type, id, version)."""
    parts = reference.split("/")
    version = None
    if len(parts) >= 4 and parts[-2] == "_history":
        version = parts[-1]
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1], version
    return None, None, None


def _token_rows(value: Any) -> list[tuple[str | None, str | None]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str | int | Decimal):
        return [(None, str(value))]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
        return [row for coding in value.get("coding", ()) for row in _token_rows(coding)]
    if "code" in value:
        return [(value.get("system"), str(value["code"]))]
    if "value" in value:  # Identifier, ContactPoint
        return [(value.get("system"), str(value["value"]))]
    return []


def _string_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key in (
        "text",
        "family",
        "given",
        "prefix",
        "suffix",
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
    ):
        item = value.get(key)
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            out.extend(v for v in item if isinstance(v, str))
    return out


def _date_rows(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        rng = date_range(value)
        return [rng] if rng else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:  # Period
        start = date_range(value["start"]) if "start" in value else None
        end = date_range(value["end"]) if "end" in value else None
        return [(start[0] if start else LOW_SENTINEL, end[1] if end else HIGH_SENTINEL)]
    if "event" in value:  # Timing
        ranges = [r for r in (date_range(e) for e in value["event"] if isinstance(e, str)) if r]
        return [(min(r[0] for r in ranges), max(r[1] for r in ranges))] if ranges else []
    return []


def _reference_rows(value: Any) -> list[Row]:
    if isinstance(value, str):  # canonical or uri
        url, _, version = value.partition("|")
        rtype, rid, _ = parse_reference(url)
        return [{"target_type": rtype, "target_id": rid, "target_version": version or None, "target_url": url}]
    if not isinstance(value, dict):
        return []
    row: Row = {"target_type": None, "target_id": None, "target_version": None, "target_url": None}
    reference = value.get("reference")
    if isinstance(reference, str) and not reference.startswith("#"):
        rtype, rid, ref_version = parse_reference(reference)
        row.update(target_type=rtype, target_id=rid, target_version=ref_version)
        if rtype is None or "://" in reference:
            row["target_url"] = reference
    identifier = value.get("identifier")
    if isinstance(identifier, dict):
        row.update(id_system=identifier.get("system"), id_value=identifier.get("value"))
    if value.get("type") and row["target_type"] is None:
        row["target_type"] = value["type"]
    if row["target_type"] is None and row["target_url"] is None and "id_value" not in row:
        return []
    return [row]


def _quantity_rows(value: Any) -> list[Row]:
    if isinstance(value, dict) and "value" in value:
        rng = number_range(value["value"])
        if rng:
            return [
                {
                    "low": rng[0],
                    "high": rng[1],
                    "system": value.get("system"),
                    "code": value.get("code") or value.get("unit"),
                }
            ]
    return []


def rows_for_param(param: SearchParam, resource: dict) -> list[Row]:
    """Index rows (without owner columns) for one parameter of one resource."""
    rows: list[Row] = []
    for value, _type in param.extract(resource):
        if param.type == "token":
            rows.extend({"system": s, "code": c} for s, c in _token_rows(value))
        elif param.type == "string":
            rows.extend({"value_norm": normalise_text(s)[:500], "value_exact": s} for s in _string_values(value))
        elif param.type == "date":
            rows.extend({"low": lo, "high": hi} for lo, hi in _date_rows(value))
        elif param.type == "reference":
            rows.extend(_reference_rows(value))
        elif param.type == "uri":
            if isinstance(value, str):
                rows.append({"value": value})
        elif param.type == "number":
            rng = (
                number_range(value) if isinstance(value, int | Decimal | str) and not isinstance(value, bool) else None
            )
            if rng:
                rows.append({"low": rng[0], "high": rng[1]})
        elif param.type == "quantity":
            rows.extend(_quantity_rows(value))
    return rows


_STEMS: dict[str, str | None] = {}
#: longest first, so ``occurrenceDateTime`` loses ``DateTime``, not ``Time``
_SUFFIXES_LONGEST_FIRST = sorted(CHOICE_SUFFIXES, key=len, reverse=True)


def element_names(resource: dict) -> set[str]:
    """Top-level element names, choice elements under their stem too (``occurrenceDateTime`` → ``occurrence``)."""
    names = set(resource)
    for key in resource:
        stem = _STEMS.get(key, "")
        if stem == "":
            stem = next(
                (key[: -len(s)] for s in _SUFFIXES_LONGEST_FIRST if key.endswith(s) and len(key) > len(s)), None
            )
            _STEMS[key] = stem
        if stem:
            names.add(stem)
    return names


def index_rows(registry: SearchRegistry, resource: dict) -> dict[str, list[Row]]:
    """All index rows of a resource, grouped by parameter type, each row carrying ``param``; the rows of
    its type's combo indexes (:mod:`~fhir_server.core.indexing.combos`) under ``combo``."""
    grouped: dict[str, list[Row]] = {}
    present = element_names(resource)
    for code, param in registry.params(resource["resourceType"]).items():
        roots = getattr(param.extract, "roots", None)
        if (roots is not None and roots.isdisjoint(present)) or code in TABLE_PARAMETERS:
            continue  # the resource has none of the elements the expression reads
        rows = rows_for_param(param, resource)
        if rows:
            for row in rows:
                row["param"] = code
            grouped.setdefault(param.type, []).extend(rows)
    combos = registry.combos(resource["resourceType"])
    if combos and (combined := combo_rows(combos, grouped)):
        grouped["combo"] = combined
    return grouped


@dataclass(frozen=True, slots=True)
class IndexMatch:
    """A plain search condition answered by one index table: rows of ``param`` with these column values."""

    kind: str  # the index table (INDEX_TABLES key): token, reference or uri
    param: str
    values: tuple[tuple[str, str], ...]  # (column, value): each compared with =


def plain_matches(
    registry: SearchRegistry, resource_type: str, params: list[tuple[str, str]]
) -> list[IndexMatch] | None:
    """The conditions of a search made only of plain equality parameters (``identifier=system|value``,
    ``code=x``, ``subject=Patient/1``, ``url=http://...``); None when any parameter needs the general
    search (modifiers, chains, several values, prefixes, result parameters, unknown names).

    Each condition selects exactly the index rows the general search (:mod:`.query`) selects for it."""
    found: list[IndexMatch] = []
    for name, value in params:
        param = None if name.startswith("_") else registry.get(resource_type, name)
        values = _plain_values(param.type, value) if param is not None and _single(value) else None
        if values is None:
            return None
        found.append(IndexMatch(param.type, param.code, values))  # type: ignore[union-attr]
    return found


def _single(value: str) -> bool:
    """One value, nothing escaped (the general search splits on commas and unescapes)."""
    return bool(value) and "," not in value and "\\" not in value


def _plain_values(kind: str, value: str) -> tuple[tuple[str, str], ...] | None:
    if kind == "token":
        system, bar, code = value.partition("|")
        if not bar:
            return (("code", value),)
        return (("system", system), ("code", code)) if system and code else None
    if kind == "uri":
        return (("value", value),)
    if kind == "reference" and "|" not in value and "://" not in value and not value.startswith("urn:"):
        rtype, rid, _ = parse_reference(value)
        return (("target_type", rtype), ("target_id", rid)) if rtype and rid and value == f"{rtype}/{rid}" else None
    return None
