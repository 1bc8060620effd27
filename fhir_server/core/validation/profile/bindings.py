"""Bindings of profile elements: required -> error, extensible -> warning, preferred/example -> nothing."""

from __future__ import annotations

from typing import Any

from .context import _add, _Ctx, _list
from .model import Node, ValueSetIndex
from .sections import Sections


class BindingChecks(Sections):
    """Codes against the value sets profiles bind.

    A part of :class:`~.validator.ProfileValidator`, which mixes the parts together: the methods of
    the other parts are reached through ``self``.
    """

    def _in_value_set(self, index: ValueSetIndex, value: Any, node: Node, type_code: str | None = None) -> bool:
        pairs = _codes_of(value, type_code or (node.types[0]["code"] if len(node.types) == 1 else None))
        return any(index.contains(system, code) for system, code in pairs or ())

    def _check_binding(self, node: Node, value: Any, type_code: str | None, expr: str, ctx: _Ctx) -> None:
        assert node.binding is not None  # only bound elements are checked
        strength, vs_url = node.binding
        pairs = _codes_of(value, type_code)
        if pairs is None:
            return  # not a coded type (string, uri, Quantity ...)
        index = self.value_set(vs_url)
        if not index.known:
            if strength == "required":
                _add(
                    ctx,
                    "warning",
                    "not-supported",
                    expr,
                    "binding-unknown-vs",
                    f"Value set {vs_url} is not known to this server; the code was not checked",
                    f"Verdisettet {vs_url} er ukjent for serveren; koden er ikke kontrollert",
                )
            return
        if not pairs:
            if strength == "required" and type_code == "CodeableConcept":
                _add(
                    ctx,
                    "error",
                    "code-invalid",
                    expr,
                    "binding-required",
                    f"No code given; a code from the required value set {vs_url} is needed",
                    f"Ingen kode oppgitt; en kode fra det påkrevde verdisettet {vs_url} trengs",
                )
            return
        if any(index.contains(system, code) for system, code in pairs):
            return
        shown = ", ".join(f"{s}#{c}" if s else str(c) for s, c in pairs)
        if strength == "required":
            _add(
                ctx,
                "error",
                "code-invalid",
                expr,
                "binding-required",
                f"The code {shown} is not in the required value set {vs_url}",
                f"Koden {shown} finnes ikke i det påkrevde verdisettet {vs_url}",
            )
        else:
            _add(
                ctx,
                "warning",
                "code-invalid",
                expr,
                "binding-extensible",
                f"The code {shown} is not in the extensible value set {vs_url}; use a code from it where one fits",
                f"Koden {shown} finnes ikke i verdisettet {vs_url}; bruk en kode derfra når en passer",
            )


def _codes_of(value: Any, type_code: str | None) -> list[tuple[str | None, str | None]] | None:
    if type_code == "code" or (type_code is None and isinstance(value, str)):
        return [(None, value)] if isinstance(value, str) else []
    if type_code == "Coding" and isinstance(value, dict):
        return [(value.get("system"), value.get("code"))] if value.get("code") else []
    if type_code == "CodeableConcept" and isinstance(value, dict):
        return [
            (c.get("system"), c.get("code"))
            for c in _list(value.get("coding"))
            if isinstance(c, dict) and c.get("code")
        ]
    return None
