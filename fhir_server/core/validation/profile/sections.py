"""The checks the sections of the profile walk call on one another.

Each section (elements, slicing, bindings, references, extensions) is a class of its own module;
:class:`~.validator.ProfileValidator` inherits them all. This base names what one section calls on
another, so each module type-checks alone; the sections' own definitions come first in the
validator's method order, so these are never reached.
"""

from __future__ import annotations

from typing import Any

from .cache import ProfileCache
from .context import _Ctx
from .model import Node, ValueSetIndex


class Sections(ProfileCache):
    """The cross-section calls of the profile walk (implemented by the section classes)."""

    def _check_value(
        self, node: Node, value: Any, expr: str, ctx: _Ctx, type_code: str | None, companion: Any = None
    ) -> None:
        raise NotImplementedError  # elements.ElementChecks

    def _check_slices(self, node: Node, items: list, where: str, ctx: _Ctx) -> None:
        raise NotImplementedError  # slicing.SliceChecks

    def _in_value_set(self, index: ValueSetIndex, value: Any, node: Node, type_code: str | None = None) -> bool:
        raise NotImplementedError  # bindings.BindingChecks

    def _check_binding(self, node: Node, value: Any, type_code: str | None, expr: str, ctx: _Ctx) -> None:
        raise NotImplementedError  # bindings.BindingChecks

    def _resolve(self, reference: str, ctx: _Ctx) -> tuple[str | None, dict | None]:
        raise NotImplementedError  # references.ReferenceChecks

    def _check_reference(self, node: Node, value: dict, expr: str, ctx: _Ctx) -> None:
        raise NotImplementedError  # references.ReferenceChecks
