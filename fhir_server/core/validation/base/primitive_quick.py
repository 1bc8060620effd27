"""Yes/no forms of the primitive checks, for the walk's happy path (no path string, no Issue built).

``quick_check(prop)(value)`` is True only when the full check of a primitive value in ``walk.py``
would do nothing: :func:`primitives.check_primitive` returns None, a ``code`` under a required
binding is in the value set (or the expansion is incomplete), and a uri/url/canonical does not start
with ``#`` (those are remembered for dom-3). When it is False the walk runs the full check, which
reports the issue with its path, so the issues are exactly those of the full check.

The syntax checks of strings (id, code and its required binding, uuid, uri ...) are pure functions
of the value; each remembers up to 512 strings it found good, so repeated systems and codes cost a
set lookup instead of a regular expression.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from . import bindings
from .primitives import _CHECKED_STRINGS, _CODE, _ID, _UUID, _WHITESPACE, INT32_MAX, INT32_MIN
from .schema import BOOLEAN, DECIMAL, INTEGER, PRIMITIVE, Prop

Quick = Callable[[object], bool]

_NUMBER_TYPES = (int, Decimal, float)
_MEMO_LIMIT = 512  # per check: good values remembered (the check is a pure function of the value)
_LOCAL_REF_TYPES = frozenset({"uri", "url", "canonical"})  # a '#id' value counts for dom-3 (walk.py)


def plain_string(value: object) -> bool:
    """string, markdown, dateTime ... (types without a syntax check of ours): a non-blank JSON string."""
    return type(value) is str and bool(value) and not value.isspace()


def _boolean(value: object) -> bool:
    return type(value) is bool


def _decimal(value: object) -> bool:
    return type(value) in _NUMBER_TYPES


def _integer(low: int) -> Quick:
    def check(value: object) -> bool:
        return type(value) is int and low <= value <= INT32_MAX  # type: ignore[operator]

    return check


def _remembering(is_good: Callable[[str], bool]) -> Quick:
    """A check of strings that remembers the strings it found good (``is_good`` is a pure function)."""
    good: set[str] = set()

    def check(value: object) -> bool:
        if type(value) is not str:
            return False
        if value in good:
            return True
        if not is_good(value):
            return False
        if len(good) < _MEMO_LIMIT:
            good.add(value)
        return True

    return check


def _id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def _code(value: str) -> bool:
    return _CODE.fullmatch(value) is not None


def _bound_code(value_set: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        if _CODE.fullmatch(value) is None:
            return False
        expansion = bindings.expansion(value_set)
        return value in expansion.codes or not expansion.complete

    return check


def _uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def _uri(local_refs: bool) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return bool(value) and _WHITESPACE.search(value) is None and not (local_refs and value[:1] == "#")

    return check


def quick_check(prop: Prop) -> Quick | None:
    """The yes/no check of a primitive property (None for other kinds of property)."""
    if prop.kind != PRIMITIVE:
        return None
    kind, code = prop.json_kind, prop.type_code
    if kind == BOOLEAN:
        return _boolean
    if kind == INTEGER:
        return _integer(1 if code == "positiveInt" else 0 if code == "unsignedInt" else INT32_MIN)
    if kind == DECIMAL:
        return _decimal
    if code not in _CHECKED_STRINGS:
        return plain_string
    # the syntax checks of strings are pure functions of the value: the values found good are remembered
    if code == "id":
        return _remembering(_id)
    if code == "code":
        return _remembering(_bound_code(prop.value_set) if prop.value_set is not None else _code)
    if code == "uuid":
        return _remembering(_uuid)
    return _remembering(_uri(code in _LOCAL_REF_TYPES))  # uri, url, canonical, oid
