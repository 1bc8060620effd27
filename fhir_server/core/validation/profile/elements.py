"""The walk over one element of a profile: cardinality, ``fixed[x]``, ``pattern[x]``, invariants, type
profiles, and the children it visits (``plan.py`` leaves out those that can report nothing).
"""

from __future__ import annotations

from typing import Any

from .cache import ProfileUnknown
from .context import _MAX_DEPTH, _add, _Ctx
from .model import Node, matches_fixed, matches_pattern, run_invariant
from .plan import index_children, is_inert
from .sections import Sections
from .snapshot import SnapshotError


class ElementChecks(Sections):
    """Checks of element occurrences against their :class:`Node`.

    A part of :class:`~.validator.ProfileValidator`, which mixes the parts together: the methods of
    the other parts are reached through ``self``.
    """

    def _check_value(
        self, node: Node, value: Any, expr: str, ctx: _Ctx, type_code: str | None, companion: Any = None
    ) -> None:
        """All checks of one occurrence ``value`` of element ``node`` (``companion``: a primitive's ``_x`` object)."""
        fixed = node.fixed
        fixed_broken = fixed is not None and value is not None and not matches_fixed(value, fixed[1])
        if fixed is not None and fixed_broken and not self._fixed_alias(node, value, ctx):
            _add(
                ctx,
                "error",
                "value",
                expr,
                "profile-fixed",
                f"Value must be exactly {_show(fixed[1])} (fixed by profile {ctx.profile_url}), found {_show(value)}",
                f"Verdien må være nøyaktig {_show(fixed[1])} (låst av profilen), fant {_show(value)}",
            )
        if node.pattern is not None and value is not None and not matches_pattern(value, node.pattern[1]):
            _add(
                ctx,
                "error",
                "value",
                expr,
                "profile-pattern",
                f"Value does not match the pattern {_show(node.pattern[1])} required by profile {ctx.profile_url}",
                f"Verdien samsvarer ikke med mønsteret {_show(node.pattern[1])} som profilen krever",
            )
        code = type_code or (node.types[0]["code"] if len(node.types) == 1 else None)
        if node.binding is not None and value is not None:
            self._check_binding(node, value, code, expr, ctx)
        if code == "Reference" and isinstance(value, dict) and node.check_targets:
            self._check_reference(node, value, expr, ctx)
        for inv in node.invariants:
            ok = run_invariant(inv, value, ctx.root)
            if ok is None:
                _add(
                    ctx,
                    "warning",
                    "invariant",
                    expr,
                    inv.key,
                    f"Constraint {inv.key} could not be evaluated: {inv.expression}",
                    f"Regelen {inv.key} kunne ikke evalueres",
                )
            elif not ok:
                severity = "error" if inv.severity == "error" else "warning"
                _add(
                    ctx,
                    severity,
                    "invariant",
                    expr,
                    inv.key,
                    f"Constraint {inv.key} failed: {inv.human}",
                    f"Regelen {inv.key} er brutt: {inv.human}",
                )
        if not isinstance(value, dict):
            if node.children:
                # a primitive the profile constrains inside: its id/extension live in the ``_x`` companion
                self._check_children(node, companion if isinstance(companion, dict) else {}, expr, ctx)
            return
        if node.children:
            self._check_children(node, value, expr, ctx)
        elif code not in ("Extension", None) and node.type_profiles() and ctx.depth < _MAX_DEPTH:
            self._check_type_profile(node.type_profiles()[0], value, expr, ctx)

    def _check_type_profile(self, url: str, value: dict, expr: str, ctx: _Ctx) -> None:
        """A data type element whose type names a profile (e.g. no-basis-Address): check against it."""
        try:
            cp = self.compiled(url)
        except ProfileUnknown:
            _add(
                ctx,
                "warning",
                "not-supported",
                expr,
                "profile-unknown",
                f"Type profile {url} is not known to this server; not checked",
                f"Typeprofilen {url} er ukjent for serveren; ikke kontrollert",
            )
            return
        except SnapshotError:
            return
        previous = ctx.profile_url
        ctx.profile_url = url
        ctx.depth += 1
        self._check_value(cp.root, value, expr, ctx, cp.type)
        ctx.depth -= 1
        ctx.profile_url = previous

    def _occurrences(self, child: Node, obj: dict, expr: str) -> list[tuple[str, Any, str, str | None, Any]]:
        """(json key, value, expression, type code, ``_x`` companion) for each occurrence of ``child`` in ``obj``."""
        out: list[tuple[str, Any, str, str | None, Any]] = []
        if child.is_choice:
            stem = child.name[:-3]
            for key in obj:
                plain = key[1:] if key.startswith("_") else key
                if not plain.startswith(stem) or plain[len(stem) :] not in self._choice_suffixes:
                    continue
                if key.startswith("_") and plain in obj:
                    continue
                out.append(
                    (plain, obj.get(plain), f"{expr}.{plain}", child.json_names.get(plain, "?"), obj.get("_" + plain))
                )
            return out
        name = child.name
        raw = obj.get(name)
        ext = obj.get("_" + name)
        if raw is None and ext is None:  # absent (the common case for elements checked for their minimum)
            return out
        type_code = child.json_names.get(name)
        if isinstance(raw, list) or isinstance(ext, list):
            values = raw if isinstance(raw, list) else []
            exts = ext if isinstance(ext, list) else []
            for i in range(max(len(values), len(exts))):
                value = values[i] if i < len(values) else None
                companion = exts[i] if i < len(exts) else None
                out.append((name, value, f"{expr}.{name}[{i}]", type_code, companion))
        else:
            out.append((name, raw, f"{expr}.{name}", type_code, ext))
        return out

    def _check_children(self, node: Node, obj: dict, expr: str, ctx: _Ctx) -> None:
        if node.by_key is None:
            index_children(node, self._choice_suffixes)
        by_key = node.by_key
        assert by_key is not None  # index_children filled it
        done: set[str] = set()
        for key in obj:
            child = by_key.get(key)
            if child is not None and child.id not in done:
                done.add(child.id)
                self._check_child(child, obj, expr, ctx)
        for child in node.must_check:
            if child.id not in done:
                self._check_child(child, obj, expr, ctx)

    def _check_child(self, child: Node, obj: dict, expr: str, ctx: _Ctx) -> None:
        if not child.slices and not child.is_choice and is_inert(child):
            # only the cardinality can be wrong: count the occurrences without listing them
            raw, ext = obj.get(child.name), obj.get("_" + child.name)
            if isinstance(raw, list) or isinstance(ext, list):
                count = max(len(raw) if isinstance(raw, list) else 0, len(ext) if isinstance(ext, list) else 0)
            else:
                count = 0 if raw is None and ext is None else 1
            if child.min <= count <= child.max:
                return
        items = self._occurrences(child, obj, expr)
        count = len(items)
        if not child.slices and child.min <= count <= child.max and not child.is_choice:
            # the common case: no cardinality issue, no slicing, no choice type to check
            if not is_inert(child):  # an inert element reports nothing for any value
                for _key, value, item_expr, type_code, companion in items:
                    if type_code != "?":
                        self._check_value(child, value, item_expr, ctx, type_code, companion)
            return
        where = f"{expr}.{child.name[:-3] if child.is_choice else child.name}"
        if count < child.min and child.check_min:
            _add(
                ctx,
                "error",
                "required",
                where,
                "profile-min",
                f"{where}: minimum required = {child.min}, but only found {count} (profile {ctx.profile_url})",
                f"{where}: minst {child.min} påkrevd, fant {count} (profil {ctx.profile_url})",
            )
        if count > child.max and child.check_max:
            _add(
                ctx,
                "error",
                "processing",
                where,
                "profile-max",
                f"{where}: maximum allowed = {child.max_text}, but found {count} (profile {ctx.profile_url})",
                f"{where}: høyst {child.max_text} tillatt, fant {count} (profil {ctx.profile_url})",
            )
        if not items:
            if child.slices:
                self._check_slices(child, [], where, ctx)
            return
        if child.is_choice:
            for key, _value, item_expr, type_code, _companion in items:
                if type_code == "?":
                    allowed = ", ".join(child.json_names) or "none"
                    _add(
                        ctx,
                        "error",
                        "processing",
                        item_expr,
                        "profile-type",
                        f"{key} is not allowed here by profile {ctx.profile_url} (allowed: {allowed})",
                        f"{key} er ikke tillatt her av profilen (tillatt: {allowed})",
                    )
        if child.slices:
            self._check_slices(child, items, where, ctx)
        elif not is_inert(child):
            for _key, value, item_expr, type_code, companion in items:
                if type_code != "?":
                    self._check_value(child, value, item_expr, ctx, type_code, companion)

    def _fixed_alias(self, node: Node, value: Any, ctx: _Ctx) -> bool:
        """A documented alias of a defective fixed value (profiles/suppressions.json)."""
        path = ".".join(seg.split(":", 1)[0] for seg in node.id.split("."))
        return isinstance(value, str) and value in self.registry.suppressions.fixed_aliases(ctx.profile_url, path)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."
