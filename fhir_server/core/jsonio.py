"""JSON in and out, keeping FHIR decimal precision.

FHIR decimals carry their precision (``72.50`` is not ``72.5``). Incoming JSON is parsed with
decimals as :class:`decimal.Decimal`; output goes through orjson, which writes each Decimal
back as its exact literal. Everything else is plain ``dict``/``list``/``str``/``int``/``bool``.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import orjson


class JsonError(ValueError):
    """The body is not JSON a FHIR server can accept."""


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not allowed in FHIR JSON")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


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
        return _DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise JsonError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise JsonError("the JSON is nested too deeply") from exc


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
