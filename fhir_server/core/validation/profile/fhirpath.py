"""A fast evaluator for the small FHIRPath subset most profile invariants use.

fhirpathpy takes 130-600 µs per evaluation of a typical invariant; the referral profiles' invariants
(``identifier.where(system='a' or system='b').exists()``) run here in a few µs. Expressions
outside the subset make :func:`compile_fast` return None, and the caller uses fhirpathpy.

Subset: member paths (choice names like ``value`` find ``valueCoding``; primitive extensions
``_x`` are reachable through ``x.extension``), ``$this``, string/number/boolean literals,
parentheses, the operators ``= != | in contains and or xor implies``, and the functions
``exists([criteria]) empty() where(criteria) all(criteria) not() count() first() hasValue()
extension('url')``. A leading type name (``Patient.identifier``) filters on ``resourceType``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"\s+|(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<this>\$this)|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<op>!=|[=|().,])"
)
_FUNCTIONS = {"exists", "empty", "where", "all", "not", "count", "first", "hasValue", "extension"}

Fn = Callable[[list, Any], list]


class Unsupported(Exception):
    """A construct outside the subset (at parse or evaluation time); callers fall back to fhirpathpy."""


_Unsupported = Unsupported


class Prim:
    """A primitive value with its ``_name`` companion (id/extension), so ``x.extension`` works."""

    __slots__ = ("ext", "value")

    def __init__(self, value: Any, ext: Any) -> None:
        self.value = value
        self.ext = ext if isinstance(ext, dict) else None

    def __eq__(self, other: object) -> bool:
        return _plain(self) == _plain(other)

    def __hash__(self) -> int:
        return hash(self.value) if not isinstance(self.value, dict | list) else 0


def _plain(v: Any) -> Any:
    if type(v) is str:  # the common case, returned as it is below too
        return v
    v = v.value if isinstance(v, Prim) else v
    if isinstance(v, float | int) and not isinstance(v, bool):
        return Decimal(str(v))
    return v


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise _Unsupported(text[pos:])
        pos = m.end()
        kind = m.lastgroup
        if kind:
            out.append((kind, m.group(kind)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value}")
        self.i += 1
        return tok

    def parse(self) -> Fn:
        fn = self.implies()
        if self.peek() is not None:
            raise _Unsupported("trailing tokens")
        return fn

    def _binary(self, sub: Callable[[], Fn], ops: tuple[str, ...], make) -> Fn:
        left = sub()
        while (tok := self.peek()) is not None and tok[1] in ops and tok[0] in ("id", "op"):
            self.i += 1
            left = make(tok[1], left, sub())
        return left

    def implies(self) -> Fn:
        return self._binary(self.or_, ("implies",), _logic)

    def or_(self) -> Fn:
        return self._binary(self.and_, ("or", "xor"), _logic)

    def and_(self) -> Fn:
        return self._binary(self.membership, ("and",), _logic)

    def membership(self) -> Fn:
        return self._binary(self.equality, ("in", "contains"), _member)

    def equality(self) -> Fn:
        return self._binary(self.union, ("=", "!="), _equal)

    def union(self) -> Fn:
        return self._binary(self.path, ("|",), lambda _op, a, b: lambda c, t: _dedupe(a(c, t) + b(c, t)))

    def path(self) -> Fn:
        fn = self.term(first=True)
        while (tok := self.peek()) is not None and tok[1] == ".":
            self.i += 1
            fn = self.step(fn)
        return fn

    def term(self, first: bool) -> Fn:
        kind, value = self.take()
        if kind == "str":
            text = value[1:-1].replace("\\'", "'")
            return _literal(text)
        if kind == "num":
            return _literal(Decimal(value))
        if kind == "this":
            return _mark(lambda c, t: list(c), nothrow=True)
        if value == "(":
            fn = self.implies()
            self.take(")")
            return fn
        if kind == "id":
            if value in ("true", "false"):
                return _literal(value == "true")
            self.i -= 1
            return self.step(_mark(lambda c, t: list(c), nothrow=True), first=first)
        raise _Unsupported(value)

    def step(self, base: Fn, first: bool = False) -> Fn:
        kind, name = self.take()
        if kind != "id":
            raise _Unsupported(name)
        name = name.strip("`")
        nxt = self.peek()
        if nxt is not None and nxt[1] == "(":
            self.i += 1
            args: list[Fn] = []
            following = self.peek()
            if following is not None and following[1] != ")":
                args.append(self.implies())
                while (following := self.peek()) is not None and following[1] == ",":
                    self.i += 1
                    args.append(self.implies())
            self.take(")")
            return _function(name, base, args)
        nothrow = _nothrow(base)
        if first and name[:1].isupper():
            return _mark(
                lambda c, t: [x for x in base(c, t) if isinstance(x, dict) and x.get("resourceType") == name],
                nothrow=nothrow,
            )
        return _mark(lambda c, t: _members(base(c, t), name), nothrow=nothrow)


def _members(items: list, name: str) -> list:
    out: list = []
    for item in items:
        if not isinstance(item, dict):
            continue
        raw = item.get(name)
        ext = item.get("_" + name)
        if raw is None and ext is None:
            for key, value in item.items():
                if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
                    raw, ext = value, item.get("_" + key)
                    break
        if isinstance(raw, list) or isinstance(ext, list):
            raws = raw if isinstance(raw, list) else []
            exts = ext if isinstance(ext, list) else []
            for i in range(max(len(raws), len(exts))):
                _append(out, raws[i] if i < len(raws) else None, exts[i] if i < len(exts) else None)
        else:
            _append(out, raw, ext)
    return out


def _append(out: list, raw: Any, ext: Any) -> None:
    if isinstance(raw, dict):
        out.append(raw)
    elif raw is not None or ext is not None:
        out.append(Prim(raw, ext) if ext is not None else raw)


def _truth(items: list) -> bool | None:
    if not items:
        return None
    if len(items) == 1:
        v = _plain(items[0])
        return v if isinstance(v, bool) else True
    raise _Unsupported("boolean of a collection")


def _logic(op: str, a: Fn, b: Fn) -> Fn:
    # the right side decides nothing when the left one already does (true or, false and, false implies);
    # it is then skipped, but only when it cannot raise (an exception would have sent us to fhirpathpy)
    settles = {"or": True, "and": False, "implies": False}.get(op) if _nothrow(b) and _single(b) else None

    def run(c: list, t: Any) -> list:
        x = _truth(a(c, t))
        if x is not None and x is settles:
            return [op == "or" or op == "implies"]
        y = _truth(b(c, t))
        if op == "and":
            r = False if (x is False or y is False) else (None if (x is None or y is None) else True)
        elif op == "or":
            r = True if (x is True or y is True) else (None if (x is None or y is None) else False)
        elif op == "xor":
            r = None if (x is None or y is None) else (x != y)
        else:  # implies
            r = True if x is False else (y if x is True else (True if y is True else None))
        return [] if r is None else [r]

    return _mark(run, nothrow=_nothrow(a) and _nothrow(b) and _single(a) and _single(b), single=True)


def _equal(op: str, a: Fn, b: Fn) -> Fn:
    nothrow = _nothrow(a) and _nothrow(b)
    constant = getattr(b, "constant", None)
    if constant is not None:  # ``x = 'literal'``: the right side is worked out once
        wanted = [_plain(v) for v in constant]

        def run_constant(c: list, t: Any) -> list:
            x = a(c, t)
            if not x:
                return []
            same = [_plain(v) for v in x] == wanted
            return [same if op == "=" else not same]

        return _mark(run_constant, nothrow=nothrow, single=True)

    def run(c: list, t: Any) -> list:
        x, y = a(c, t), b(c, t)
        if not x or not y:
            return []
        same = [_plain(v) for v in x] == [_plain(v) for v in y]
        return [same if op == "=" else not same]

    return _mark(run, nothrow=nothrow, single=True)


def _literal(value: Any) -> Fn:
    """A string, number or boolean literal: always the same one-item collection."""
    return _mark(lambda c, t: [value], nothrow=True, single=True, constant=[value])


def _mark(fn: Fn, *, nothrow: bool = False, single: bool = False, constant: list | None = None) -> Fn:
    """Facts about a compiled node: ``nothrow`` (its evaluation cannot raise on JSON input), ``single``
    (it yields at most one item), ``constant`` (the collection it always yields)."""
    fn.nothrow = nothrow  # type: ignore[attr-defined]
    fn.single = single  # type: ignore[attr-defined]
    if constant is not None:
        fn.constant = constant  # type: ignore[attr-defined]
    return fn


def _nothrow(fn: Fn) -> bool:
    return getattr(fn, "nothrow", False)


def _single(fn: Fn) -> bool:
    return getattr(fn, "single", False)


def _member(op: str, a: Fn, b: Fn) -> Fn:
    def run(c: list, t: Any) -> list:
        x, y = a(c, t), b(c, t)
        if op == "contains":
            x, y = y, x
        if not x:
            return []
        if len(x) > 1:
            raise _Unsupported("membership of a collection")
        return [_plain(x[0]) in [_plain(v) for v in y]]

    return run


def _dedupe(items: list) -> list:
    out: list = []
    for v in items:
        if not any(_plain(v) == _plain(w) for w in out):
            out.append(v)
    return out


def _function(name: str, base: Fn, args: list[Fn]) -> Fn:
    if name not in _FUNCTIONS:
        raise _Unsupported(name)
    arg = args[0] if args else None

    def each_true(items: list) -> list[bool]:
        assert arg is not None  # only the functions that take an argument use it
        return [_truth(arg([item], item)) is True for item in items]

    if name == "exists":
        return (lambda c, t: [any(each_true(base(c, t)))]) if arg else (lambda c, t: [bool(base(c, t))])
    if name == "empty":
        return lambda c, t: [not base(c, t)]
    if name == "where":
        if arg is None:
            raise _Unsupported("where()")

        def where(c: list, t: Any) -> list:
            items = base(c, t)
            return [i for i, ok in zip(items, each_true(items), strict=True) if ok]

        return where
    if name == "all":
        return lambda c, t: [all(each_true(base(c, t)))]
    if name == "not":
        return lambda c, t: [] if (v := _truth(base(c, t))) is None else [not v]
    if name == "count":
        return lambda c, t: [len(base(c, t))]
    if name == "first":
        return lambda c, t: base(c, t)[:1]
    if name == "hasValue":
        return lambda c, t: [len(i := base(c, t)) == 1 and _plain(i[0]) is not None and not isinstance(i[0], dict)]
    # extension('url')
    if arg is None:
        raise _Unsupported("extension()")

    def extension(c: list, t: Any) -> list:
        urls = arg(c, t)
        url = _plain(urls[0]) if urls else None
        out: list = []
        for item in base(c, t):
            holder = item.ext if isinstance(item, Prim) else item
            if isinstance(holder, dict):
                out.extend(e for e in (holder.get("extension") or ()) if isinstance(e, dict) and e.get("url") == url)
        return out

    return extension


def compile_fast(expression: str) -> Callable[[Any], list] | None:
    """A function evaluating ``expression`` on one value, or None when the expression is outside the subset."""
    try:
        fn = _Parser(expression).parse()
    except (_Unsupported, IndexError):
        return None

    def run(value: Any) -> list:
        return fn([value] if value is not None else [], value)

    return run
