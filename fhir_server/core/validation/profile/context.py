"""The state of one profile walk (:class:`_Ctx`) and the helpers every check of the walk uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.issues import Issue

Resolver = Callable[[str], dict | None]
#: how deep the walk follows type profiles and reference targets
_MAX_DEPTH = 3


@dataclass(slots=True)
class _Ctx:
    root: dict
    resolver: Resolver | None
    issues: list[Issue] = field(default_factory=list)
    profile_url: str = ""
    depth: int = 0
    contained: dict[str, dict] = field(default_factory=dict)
    #: (id(target), profile url) -> conforms; shared by the whole validate() call
    conformance: dict[tuple[int, str], bool] = field(default_factory=dict)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _contained_by_id(resource: dict) -> dict[str, dict]:
    return {
        c["id"]: c for c in _list(resource.get("contained")) if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


def _add(ctx: _Ctx, severity: str, code: str, expr: str, rule: str, en: str, nb: str) -> None:
    ctx.issues.append(Issue(severity, code, en, expr, nb, rule))
