"""Hand-written evaluators for the two invariant shapes the referral profiles use most.

* ``A.where(B = 'x' or B = 'y' ...).exists()`` (hub-pat-1, hub-org-1, hub-sr-1);
* ``A.where(B.extension('url').exists()).exists()`` (hub-pat-2).

Each gives exactly what the general fast evaluator of ``fhirpath.py`` gives for the same
expression (the same member lookup, choice and ``_x`` handling included), in one Python function
instead of a tree of closures, several times faster. In the first shape nothing can raise, so the
search stops at the first match; in the second, every extension list is iterated as the general
evaluator iterates it (so malformed input raises where it raised, and the caller falls back to
fhirpathpy as before). Other expressions give None: the general evaluator compiles them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .fhirpath import Prim, Unsupported, _members, _plain, _tokens

_KEYWORDS = frozenset({"or", "and", "xor", "implies", "in", "contains", "true", "false"})


def compile_shape(expression: str) -> Callable[[Any], list] | None:
    """An evaluator for one of the shapes above, or None when ``expression`` has another shape."""
    try:
        toks = _tokens(expression)
    except Unsupported:
        return None
    return _any_equal(toks) or _any_extension(toks)


def _member_name(tok: tuple[str, str]) -> str | None:
    """A plain member name (not a type name, keyword, literal or quoted identifier)."""
    kind, value = tok
    if kind != "id" or value[:1] == "`" or value[:1].isupper() or value in _KEYWORDS:
        return None
    return value


def _is(toks: list[tuple[str, str]], start: int, *values: str) -> bool:
    return len(toks) >= start + len(values) and all(toks[start + i][1] == v for i, v in enumerate(values))


def _any_equal(toks: list[tuple[str, str]]) -> Callable[[Any], list] | None:
    """``A.where(B = 'x' or B = 'y' ...).exists()``: does an A have exactly one B, equal to a literal?"""
    if len(toks) < 12 or not _is(toks, 1, ".", "where", "("):
        return None
    outer, inner = _member_name(toks[0]), _member_name(toks[4])
    if outer is None or inner is None:
        return None
    literals: list[str] = []
    i = 4
    while True:
        if not (toks[i] == ("id", inner) and _is(toks, i + 1, "=") and len(toks) > i + 2 and toks[i + 2][0] == "str"):
            return None
        literals.append(toks[i + 2][1][1:-1].replace("\\'", "'"))
        i += 3
        if i < len(toks) and toks[i] == ("id", "or"):
            i += 1
            continue
        break
    if i + 5 != len(toks) or not _is(toks, i, ")", ".", "exists", "(", ")"):
        return None
    wanted = tuple(literals)

    def run(value: Any) -> list:
        for item in _members([value] if value is not None else [], outer):
            found = _members([item], inner)
            if len(found) == 1 and _plain(found[0]) in wanted:
                return [True]
        return [False]

    return run


def _any_extension(toks: list[tuple[str, str]]) -> Callable[[Any], list] | None:
    """``A.where(B.extension('url').exists()).exists()``: does a B of an A carry that extension?"""
    shape = [
        None,
        ".",
        "where",
        "(",
        None,
        ".",
        "extension",
        "(",
        None,
        ")",
        ".",
        "exists",
        "(",
        ")",
        ")",
        ".",
        "exists",
        "(",
        ")",
    ]
    if len(toks) != len(shape) or any(s is not None and t[1] != s for s, t in zip(shape, toks, strict=True)):
        return None
    outer, inner = _member_name(toks[0]), _member_name(toks[4])
    if outer is None or inner is None or toks[8][0] != "str":
        return None
    url = toks[8][1][1:-1].replace("\\'", "'")

    def run(value: Any) -> list:
        found = False
        for item in _members([value] if value is not None else [], outer):
            for holder in _members([item], inner):
                if isinstance(holder, Prim):
                    holder = holder.ext
                if isinstance(holder, dict):
                    for ext in holder.get("extension") or ():  # iterated in full, as the general evaluator does
                        if isinstance(ext, dict) and ext.get("url") == url:
                            found = True
        return [found]

    return run
