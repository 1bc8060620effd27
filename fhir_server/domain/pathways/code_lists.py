"""Code lists as data: a ValueSet of the project's own, read as a membership test.

A ValueSet's ``compose.include`` entries are read in two forms (anything else refuses the file):

* ``system`` with ``concept``: exactly those codes;
* ``system`` with one filter ``concept is-a X``: X and every code below it. It is read by code prefix,
  which holds for the classifications used with it here (ICD-10: ``O36`` → ``O36.5``); the project's
  value sets use ``is-a`` on nothing else.

Codes are compared as :func:`normalise_code` gives them (upper case, no dot, no spaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class CodeListError(ValueError):
    """A ValueSet uses a form this reader does not evaluate."""


def normalise_code(code: str) -> str:
    """``f20.0`` → ``F200``: upper case, no dot, no spaces."""
    return re.sub(r"[\s.]", "", code).upper()


@dataclass(frozen=True)
class CodeList:
    """The codes of one ValueSet, by system: exact codes and ``is-a`` roots."""

    url: str
    codes: frozenset[tuple[str, str]]
    roots: tuple[tuple[str, str], ...]

    @classmethod
    def from_value_set(cls, value_set: dict) -> CodeList:
        """Read ``compose.include`` (see the module docstring); CodeListError names what cannot be read."""
        url = value_set.get("url", "")
        codes: set[tuple[str, str]] = set()
        roots: list[tuple[str, str]] = []
        compose = value_set.get("compose") or {}
        if compose.get("exclude"):
            raise CodeListError(f"{url}: compose.exclude is not read")
        for i, include in enumerate(compose.get("include") or []):
            system, filters = include.get("system"), include.get("filter") or []
            where = f"{url}: compose.include[{i}]"
            if not system or include.get("valueSet"):
                raise CodeListError(f"{where} needs a system and no valueSet")
            if filters and include.get("concept"):
                raise CodeListError(f"{where} has both concept and filter")
            codes.update((system, normalise_code(c["code"])) for c in include.get("concept") or [])
            for flt in filters:
                if (flt.get("property"), flt.get("op")) != ("concept", "is-a") or not flt.get("value"):
                    raise CodeListError(f"{where}.filter: only 'concept is-a <code>' is read")
                roots.append((system, normalise_code(flt["value"])))
        if not codes and not roots:
            raise CodeListError(f"{url}: the value set names no codes")
        return cls(url, frozenset(codes), tuple(roots))

    def contains(self, system: str | None, code: str | None) -> bool:
        """True when ``code`` of ``system`` is in the list."""
        if not system or not code:
            return False
        code = normalise_code(code)
        if (system, code) in self.codes:
            return True
        return any(system == s and code.startswith(root) for s, root in self.roots)
