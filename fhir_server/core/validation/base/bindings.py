"""Required value-set bindings: expansions of the bundled R4 value sets and the checks that use them.

A value set is expanded from ``compose.include`` (explicit concepts, whole bundled code systems
including nested concepts, and ``valueSet`` imports), minus ``compose.exclude``. When any part
depends on a code system that is not bundled (UCUM, mime types, currencies, languages ...), the
expansion is marked incomplete and codes outside it are not refused (the check is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.issues import Issue

from .primitives import mask

_MAX_LISTED = 12


@dataclass(frozen=True, slots=True)
class Expansion:
    """The codes of a value set: (system, code) pairs, bare codes, and whether the list is complete."""

    url: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]
    ordered: tuple[str, ...]  # codes in definition order, for messages
    complete: bool

    def allowed_text(self) -> str:
        shown = ", ".join(self.ordered[:_MAX_LISTED])
        return shown + (", ..." if len(self.ordered) > _MAX_LISTED else "")


def _concept_codes(concepts: list[dict]) -> list[str]:
    out: list[str] = []
    for concept in concepts:
        if "code" in concept:
            out.append(concept["code"])
        if concept.get("concept"):
            out.extend(_concept_codes(concept["concept"]))
    return out


def _include_pairs(include: dict, seen: frozenset[str]) -> tuple[list[tuple[str, str]], bool]:
    """Pairs selected by one include/exclude entry, and whether they are known completely."""
    defs = r4()
    system = include.get("system")
    complete = True
    pairs: list[tuple[str, str]] = []
    if system:
        if include.get("concept"):
            pairs = [(system, c["code"]) for c in include["concept"] if "code" in c]
        elif include.get("filter"):
            complete = False
        else:
            cs = defs.code_system(system)
            if cs is None or cs.get("content", "complete") != "complete":
                complete = False
            else:
                pairs = [(system, code) for code in _concept_codes(cs.get("concept", []))]
    imported: list[tuple[str, str]] | None = None
    for vs_url in include.get("valueSet", ()):
        if vs_url in seen:
            continue
        sub = _expand(vs_url.split("|")[0], seen)
        complete = complete and sub.complete
        sub_pairs = list(sub.pairs)
        imported = sub_pairs if imported is None else [p for p in imported if p in set(sub_pairs)]
    if imported is not None:
        pairs = [p for p in pairs if p in set(imported)] if system else imported
    return pairs, complete


def _expand(url: str, seen: frozenset[str] = frozenset()) -> Expansion:
    vs = r4().value_set(url)
    if vs is None:
        return Expansion(url, frozenset(), frozenset(), (), False)
    seen = seen | {url}
    compose = vs.get("compose") or {}
    pairs: list[tuple[str, str]] = []
    complete = True
    for include in compose.get("include", ()):
        got, ok = _include_pairs(include, seen)
        pairs.extend(got)
        complete = complete and ok
    excluded: set[tuple[str, str]] = set()
    for exclude in compose.get("exclude", ()):
        got, _ok = _include_pairs(exclude, seen)
        excluded.update(got)
    pairs = [p for p in pairs if p not in excluded]
    ordered = tuple(dict.fromkeys(code for _system, code in pairs))
    return Expansion(url, frozenset(pairs), frozenset(ordered), ordered, complete)


@cache
def expansion(url: str) -> Expansion:
    """The (cached) expansion of a bundled value set; unknown value sets give an empty, incomplete one."""
    return _expand(url.split("|")[0])


def _not_in(path: str, shown: str, exp: Expansion, several: bool = False) -> Issue:
    en = "none of the codings " + shown + " is a code" if several else shown + " is not a code"
    nb = "ingen av kodingene " + shown + " er en kode" if several else shown + " er ikke en kode"
    return Issue(
        "error",
        "code-invalid",
        mask(f"{path}: {en} of the required value set {exp.url} (allowed: {exp.allowed_text()})"),
        path,
        mask(f"{path}: {nb} i det påkrevde verdisettet {exp.url} (tillatt: {exp.allowed_text()})"),
        "binding-required",
    )


def check_code(value: str, value_set: str, path: str) -> Issue | None:
    """A ``code`` element under a required binding."""
    exp = expansion(value_set)
    if value in exp.codes or not exp.complete:
        return None
    return _not_in(path, repr(value), exp)


def _coding_ok(coding: dict, exp: Expansion) -> bool | None:
    """True/False when the coding can be judged against the expansion, None when it cannot."""
    code = coding.get("code")
    if not isinstance(code, str):
        return None
    system = coding.get("system")
    if isinstance(system, str):
        if (system, code) in exp.pairs:
            return True
        return False if exp.complete else None
    if code in exp.codes:
        return True
    return False if exp.complete else None


def check_coding(coding: object, value_set: str, path: str) -> Issue | None:
    """A ``Coding`` under a required binding."""
    if not isinstance(coding, dict):
        return None
    exp = expansion(value_set)
    if _coding_ok(coding, exp) is False:
        return _not_in(path, _coding_text(coding), exp)
    return None


def check_codeable_concept(concept: object, value_set: str, path: str) -> Issue | None:
    """A ``CodeableConcept`` under a required binding: at least one coding must be in the value set."""
    if not isinstance(concept, dict):
        return None
    codings = concept.get("coding")
    exp = expansion(value_set)
    if not isinstance(codings, list) or not codings:
        if not exp.complete or "text" not in concept:
            return None
        return Issue(
            "error",
            "code-invalid",
            f"{path}: a coding from the required value set {exp.url} is needed (allowed: {exp.allowed_text()})",
            path,
            f"{path}: en koding fra det påkrevde verdisettet {exp.url} mangler (tillatt: {exp.allowed_text()})",
            "binding-required",
        )
    verdicts = [_coding_ok(c, exp) if isinstance(c, dict) else None for c in codings]
    if any(v is True or v is None for v in verdicts):
        return None
    shown = ", ".join(_coding_text(c) for c in codings if isinstance(c, dict))
    return _not_in(path, f"({shown})", exp, several=True)


def _coding_text(coding: dict) -> str:
    system, code = coding.get("system"), coding.get("code")
    return f"{system}|{code}" if system else repr(code)
