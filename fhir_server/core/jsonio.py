"""JSON in and out, keeping FHIR decimal precision.

FHIR decimals carry their precision (``72.50`` is not ``72.5``). Incoming JSON is parsed with
decimals as :class:`decimal.Decimal`; output goes through orjson, which writes each Decimal
back as its exact literal. Everything else is plain ``dict``/``list``/``str``/``int``/``bool``.

Parsing refuses what no FHIR server can store or write out again (:mod:`fhir_server.core.limits`):
numbers beyond an R4 decimal (``1e999999`` would take a minute to turn into an integer) and strings
with control characters or lone surrogates. The error names the element.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from typing import Any

import orjson

from fhir_server.core.limits import MAX_EXPONENT, MAX_SIGNIFICANT_DIGITS, json_path, number_problem, walk_json
from fhir_server.core.text import FORBIDDEN_CHARS, text_problem


class JsonError(ValueError):
    """The body is not JSON a FHIR server can accept; ``element`` names where, when known."""

    def __init__(self, message: str, element: str | None = None) -> None:
        super().__init__(message)
        self.element = element


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not allowed in FHIR JSON")


class _BadNumber(Exception):
    """A number literal out of bounds (found while decoding; :func:`loads` then finds its element)."""


class _Marked(str):
    """A refused number literal, in the second decoding that looks for its element."""


def _decimal(literal: str) -> Decimal:
    if len(literal) > MAX_SIGNIFICANT_DIGITS + 1 and number_problem(literal):  # shorter: at most 18 digits
        raise _BadNumber(literal)
    value = Decimal(literal)
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise _BadNumber(literal)
    return value


def _integer(literal: str) -> int:
    if len(literal) > MAX_SIGNIFICANT_DIGITS and len(literal.lstrip("-")) > MAX_SIGNIFICANT_DIGITS:
        raise _BadNumber(literal)
    return int(literal)


def _marking(convert: Any) -> Any:
    def mark(literal: str) -> Any:
        try:
            return convert(literal)
        except _BadNumber:
            return _Marked(literal)

    return mark


_DECODER = json.JSONDecoder(parse_float=_decimal, parse_int=_integer, parse_constant=_reject_constant)
_MARKING_DECODER = json.JSONDecoder(
    parse_float=_marking(_decimal), parse_int=_marking(_integer), parse_constant=_reject_constant
)
#: Escapes (or raw characters) that may decode to a forbidden character; only then is the result walked.
_SUSPECT = re.compile(r"\\u(?:00[01][0-9a-fA-F]|[dD][89a-fA-F]|[fF]{3}[eEfF])|[\ufffe\uffff]")


def loads(data: bytes | str) -> Any:
    """Parse JSON; decimals become Decimal; NaN/Infinity and bad text raise :class:`JsonError`."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if data.startswith("\ufeff"):
        data = data[1:]
    try:
        value = _DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise JsonError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise JsonError("the JSON is nested too deeply") from exc
    except _BadNumber:
        raise _number_error(_MARKING_DECODER.decode(data)) from None
    if _SUSPECT.search(data):
        _check_text(value)
    return value


def _number_error(marked: Any) -> JsonError:
    """The error naming the first refused number in ``marked`` (decoded with the literals marked)."""
    for steps, item in walk_json(marked):
        if type(item) is _Marked:
            path = json_path(marked, steps)
            return JsonError(f"{path}: {number_problem(item) or 'number out of range'}", path)
    return JsonError("a number is out of range")


def _check_text(value: Any) -> None:
    """Raise naming the first string or property name with a character FHIR text may not hold."""
    for steps, item in walk_json(value):
        texts = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for text in texts:
            if FORBIDDEN_CHARS.search(text):
                path = json_path(value, steps)
                raise JsonError(f"{path}: {text_problem(text)}", path)


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(str(obj).encode())
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    """Serialise to compact (or indented) UTF-8 JSON bytes."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj, default=_default, option=option)


def to_plain(obj: Any) -> Any:
    """A copy with Decimals turned into floats/ints (for libraries that do not take Decimal)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() and "." not in str(obj) else float(obj)
    return obj


#: Values copy.deepcopy returns as they are.
_ATOMIC = frozenset({str, int, float, bool, type(None), Decimal})


def copy_json(value: Any) -> Any:
    """``copy.deepcopy(value)``, several times faster for parsed JSON (dicts, lists and atoms)."""
    return _copy(value, {})


def _copy(value: Any, memo: dict[int, Any]) -> Any:
    """Shared dicts and lists stay shared in the copy, as deepcopy keeps them; other types go to deepcopy."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is not dict and kind is not list:
        return copy.deepcopy(value, memo)
    done = memo.get(id(value))
    if done is not None:
        return done
    if kind is list:
        memo[id(value)] = out = []
        out.extend([item if type(item) in _ATOMIC else _copy(item, memo) for item in value])
        return out
    memo[id(value)] = result = {}
    for key, item in value.items():
        if type(key) is not str:
            key = copy.deepcopy(key, memo)
        result[key] = item if type(item) in _ATOMIC else _copy(item, memo)
    return result
