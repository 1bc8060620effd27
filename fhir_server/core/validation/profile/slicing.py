"""Slicing: which slice each item of a sliced element belongs to (by its discriminators), slice
cardinalities, ``closed``/``openAtEnd`` rules and order. Slices discriminated by one fixed string
are found with a lookup table built once per node (``_slice_table``).
"""

from __future__ import annotations

from typing import Any

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.issues import is_error
from fhir_server.core.pathsplit import split_outside

from .cache import ProfileUnknown
from .context import _add, _Ctx, _list
from .model import Node, matches_fixed, matches_pattern
from .plan import is_inert
from .sections import Sections
from .snapshot import SnapshotError


class SliceChecks(Sections):
    """Slicing and discriminators.

    A part of :class:`~.validator.ProfileValidator`, which mixes the parts together: the methods of
    the other parts are reached through ``self``.
    """

    def _check_slices(self, node: Node, items: list, where: str, ctx: _Ctx) -> None:
        slicing = node.slicing or {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}
        rules = slicing.get("rules", "open")
        discriminators = slicing.get("discriminator", ())
        counts = dict.fromkeys((s.id for s in node.slices), 0)
        seen_unmatched = False
        last_slice = -1
        table = self._slice_table(node, discriminators) if items else None
        for key, value, item_expr, type_code, companion in items:
            match_index = -1
            if table is not None:  # one string per slice at one path: a lookup finds the first slice that matches
                found, segments = table
                for v in self._values_at(value, segments, ctx):
                    if isinstance(v, str) and v in found and (match_index < 0 or found[v] < match_index):
                        match_index = found[v]
            else:
                reached: dict[str, list] = {}  # discriminator path -> values of this item (shared by the slices)
                for i, s in enumerate(node.slices):
                    if self._slice_matches(s, key, value, type_code, discriminators, ctx, reached):
                        match_index = i
                        break
            if match_index >= 0:
                s = node.slices[match_index]
                counts[s.id] += 1
                if rules == "openAtEnd" and seen_unmatched:
                    _add(
                        ctx,
                        "error",
                        "processing",
                        item_expr,
                        "slice-open-at-end",
                        f"{item_expr} matches slice '{s.slice_name}' but comes after elements that match no slice "
                        f"(slicing of {where} is openAtEnd)",
                        f"{item_expr} passer utsnittet '{s.slice_name}', men står etter elementer uten utsnitt",
                    )
                if slicing.get("ordered") and match_index < last_slice:
                    _add(
                        ctx,
                        "error",
                        "processing",
                        item_expr,
                        "slice-order",
                        f"{item_expr}: slices of {where} must appear in the order of the profile",
                        f"{item_expr}: utsnittene av {where} må komme i profilens rekkefølge",
                    )
                last_slice = max(last_slice, match_index)
                if not is_inert(s):
                    self._check_value(s, value, item_expr, ctx, type_code, companion)
            else:
                seen_unmatched = True
                if rules == "closed":
                    _add(
                        ctx,
                        "error",
                        "processing",
                        item_expr,
                        "slice-closed",
                        f"{item_expr} does not match any slice of {where}, and the slicing is closed "
                        f"(profile {ctx.profile_url})",
                        f"{item_expr} passer ikke i noe utsnitt av {where}, og utsnittene er lukket",
                    )
                if not is_inert(node):
                    self._check_value(node, value, item_expr, ctx, type_code, companion)
        for s in node.slices:
            n = counts[s.id]
            if n < s.min:
                _add(
                    ctx,
                    "error",
                    "required",
                    where,
                    "slice-min",
                    f"Slice '{s.slice_name}' of {where} requires at least {s.min} element(s), found {n} "
                    f"(profile {ctx.profile_url})",
                    f"Utsnittet '{s.slice_name}' av {where} krever minst {s.min}, fant {n}",
                )
            if n > s.max:
                _add(
                    ctx,
                    "error",
                    "processing",
                    where,
                    "slice-max",
                    f"Slice '{s.slice_name}' of {where} allows at most {s.max_text} element(s), found {n} "
                    f"(profile {ctx.profile_url})",
                    f"Utsnittet '{s.slice_name}' av {where} tillater høyst {s.max_text}, fant {n}",
                )

    def _slice_table(self, node: Node, discriminators: Any) -> tuple[dict[str, int], list[str]] | None:
        """For slicing by one ``value``/``pattern`` discriminator where every slice fixes a string (or names
        extension profiles, for ``url``): (string -> index of the first slice it selects, the path's segments).

        None when the slicing is of another kind (the slices are then tried one by one). Built once per node.
        """
        self._fresh()
        hit = self._slice_tables.get(id(node))
        if hit is None:
            hit = (node, self._build_slice_table(node, discriminators))  # the node is kept: its id stays unique
            self._slice_tables[id(node)] = hit
        return hit[1]

    def _build_slice_table(self, node: Node, discriminators: Any) -> tuple[dict[str, int], list[str]] | None:
        if not isinstance(discriminators, list | tuple) or len(discriminators) != 1:
            return None
        d = discriminators[0]
        if not isinstance(d, dict) or d.get("type") not in ("value", "pattern"):
            return None
        path = d.get("path", "$this")
        if type(path) is not str:
            return None
        segments = _path_segments(path)
        if "resolve()" in segments:
            return None
        found: dict[str, int] = {}
        for i, s in enumerate(node.slices):
            # what _discriminator_ok compares the item's values with, in the same order of precedence
            target = self._discriminated_node(s, path, segments)
            if target is not None and target.fixed is not None:
                wanted = [target.fixed[1]]
            elif target is not None and target.pattern is not None:
                wanted = [target.pattern[1]]
            elif segments == ["url"] and s.type_profiles():
                wanted = s.type_profiles()
            elif target is not None and target.binding is not None:
                return None
            else:
                wanted = []  # the slice matches nothing
            for w in wanted:
                if type(w) is not str:  # e.g. a Coding pattern: compared by structure, not by a lookup
                    return None
                found.setdefault(w, i)
        return found, segments

    def _slice_matches(
        self,
        s: Node,
        key: str,
        value: Any,
        type_code: str | None,
        discriminators,
        ctx: _Ctx,
        reached: dict[str, list] | None = None,
    ) -> bool:
        if not discriminators:
            return self._conforms(s, value, type_code, ctx)
        for d in discriminators:
            path = d.get("path", "$this")
            if not self._discriminator_ok(s, d.get("type"), path, key, value, type_code, ctx, reached):
                return False
        return True

    def _conforms(self, node: Node, value: Any, type_code: str | None, ctx: _Ctx) -> bool:
        trial = _Ctx(
            root=ctx.root,
            resolver=ctx.resolver,
            profile_url=ctx.profile_url,
            depth=ctx.depth + 1,
            contained=ctx.contained,
        )
        self._check_value(node, value, "x", trial, type_code)
        return not any(is_error(i) for i in trial.issues)

    def _discriminator_ok(
        self,
        s: Node,
        dtype: str | None,
        path: str,
        key: str,
        value: Any,
        type_code: str | None,
        ctx: _Ctx,
        reached: dict[str, list] | None = None,
    ) -> bool:
        """``reached``: values of this item per discriminator path, filled and reused across the slices
        (not for paths through ``resolve()``, whose resolver is called each time as before)."""
        segments = _path_segments(path)
        if reached is not None and type(path) is str and "resolve()" not in segments:
            values = reached.get(path)
            if values is None:
                values = reached[path] = self._values_at(value, segments, ctx)
        else:
            values = self._values_at(value, segments, ctx)
        target = self._discriminated_node(s, path, segments)
        if dtype in ("value", "pattern"):
            if target is not None and target.fixed is not None:
                return any(matches_fixed(v, target.fixed[1]) for v in values)
            if target is not None and target.pattern is not None:
                return any(matches_pattern(v, target.pattern[1]) for v in values)
            if segments == ["url"] and s.type_profiles():
                return any(v in s.type_profiles() for v in values)
            if target is not None and target.binding is not None:
                index = self.value_set(target.binding[1])
                return any(self._in_value_set(index, v, target) for v in values)
            return False
        if dtype == "exists":
            if target is None:
                return False
            if target.min >= 1:
                return bool(values)
            if target.max == 0:
                return not values
            return True
        if dtype == "type":
            wanted = {t["code"] for t in (target.types if target else s.types)}
            actual = self._types_at(value, segments, type_code, ctx)
            return bool(actual) and all(a in wanted for a in actual)
        if dtype == "profile":
            profiles = []
            if target is not None:
                profiles = target.type_profiles() or [p for t in target.types for p in t.get("targetProfile", ())]
            if segments and segments[-1] == "resolve()":
                profiles = [p for t in s.types for p in t.get("targetProfile", ())] or profiles
            if not profiles:
                return False
            for v in values:
                for url in profiles:
                    try:
                        cp = self.compiled(url)
                    except (ProfileUnknown, SnapshotError):
                        continue
                    if self._conforms(cp.root, v, cp.type, ctx):
                        return True
            return False
        return False

    def _values_at(self, value: Any, segments: list[str], ctx: _Ctx) -> list[Any]:
        current = [value]
        for seg in segments:
            nxt: list[Any] = []
            if seg == "$this":
                continue
            if seg == "resolve()":
                for v in current:
                    if isinstance(v, dict) and isinstance(v.get("reference"), str):
                        _t, target = self._resolve(v["reference"], ctx)
                        if target is not None:
                            nxt.append(target)
            elif seg.startswith("extension("):
                url = seg[len("extension(") : -1].strip("'\"")
                for v in current:
                    if isinstance(v, dict):
                        nxt.extend(e for e in _list(v.get("extension")) if isinstance(e, dict) and e.get("url") == url)
            elif seg.startswith("ofType("):
                nxt = current
            else:
                for v in current:
                    if not isinstance(v, dict):
                        continue
                    found = v.get(seg)
                    if found is None:
                        for k, x in v.items():
                            if k.startswith(seg) and k[len(seg) :] in self._choice_suffixes:
                                found = x
                                break
                    if isinstance(found, list):
                        nxt.extend(found)
                    elif found is not None:
                        nxt.append(found)
            current = nxt
        return current

    def _types_at(self, value: Any, segments: list[str], type_code: str | None, ctx: _Ctx) -> list[str]:
        if not segments or segments == ["$this"]:
            if isinstance(value, dict) and "resourceType" in value:
                return [value["resourceType"]]
            return [type_code] if type_code else []
        if segments[-1] == "resolve()":
            return [
                v["resourceType"]
                for v in self._values_at(value, segments, ctx)
                if isinstance(v, dict) and v.get("resourceType")
            ]
        parent = self._values_at(value, segments[:-1], ctx)
        stem = segments[-1]
        out = []
        for v in parent:
            if isinstance(v, dict):
                for k in v:
                    if k.startswith(stem) and k[len(stem) :] in self._choice_suffixes:
                        suffix = k[len(stem) :]
                        out.append(suffix if r4().type(suffix) else suffix[:1].lower() + suffix[1:])
                    elif k == stem and isinstance(v[k], dict) and "resourceType" in v[k]:
                        out.append(v[k]["resourceType"])
        return out

    def _discriminated_node(self, s: Node, path: str, segments: list[str]) -> Node | None:
        """:meth:`_node_at` for a discriminator path, computed once per (slice, path)."""
        if type(path) is not str:  # a malformed profile: no memo, the walk fails as it would have
            return self._node_at(s, segments)
        self._fresh()
        key = (id(s), path)
        hit = self._discriminated.get(key)
        if hit is None:
            hit = (s, self._node_at(s, segments))  # the slice is kept so that its id is not reused
            self._discriminated[key] = hit
        return hit[1]

    def _node_at(self, s: Node, segments: list[str]) -> Node | None:
        node: Node | None = s
        for seg in segments:
            if node is None:
                return None
            if seg in ("$this", "resolve()") or seg.startswith("ofType("):
                continue
            if seg.startswith("extension("):
                url = seg[len("extension(") : -1].strip("'\"")
                holder = node.child("extension")
                node = None
                for sl in holder.slices if holder else ():
                    url_node = sl.child("url")
                    if url in sl.type_profiles() or (url_node and url_node.fixed and url_node.fixed[1] == url):
                        node = sl
                        break
                continue
            nxt = node.child(seg)
            if nxt is None and not node.children and node.type_profiles():
                try:
                    cp = self.compiled(node.type_profiles()[0])
                    nxt = cp.root.child(seg)
                except (ProfileUnknown, SnapshotError):
                    nxt = None
            node = nxt
        return node


_SEGMENTS: dict[str, list[str]] = {}


def _path_segments(path: str) -> list[str]:
    """A FHIRPath-like path in segments, dots inside parentheses kept; no trailing empty segment.

    Memoised (discriminator paths are few); callers must not modify the list.
    """
    segments = _SEGMENTS.get(path) if type(path) is str else None
    if segments is None:
        segments = split_outside(path, opening="(", closing=")")
        segments = segments[:-1] if segments[-1] == "" else segments
        if type(path) is str and len(_SEGMENTS) < 4096:
            _SEGMENTS[path] = segments
    return segments
