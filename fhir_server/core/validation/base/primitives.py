"""Strict checks of FHIR primitive values as they appear in JSON (beyond what fhir.resources checks).

fhir.resources (pydantic, lax mode) coerces ``"true"`` and ``1`` to booleans and ``"3"`` to integers,
accepts ids longer than 64 characters and uris with spaces. These checks refuse all of that. The
date/time regexes are left to fhir.resources (its issues are reworded in ``structure.py``).
"""

from __future__ import annotations

import re
from decimal import Decimal

from fhir_server.core.issues import Issue

from .schema import BOOLEAN, DECIMAL, INTEGER, STRING, Prop

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"[^\s]+( [^\s]+)*")
_WHITESPACE = re.compile(r"\s")
_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
_CHECKED_STRINGS = _URI_TYPES | {"id", "code"}

_JSON_NAMES = {
    bool: "a boolean (true/false)",
    int: "a number",
    Decimal: "a number",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "an array",
}


_NATIONAL_ID = re.compile(r"(?<!\d)(\d{6})\d{5}(?!\d)")


def mask(text: str) -> str:
    """Hide the last 5 digits of anything that looks like an 11-digit national identity number."""
    return _NATIONAL_ID.sub(r"\1*****", text)


def describe(value: object) -> str:
    """A short description of a JSON value for messages (never the value itself when it is long)."""
    kind = _JSON_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return mask(f"the string {shown!r}")
    if isinstance(value, bool | int | Decimal | float):
        return mask(f"{kind} {str(value).lower() if isinstance(value, bool) else value}")
    return kind


def _issue(path: str, diagnostics: str, diagnostics_nb: str, rule: str, code: str = "value") -> Issue:
    return Issue("error", code, mask(diagnostics), path, mask(diagnostics_nb), rule)


def check_primitive(value: object, prop: Prop, path: str) -> Issue | None:
    """One issue if ``value`` is not a valid JSON form of the primitive ``prop``, else None."""
    kind = prop.json_kind
    t = type(value)
    if t is str and kind is STRING and prop.type_code not in _CHECKED_STRINGS and value and not value.isspace():  # type: ignore[attr-defined]
        return None  # fast path: plain string, markdown, date ... (date formats are fhir.resources' job)
    if kind == BOOLEAN:
        if t is not bool:
            return _issue(
                path,
                f"{prop.type_code} must be JSON true or false, not {describe(value)}",
                f"{prop.type_code} må være JSON true eller false, ikke {describe(value)}",
                "json-boolean",
            )
        return None
    if kind == INTEGER:
        if t is not int:
            return _issue(
                path,
                f"{prop.type_code} must be a JSON integer (no quotes, no decimal point), not {describe(value)}",
                f"{prop.type_code} må være et JSON-heltall (uten anførselstegn og desimaltegn), ikke {describe(value)}",
                "json-integer",
            )
        low = 1 if prop.type_code == "positiveInt" else 0 if prop.type_code == "unsignedInt" else INT32_MIN
        if not low <= value <= INT32_MAX:  # type: ignore[operator]
            return _issue(
                path,
                f"{prop.type_code} {value} is out of range ({low}..{INT32_MAX})",
                f"{prop.type_code} {value} er utenfor gyldig område ({low}..{INT32_MAX})",
                "integer-range",
            )
        return None
    if kind == DECIMAL:
        if t is bool or t not in (int, Decimal, float):
            return _issue(
                path,
                f"decimal must be a JSON number (no quotes), not {describe(value)}",
                f"decimal må være et JSON-tall (uten anførselstegn), ikke {describe(value)}",
                "json-decimal",
            )
        return None
    if t is not str:
        return _issue(
            path,
            f"{prop.type_code} must be a JSON string, not {describe(value)}",
            f"{prop.type_code} må være en JSON-streng, ikke {describe(value)}",
            "json-string",
        )
    return check_string(value, prop.type_code, path)  # type: ignore[arg-type]


def check_string(value: str, type_code: str, path: str) -> Issue | None:
    """Checks of string-valued primitives: not empty, not blank, id/code/uri syntax."""
    if not value or value.isspace():
        return _issue(
            path,
            f"{type_code} must not be empty or only whitespace; leave the element out instead",
            f"{type_code} kan ikke være tom eller bare blanke tegn; utelat elementet i stedet",
            "empty-string",
        )
    if type_code == "id":
        if not _ID.fullmatch(value):
            shown = value if len(value) <= 70 else value[:67] + "..."
            return _issue(
                path,
                f"id {shown!r} is not valid: 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.' ({len(value)} given)",
                f"id {shown!r} er ugyldig: 1 til 64 tegn av A-Z, a-z, 0-9, '-' og '.' ({len(value)} gitt)",
                "id-format",
            )
    elif type_code == "code":
        if not _CODE.fullmatch(value):
            return _issue(
                path,
                f"code {value!r} must not have leading, trailing or repeated whitespace",
                f"code {value!r} kan ikke ha blanke tegn først, sist eller flere etter hverandre",
                "code-format",
            )
    elif type_code == "uuid" and not _UUID.fullmatch(value):
        return _issue(
            path,
            f"uuid {value!r} must be written urn:uuid: followed by a lower-case UUID",
            f"uuid {value!r} må skrives urn:uuid: fulgt av en UUID med små bokstaver",
            "uuid-format",
        )
    elif type_code in _URI_TYPES and _WHITESPACE.search(value):
        return _issue(
            path,
            f"{type_code} {value!r} must not contain whitespace",
            f"{type_code} {value!r} kan ikke inneholde blanke tegn",
            "uri-format",
        )
    return None
