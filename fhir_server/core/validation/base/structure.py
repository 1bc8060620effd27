"""Structure validation with fhir.resources (R4B models), its errors turned into :class:`Issue`.

fhir.resources checks shapes, required elements (partly), unknown elements, choice exclusivity and
the regexes of date, dateTime, instant, time, id, code and oid. Its pydantic errors are reworded
here and placed with FHIRPath expressions (``Bundle.entry[2].resource.birthDate``).

It raises ``KeyError`` for resource types it does not know inside a Bundle; the caller passes the
paths of such resources (found by the base walk) and they are swapped for an empty placeholder before
the models see them, so the rest of the request is still checked. No exception escapes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import ValidationError

from fhir_server.core.issues import Issue

from .primitives import mask

log = logging.getLogger(__name__)

_PLACEHOLDER = {"resourceType": "Parameters"}
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")

_REGEX_FORMATS = {
    "Date": ("date", "YYYY, YYYY-MM or YYYY-MM-DD", "ÅÅÅÅ, ÅÅÅÅ-MM eller ÅÅÅÅ-MM-DD"),
    "DateTime": (
        "dateTime",
        "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone (+01:00 or Z)",
        "ÅÅÅÅ, ÅÅÅÅ-MM, ÅÅÅÅ-MM-DD eller ÅÅÅÅ-MM-DDTtt:mm:ss med tidssone (+01:00 eller Z)",
    ),
    "Instant": (
        "instant",
        "YYYY-MM-DDThh:mm:ss(.sss) with a time zone (+01:00 or Z)",
        "ÅÅÅÅ-MM-DDTtt:mm:ss(.sss) med tidssone (+01:00 eller Z)",
    ),
    "Time": ("time", "hh:mm:ss", "tt:mm:ss"),
}
_PATTERN_NAMES = {
    "^[A-Za-z0-9\\-.]+$": ("id", "1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'"),
    "^[^\\s]+(\\s[^\\s]+)*$": ("code", "no leading, trailing or repeated whitespace"),
    "[ \r\n\t\\S]+": ("string", "not empty"),
    "^urn:oid:[0-2](\\.(0|[1-9][0-9]*))+$": ("oid", "urn:oid: followed by a dotted number, e.g. urn:oid:2.16.578.1"),
}


@cache
def model_class(resource_type: str) -> Any:
    """The fhir.resources R4B model of a resource type (cached)."""
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def loc_to_path(root: str, loc: tuple) -> str:
    """pydantic ``loc`` -> FHIRPath: ``('entry', 2, 'resource', 'x')`` -> ``Bundle.entry[2].resource.x``."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += "." + ("resourceType" if part == "resource_type" else str(part))
    return path


def path_to_loc(path: str) -> tuple:
    """FHIRPath -> loc tuple below the root: ``Bundle.entry[3].resource`` -> ``('entry', 3, 'resource')``."""
    dot = path.find(".")
    tail = path[dot:] if dot >= 0 else ""
    return tuple(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEGMENT.finditer(tail))


def _without(resource: dict, locs: list[tuple]) -> dict:
    """A copy of ``resource`` (copied only along ``locs``) with the objects at ``locs`` replaced by a placeholder."""
    out = dict(resource)
    for loc in locs:
        node: Any = out
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            try:
                child = node[part]
            except (KeyError, IndexError, TypeError):
                break
            if last:
                node[part] = dict(_PLACEHOLDER)
            else:
                copied = dict(child) if isinstance(child, dict) else list(child) if isinstance(child, list) else child
                node[part] = copied
                node = copied
    return out


def check_structure(resource: dict, bad_resources: list[str] | tuple[str, ...] = ()) -> list[Issue]:
    """Validate ``resource`` with its fhir.resources R4B model; every error becomes an Issue.

    ``bad_resources``: FHIRPath paths of nested resources to keep away from the models (unknown types).
    """
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return []
    try:
        cls = model_class(rtype)
    except (ValueError, KeyError, AttributeError, ImportError):
        return [
            Issue(
                "error",
                "not-supported",
                f"{rtype}.resourceType: '{rtype}' is not a resource type this server accepts",
                f"{rtype}.resourceType",
                f"{rtype}.resourceType: '{rtype}' er ikke en ressurstype denne serveren tar imot",
                "resource-type",
            )
        ]
    data = _without(resource, [path_to_loc(p) for p in bad_resources]) if bad_resources else resource
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        return [_issue_from_error(rtype, err) for err in exc.errors(include_url=False)]
    except (KeyError, ValueError, TypeError) as exc:
        log.info("fhir.resources raised %s for a %s", type(exc).__name__, rtype)
        return [
            Issue(
                "error",
                "structure",
                mask(f"the resource could not be read as a FHIR {rtype}: {type(exc).__name__} {exc}"),
                rtype,
                mask(f"ressursen kunne ikke leses som FHIR {rtype}: {type(exc).__name__} {exc}"),
                "structure",
            )
        ]
    except RecursionError:
        return [
            Issue(
                "error",
                "structure",
                "the resource is nested too deeply",
                rtype,
                "ressursen er nøstet for dypt",
                "structure",
            )
        ]
    return []


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return mask(text if len(text) <= 60 else text[:57] + "...")


def _choice_stem(names: list[str]) -> str:
    """``['valueRange', 'valueReference']`` -> ``value`` (the JSON stem of a choice element)."""
    if not names:
        return ""
    stem = names[0]
    for name in names[1:]:
        while not name.startswith(stem):
            stem = stem[:-1]
    while stem and not all(len(n) > len(stem) and n[len(stem)].isupper() for n in names):
        stem = stem[:-1]
    return stem


def _issue_from_error(root: str, err: Mapping[str, Any]) -> Issue:
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    path = loc_to_path(root, loc)
    name = str(loc[-1]) if loc and not isinstance(loc[-1], int) else path.rsplit(".", 1)[-1]
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    value = err.get("input")
    if kind == "extra_forbidden":
        return Issue(
            "error",
            "structure",
            mask(f"unknown element '{name}' (not defined here in FHIR R4)"),
            path,
            mask(f"ukjent element '{name}' (ikke definert her i FHIR R4)"),
            "unknown-element",
        )
    if kind in ("missing", "model_field_validation.missing"):
        return Issue(
            "error",
            "required",
            f"{name} is required (minimum cardinality 1) but missing",
            path,
            f"{name} er påkrevd (minst 1) men mangler",
            "cardinality-min",
        )
    if kind == "value_error" and "does not match spec regex" in msg:
        fmt = _REGEX_FORMATS.get(msg.split(" ", 1)[0])
        if fmt:
            return Issue(
                "error",
                "value",
                f"{_shown(value)} is not a valid FHIR {fmt[0]} (expected {fmt[1]})",
                path,
                f"{_shown(value)} er ikke en gyldig FHIR {fmt[0]} (forventet {fmt[2]})",
                "format-" + fmt[0],
            )
    if kind == "value_error" and "Any of one field value is expected" in msg:
        names = re.findall(r"'([A-Za-z0-9]+)'", msg)
        return Issue(
            "error",
            "structure",
            f"only one of {', '.join(names)} may be given (a choice element takes one type)",
            path,
            f"bare én av {', '.join(names)} kan oppgis (et valgelement har én type)",
            "choice-single",
        )
    if kind == "value_error" and "Expect any of field value from this list" in msg:
        stem = _choice_stem(re.findall(r"'([A-Za-z0-9]+)'", msg))
        where = f"{path}.{stem}" if stem else path
        return Issue(
            "error",
            "required",
            f"{stem}[x] is required (minimum cardinality 1) but missing",
            where,
            f"{stem}[x] er påkrevd (minst 1) men mangler",
            "cardinality-min",
        )
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        type_name, rule = _PATTERN_NAMES.get(pattern, ("value", f"pattern {pattern}"))
        return Issue(
            "error",
            "value",
            f"{_shown(value)} is not a valid {type_name} ({rule})",
            path,
            f"{_shown(value)} er ikke en gyldig {type_name} ({rule})",
            "format-" + type_name,
        )
    if kind == "json_invalid" or (kind.endswith("_type") and kind not in ("string_type", "list_type")):
        return Issue(
            "error", "structure", mask(f"wrong JSON type: {msg}"), path, mask(f"feil JSON-type: {msg}"), "json-type"
        )
    if kind == "string_type":
        return Issue(
            "error",
            "structure",
            f"{name} must be a single JSON string",
            path,
            f"{name} må være én JSON-streng",
            "json-string",
        )
    if kind == "list_type" and isinstance(value, list):
        return Issue(
            "error",
            "structure",
            f"null is not allowed as an item of {name}",
            path,
            f"null er ikke tillatt som element i {name}",
            "json-null",
        )
    if kind == "list_type":
        return Issue(
            "error", "structure", f"{name} must be a JSON array", path, f"{name} må være en JSON-liste", "json-array"
        )
    return Issue(
        "error",
        "invalid" if kind != "fhir-validation-wrong-resource-type" else "structure",
        mask(f"{msg} (input {_shown(value)})"),
        path,
        None,
        kind or "structure",
    )
