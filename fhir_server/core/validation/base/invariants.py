"""Invariants (``constraint`` with severity error) of the R4 element definitions.

The common ones are implemented natively in Python (fast, and some use ``hasValue()``, which
fhirpathpy does not implement). The rest are compiled once with fhirpathpy and evaluated only on
elements present in the instance; a leading ``X.empty() or ...`` / ``X.exists() implies ...`` guard
skips the evaluation when ``X`` is absent. Expressions fhirpathpy cannot compile or evaluate are
skipped and listed in :data:`SKIPPED` (our engine's limits never reject a resource).

ele-1, ext-1, dom-2..dom-5 and ref-1 are checked while walking the JSON (``walk.py``), not here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from fhir_server.core.jsonio import to_plain

log = logging.getLogger(__name__)

#: (key, expression, reason) of invariants not evaluated because of fhirpathpy's limits.
SKIPPED: list[tuple[str, str, str]] = []
_SKIPPED_KEYS: set[tuple[str, str]] = set()

#: Checked elsewhere (while walking) or not checkable here.
WALKER_KEYS = frozenset({"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "dom-6", "ref-1"})


def _skip(key: str, expression: str, reason: str) -> None:
    if (key, expression) not in _SKIPPED_KEYS:
        _SKIPPED_KEYS.add((key, expression))
        SKIPPED.append((key, expression, reason))
        log.info("invariant %s not evaluated (%s): %s", key, reason, expression)


# -- helpers for native checks -----------------------------------------------------------------


def _has(node: dict, name: str) -> bool:
    return name in node or ("_" + name) in node


def _has_choice(node: dict, stem: str) -> bool:
    n = len(stem)
    return any(k.startswith(stem) and len(k) > n and k[n].isupper() for k in node)


def _instant(value: object) -> datetime | str | None:
    """A comparable form of a date/dateTime/instant: aware datetime, or the plain string for dates."""
    if not isinstance(value, str):
        return None
    if len(value) <= 10:
        return value
    return _parsed_instant(str(value))


@lru_cache(maxsize=1024)
def _parsed_instant(value: str) -> datetime | None:
    """The aware datetime of a dateTime/instant string, None when it has no time zone or does not parse."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _not_after(start: object, end: object) -> bool:
    """start <= end in FHIRPath terms; True (no verdict) when precisions differ or values do not parse."""
    a, b = _instant(start), _instant(end)
    if a is None or b is None or type(a) is not type(b):
        return True
    if isinstance(a, str) and len(a) != len(b):  # type: ignore[arg-type]
        return True
    return a <= b  # type: ignore[operator]


def _codings(concept: object) -> list[dict]:
    if isinstance(concept, dict) and isinstance(concept.get("coding"), list):
        return [c for c in concept["coding"] if isinstance(c, dict)]
    return []


def _per_1(n: dict) -> bool:
    return _not_after(n.get("start"), n.get("end"))


def _rng_2(n: dict) -> bool:
    low, high = n.get("low"), n.get("high")
    if not (isinstance(low, dict) and isinstance(high, dict)):
        return True
    a, b = low.get("value"), high.get("value")
    if not isinstance(a, int | Decimal) or not isinstance(b, int | Decimal) or isinstance(a, bool):
        return True
    if low.get("code") != high.get("code") or low.get("system") != high.get("system"):
        return True
    return a <= b


def _con_4(n: dict) -> bool:
    if not _has_choice(n, "abatement"):
        return True
    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    return any(
        c.get("system") == system and c.get("code") in ("resolved", "remission", "inactive")
        for c in _codings(n.get("clinicalStatus"))
    )


def _con_5(n: dict) -> bool:
    system = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    wrong = any(
        c.get("system") == system and c.get("code") == "entered-in-error" for c in _codings(n.get("verificationStatus"))
    )
    return not wrong or "clinicalStatus" not in n


def _entries(n: dict) -> list[dict]:
    entries = n.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _every_entry_has(n: dict, key: str, need: bool) -> bool:
    """Whether ``key`` is in every entry object (need) or in none (not need); other items are ignored."""
    entries = n.get("entry")
    if not isinstance(entries, list):
        return True
    for e in entries:  # noqa: SIM110 - a loop, not all() over a generator: this runs on every Bundle
        if isinstance(e, dict) and (key in e) != need:
            return False
    return True


def _bdl_2(n: dict) -> bool:
    return n.get("type") == "searchset" or _every_entry_has(n, "search", False)


def _bdl_3(n: dict) -> bool:
    return _every_entry_has(n, "request", n.get("type") in ("batch", "transaction", "history"))


def _bdl_4(n: dict) -> bool:
    return _every_entry_has(n, "response", n.get("type") in ("batch-response", "transaction-response", "history"))


def _bdl_7(n: dict) -> bool:
    if n.get("type") == "history":
        return True
    seen = set()
    for e in _entries(n):
        if "fullUrl" not in e:
            continue
        resource = e.get("resource")
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        key = (str(e["fullUrl"]), str(version))
        if key in seen:
            return False
        seen.add(key)
    return True


def _first_resource_type(n: dict) -> str | None:
    entries = _entries(n)
    resource = entries[0].get("resource") if entries else None
    return resource.get("resourceType") if isinstance(resource, dict) else None


def _bdl_9(n: dict) -> bool:
    ident = n.get("identifier")
    return n.get("type") != "document" or (isinstance(ident, dict) and "system" in ident and "value" in ident)


def _task_inv_1(n: dict) -> bool:
    return _not_after(n.get("authoredOn"), n.get("lastModified"))


NATIVE: dict[str, Callable[[dict], bool]] = {
    "per-1": _per_1,
    "rng-2": _rng_2,
    "cpt-2": lambda n: "value" not in n or "system" in n,
    "att-1": lambda n: "data" not in n or "contentType" in n,
    "qty-3": lambda n: "code" not in n or "system" in n,
    "sqty-1": lambda n: "comparator" not in n,
    "org-1": lambda n: "identifier" in n or "name" in n,
    "org-2": lambda n: n.get("use") != "home",
    "org-3": lambda n: n.get("use") != "home",
    "pat-1": lambda n: "name" in n or "telecom" in n or "address" in n or "organization" in n,
    "prr-1": lambda n: "orderDetail" not in n or "code" in n,
    "con-1": lambda n: "summary" in n or "assessment" in n,
    "con-2": lambda n: "code" in n or "detail" in n,
    "con-4": _con_4,
    "con-5": _con_5,
    "bdl-1": lambda n: "total" not in n or n.get("type") in ("searchset", "history"),
    "bdl-2": _bdl_2,
    "bdl-3": _bdl_3,
    "bdl-4": _bdl_4,
    "bdl-5": lambda n: "resource" in n or "request" in n or "response" in n,
    "bdl-7": _bdl_7,
    "bdl-8": lambda n: "/_history/" not in str(n.get("fullUrl", "")),
    "bdl-9": _bdl_9,
    "bdl-10": lambda n: n.get("type") != "document" or _has(n, "timestamp"),
    "bdl-11": lambda n: n.get("type") != "document" or _first_resource_type(n) == "Composition",
    "bdl-12": lambda n: n.get("type") != "message" or _first_resource_type(n) == "MessageHeader",
}
#: Keys whose native form is tied to one context path (``inv-1`` means different things on Task and Parameters).
NATIVE_CONTEXT: dict[str, str] = {"inv-1": "Task"}
NATIVE_BY_CONTEXT: dict[tuple[str, str], Callable[[dict], bool]] = {("inv-1", "Task"): _task_inv_1}

_GUARD = re.compile(
    r"^\(?\s*([A-Za-z][A-Za-z0-9]*)\s*\.\s*(?:empty\(\)\s+or\b|exists\(\)\s*\.\s*not\(\)\s+or\b|exists\(\)\s+implies\b)"
)
_UNSUPPORTED = ("hasValue()", "htmlChecks()", "resolve()", "conformsTo(", "memberOf(")


@dataclass(frozen=True, slots=True)
class Invariant:
    """One error-severity constraint, ready to check on a JSON node."""

    key: str
    human: str
    expression: str
    context: str  # element path the constraint is defined on
    native: Callable[[dict], bool] | None = None
    compiled: Callable | None = None
    guard: str | None = None

    def applies(self, node: dict) -> bool:
        """False when the guard element is absent, so the invariant holds without evaluating it."""
        return self.guard is None or _has(node, self.guard) or _has_choice(node, self.guard)

    def evaluate(self, plain: dict, plain_root: dict) -> bool:
        """Evaluate the FHIRPath form on Decimal-free JSON; True when it holds or cannot be evaluated."""
        try:
            # typed node: lets fhirpathpy resolve choice elements (``value`` -> ``valueString``) below the context
            target = plain if "resourceType" in plain else _typed_node(plain, self.context)
            result = self.compiled(target, {"resource": plain_root, "rootResource": plain_root})  # type: ignore[misc]
        except Exception as exc:  # fhirpathpy limits: never reject because of our engine
            _skip(self.key, self.expression, f"evaluation failed: {type(exc).__name__}: {exc}")
            return True
        return result != [False]

    def holds(self, node: dict, resource: dict) -> bool:
        """True when the node satisfies the invariant (or it cannot be evaluated)."""
        if self.native is not None:
            return self.native(node)
        if not self.applies(node):
            return True
        plain_root = to_plain(resource)
        return self.evaluate(plain_root if resource is node else to_plain(node), plain_root)


_compiled: dict[tuple[str, str, str], Invariant | None] = {}


def invariant(constraint: dict, context: str) -> Invariant | None:
    """The checkable form of one constraint defined on element ``context``; None when not checked here."""
    key, expression = constraint.get("key", ""), constraint.get("expression", "")
    if constraint.get("severity") != "error" or key in WALKER_KEYS or not expression:
        return None
    cache_key = (key, expression, context)
    if cache_key in _compiled:
        return _compiled[cache_key]
    human = constraint.get("human", "")
    inv: Invariant | None
    native = NATIVE_BY_CONTEXT.get((key, context)) or (NATIVE.get(key) if key not in NATIVE_CONTEXT else None)
    if native is not None:
        inv = Invariant(key, human, expression, context, native=native)
    elif any(u in expression for u in _UNSUPPORTED):
        _skip(key, expression, "uses a function fhirpathpy does not implement")
        inv = None
    else:
        inv = _compile(key, human, expression, context)
    _compiled[cache_key] = inv
    return inv


def _typed_node(node: dict, path: str) -> object:
    from fhirpathpy.engine.nodes import ResourceNode

    return ResourceNode.create_node(node, path)


def _no_trace(label: object, value: object) -> None:
    """fhirpathpy prints trace() output unless given a function; constraints use trace() for debugging only."""


def _compile(key: str, human: str, expression: str, context: str) -> Invariant | None:
    try:
        from fhirpathpy import compile as fp_compile
        from fhirpathpy.models import models

        compiled = fp_compile(expression, model=models["r4"], options={"traceFn": _no_trace})
    except Exception as exc:
        _skip(key, expression, f"does not compile: {type(exc).__name__}: {exc}")
        return None
    match = _GUARD.match(expression)
    return Invariant(key, human, expression, context, compiled=compiled, guard=match.group(1) if match else None)


def invariants_for(constraints: tuple[dict, ...], context: str) -> tuple[Invariant, ...]:
    """Checkable invariants of one element definition (duplicates by key removed)."""
    out: dict[str, Invariant] = {}
    for constraint in constraints:
        inv = invariant(constraint, context)
        if inv is not None and inv.key not in out:
            out[inv.key] = inv
    return tuple(out.values())
