"""The StructureDefinition-driven validation engine: a resource checked against profiles, from their snapshots.

``ProfileValidator(registry).validate(resource, profile_urls)`` checks the resource against its
``meta.profile`` claims plus the profiles asked for, and returns :class:`Issue` values with
FHIRPath expressions (``Patient.identifier[0].value``). Checked, from the snapshot as data:

* cardinality (min/max) at every level the profile describes;
* ``fixed[x]`` and ``pattern[x]``;
* slicing: discriminators ``value``, ``pattern``, ``type``, ``profile``, ``exists``; rules
  ``open``/``closed``/``openAtEnd``; ``ordered``; slice min and max;
* types of choice elements, and ``targetProfile`` of references (the target's type from the
  reference string; contained resources, Bundle entries and a resolver callback give the target
  itself, which is then validated against a target profile);
* bindings: required -> error, extensible -> warning, preferred/example -> nothing;
* invariants added by profiles (FHIRPath: a fast evaluator for the common subset, fhirpathpy for
  the rest, each compiled once). Expressions that need ``hasValue()`` outside the fast subset
  (not implemented in fhirpathpy) are skipped and listed in ``CompiledProfile.skipped``;

What R4 core itself demands (core cardinalities, core required bindings, core reference targets,
core invariants) is base validation's job and is not repeated here, unless ``core_checks=True``.
* every extension against its definition: context, value type, its own cardinalities and
  bindings; an unknown extension url is a warning.

Documented defects of published profiles are tolerated only through ``profiles/suppressions.json``.
Each profile is compiled once (cached by ``url|version``), so validation is a walk over the JSON.
The walk skips elements that can report nothing (``profile_plan.py``), finds slices discriminated by
one fixed string with a lookup (``_slice_table``), enters only the objects that hold extensions
(``extension_scan.py``) and remembers per node what does not depend on the instance (reference
targets, discriminator paths); each shortcut gives the issues of the full walk.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.conformance.packages import ConformanceRegistry, default_registry, is_core_url
from fhir_server.core.issues import Issue, is_error
from fhir_server.core.pathsplit import split_outside
from fhir_server.core.validation.extension_scan import extension_holders
from fhir_server.core.validation.profile_model import (
    CompiledProfile,
    Node,
    ValueSetIndex,
    build_value_set_index,
    compile_snapshot,
    matches_fixed,
    matches_pattern,
    run_invariant,
    upper_first,
)
from fhir_server.core.validation.profile_plan import index_children, is_inert
from fhir_server.core.validation.snapshot import SnapshotError, ensure_snapshot

Resolver = Callable[[str], dict | None]
log = logging.getLogger(__name__)

_REF_PATTERN = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
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


class ProfileUnknown(LookupError):
    pass


class ProfileValidator:
    """Validates resources against profiles held in a :class:`ConformanceRegistry`."""

    def __init__(
        self,
        registry: ConformanceRegistry,
        *,
        core_checks: bool = False,
        unknown_claim_severity: str = "error",
    ) -> None:
        self.registry = registry
        self.core_checks = core_checks
        self.unknown_claim_severity = unknown_claim_severity
        self._compiled: dict[str, CompiledProfile | str] = {}
        self._value_sets: dict[str, ValueSetIndex] = {}
        #: per node (by id, the node kept alive): reference targets, and the node a discriminator path reaches
        self._targets: dict[int, tuple[Node, dict[str, list[str]]]] = {}
        self._discriminated: dict[tuple[int, str], tuple[Node, Node | None]] = {}
        self._sds: dict[str, dict | None] = {}
        self._slice_tables: dict[int, tuple[Node, tuple[dict[str, int], list[str]] | None]] = {}
        self._generation = registry.generation
        self._choice_suffixes = {upper_first(name) for name in r4().types}

    # -- compiled profiles ----------------------------------------------------------------------

    def _fresh(self) -> None:
        if self._generation != self.registry.generation:
            self._compiled.clear()
            self._value_sets.clear()
            self._targets.clear()
            self._discriminated.clear()
            self._sds.clear()
            self._slice_tables.clear()
            self._generation = self.registry.generation

    def compiled(self, url: str) -> CompiledProfile:
        """The compiled profile for ``url`` (``url|version`` accepted); raises ProfileUnknown or SnapshotError.

        Compiled once per ``url|version`` of the resolved StructureDefinition; requests by either
        spelling share the result.
        """
        self._fresh()
        hit = self._compiled.get(url)
        if hit is None:
            sd = self.registry.structure_definition(url)
            if sd is None:
                raise ProfileUnknown(url)
            key = f"{sd.get('url')}|{sd.get('version', '')}"
            hit = self._compiled.get(key)
            if hit is None:
                try:
                    elements = ensure_snapshot(sd, self.registry)
                    hit = compile_snapshot(
                        sd, elements, core_checks=self.core_checks, suppressions=self.registry.suppressions
                    )
                except (SnapshotError, ValueError, KeyError) as exc:
                    hit = str(exc)
                self._compiled[key] = hit
            self._compiled[url] = hit
        if isinstance(hit, str):
            raise SnapshotError(hit)
        return hit

    def _structure_definition(self, url: str) -> dict | None:
        """``registry.structure_definition(url)``, remembered until the registry changes."""
        self._fresh()
        try:
            return self._sds[url]
        except KeyError:
            sd = self._sds[url] = self.registry.structure_definition(url)
            return sd

    def skipped_invariants(self) -> dict[str, list[str]]:
        """Per compiled profile: the invariants not evaluated (suppressed, or unsupported FHIRPath), with why."""
        return {
            f"{cp.url}|{cp.version or ''}": list(cp.skipped)
            for cp in set(c for c in self._compiled.values() if isinstance(c, CompiledProfile))
            if cp.skipped
        }

    def value_set(self, url: str) -> ValueSetIndex:
        self._fresh()
        index = self._value_sets.get(url)
        if index is None:
            index = build_value_set_index(url, self.registry)
            self._value_sets[url] = index
        return index

    # -- entry point ----------------------------------------------------------------------------

    def validate(
        self,
        resource: dict,
        profile_urls: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        expression: str | None = None,
    ) -> list[Issue]:
        """Issues of ``resource`` against its ``meta.profile`` claims plus ``profile_urls``.

        For a Bundle, each entry's resource is checked against its own claims, and references
        between entries resolve through the Bundle's ``fullUrl`` values.
        """
        issues: list[Issue] = []
        self._validate_resource(resource, list(profile_urls), resolver, expression, issues, depth=0)
        seen: set[tuple] = set()
        unique = []
        for issue in issues:
            key = (issue.severity, issue.expression, issue.diagnostics)
            if key not in seen:
                seen.add(key)
                unique.append(issue)
        return unique

    def _validate_resource(
        self,
        resource: dict,
        requested: list[str],
        resolver: Resolver | None,
        expression: str | None,
        issues: list[Issue],
        depth: int,
        conformance: dict | None = None,
    ) -> None:
        rtype = resource.get("resourceType")
        rtype = rtype if isinstance(rtype, str) and rtype else "Resource"
        prefix = expression or rtype
        claims = _profile_claims(resource)
        if rtype == "Bundle":
            resolver = _bundle_resolver(resource, resolver)
        conformance = {} if conformance is None else conformance
        ctx = _Ctx(root=resource, resolver=resolver, issues=issues, depth=depth, conformance=conformance)
        ctx.contained = _contained_by_id(resource)
        for url in dict.fromkeys([*claims, *requested]):
            severity = "error" if url in requested else self.unknown_claim_severity
            self._guarded(self._validate_against, prefix, ctx, resource, url, prefix, ctx, severity)
        has_extensions, holders = extension_holders(resource)
        if has_extensions:  # most resources carry none: skip the walk
            self._guarded(self._check_extensions, prefix, ctx, resource, rtype, rtype, rtype, prefix, ctx, holders)
        for i, contained in enumerate(_list(resource.get("contained"))):
            if isinstance(contained, dict):  # its own claims, and its extensions
                self._validate_resource(
                    contained, [], resolver, f"{prefix}.contained[{i}]", issues, depth + 1, conformance
                )
        if rtype == "Bundle":
            for i, entry in enumerate(_list(resource.get("entry"))):
                inner = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    self._validate_resource(
                        inner, [], resolver, f"{prefix}.entry[{i}].resource", issues, depth + 1, conformance
                    )

    @staticmethod
    def _guarded(step: Callable, prefix: str, ctx: _Ctx, *args: Any) -> None:
        """Run one validation step; an unexpected failure becomes an issue (and a log line), never a crash."""
        try:
            step(*args)
        except Exception as exc:  # defensive: malformed input the walk did not foresee
            log.exception("profile validation step failed at %s", prefix)
            _add(
                ctx,
                "error",
                "exception",
                prefix,
                "profile-engine-error",
                f"The profile check could not be completed ({type(exc).__name__}); the resource is malformed here",
                f"Profilkontrollen kunne ikke fullføres ({type(exc).__name__}); ressursen er feilformet her",
            )

    def _validate_against(self, resource: dict, url: str, prefix: str, ctx: _Ctx, unknown_severity: str) -> None:
        try:
            cp = self.compiled(url)
        except ProfileUnknown:
            _add(
                ctx,
                unknown_severity,
                "not-supported",
                prefix,
                "profile-unknown",
                f"Profile {url} is not known to this server",
                f"Profilen {url} er ukjent for denne serveren",
            )
            return
        except SnapshotError as exc:
            _add(
                ctx,
                "error",
                "not-supported",
                prefix,
                "profile-broken",
                f"Profile {url} cannot be used: {exc}",
                f"Profilen {url} kan ikke brukes: {exc}",
            )
            return
        rtype = resource.get("resourceType")
        if cp.type not in (rtype, "Resource", "DomainResource"):
            _add(
                ctx,
                "error",
                "invalid",
                prefix,
                "profile-type",
                f"Profile {url} is for {cp.type}, not {rtype}",
                f"Profilen {url} gjelder {cp.type}, ikke {rtype}",
            )
            return
        previous = ctx.profile_url
        ctx.profile_url = url
        before = len(ctx.issues)
        self._check_value(cp.root, resource, prefix, ctx, None)
        ctx.profile_url = previous
        ctx.conformance[(id(resource), url)] = not any(is_error(i) for i in ctx.issues[before:])

    # -- the walk -------------------------------------------------------------------------------

    def _check_value(
        self, node: Node, value: Any, expr: str, ctx: _Ctx, type_code: str | None, companion: Any = None
    ) -> None:
        """All checks of one occurrence ``value`` of element ``node`` (``companion``: a primitive's ``_x`` object)."""
        fixed_broken = node.fixed is not None and value is not None and not matches_fixed(value, node.fixed[1])
        if fixed_broken and not self._fixed_alias(node, value, ctx):
            _add(
                ctx,
                "error",
                "value",
                expr,
                "profile-fixed",
                f"Value must be exactly {_show(node.fixed[1])} (fixed by profile {ctx.profile_url}), "
                f"found {_show(value)}",
                f"Verdien må være nøyaktig {_show(node.fixed[1])} (låst av profilen), fant {_show(value)}",
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
        done: set[str] = set()
        for key in obj:
            child = node.by_key.get(key)
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

    # -- slicing --------------------------------------------------------------------------------

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
            return [v.get("resourceType") for v in self._values_at(value, segments, ctx) if isinstance(v, dict)]
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

    # -- bindings -------------------------------------------------------------------------------

    def _in_value_set(self, index: ValueSetIndex, value: Any, node: Node, type_code: str | None = None) -> bool:
        pairs = _codes_of(value, type_code or (node.types[0]["code"] if len(node.types) == 1 else None))
        return any(index.contains(system, code) for system, code in pairs or ())

    def _check_binding(self, node: Node, value: Any, type_code: str | None, expr: str, ctx: _Ctx) -> None:
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

    def _fixed_alias(self, node: Node, value: Any, ctx: _Ctx) -> bool:
        """A documented alias of a defective fixed value (profiles/suppressions.json)."""
        path = ".".join(seg.split(":", 1)[0] for seg in node.id.split("."))
        return isinstance(value, str) and value in self.registry.suppressions.fixed_aliases(ctx.profile_url, path)

    # -- references -----------------------------------------------------------------------------

    def _resolve(self, reference: str, ctx: _Ctx) -> tuple[str | None, dict | None]:
        if reference.startswith("#"):
            target = ctx.contained.get(reference[1:])
            return (target.get("resourceType") if target else None), target
        if ctx.resolver is not None:
            target = ctx.resolver(reference)
            if isinstance(target, dict):
                return target.get("resourceType"), target
        m = _REF_PATTERN.search(reference)
        return (m.group(1) if m else None), None

    def _reference_targets(self, node: Node) -> dict[str, list[str]]:
        """Target type -> its target profiles (empty: any profile) allowed by ``node``; computed once per node."""
        self._fresh()
        hit = self._targets.get(id(node))
        if hit is not None:
            return hit[1]
        allowed: dict[str, list[str]] = {}
        for t in node.types:
            if t["code"] != "Reference":
                continue
            for url in t.get("targetProfile", ()):
                if is_core_url(url) and r4().type(url.rsplit("/", 1)[-1]) is not None:
                    allowed.setdefault(url.rsplit("/", 1)[-1], [])
                else:
                    sd = self.registry.structure_definition(url)
                    if sd is not None:
                        allowed.setdefault(sd.get("type", ""), []).append(url)
        self._targets[id(node)] = (node, allowed)  # the node is kept so that its id is not reused
        return allowed

    def _check_reference(self, node: Node, value: dict, expr: str, ctx: _Ctx) -> None:
        allowed = self._reference_targets(node)
        if not allowed or "Resource" in allowed:
            return
        reference = value.get("reference")
        target_type, target = self._resolve(reference, ctx) if isinstance(reference, str) else (None, None)
        if target_type is None and isinstance(value.get("type"), str):
            target_type = value["type"]
        if target_type is None:
            return
        if target_type not in allowed:
            names = ", ".join(sorted(allowed))
            _add(
                ctx,
                "error",
                "processing",
                f"{expr}",
                "ref-target-type",
                f"A reference to {target_type} is not allowed here; allowed targets: {names}",
                f"Referanse til {target_type} er ikke tillatt her; tillatte mål: {names}",
            )
            return
        profiles = allowed[target_type]
        if target is None or not profiles or ctx.depth >= _MAX_DEPTH:
            return
        for url in profiles:
            key = (id(target), url)
            conforms = ctx.conformance.get(key)
            if conforms is None:
                try:
                    cp = self.compiled(url)
                except (ProfileUnknown, SnapshotError):
                    return
                contained = _contained_by_id(target)
                trial = _Ctx(
                    root=target,
                    resolver=ctx.resolver,
                    profile_url=url,
                    depth=ctx.depth + 1,
                    contained=contained,
                    conformance=ctx.conformance,
                )
                self._check_value(cp.root, target, target_type, trial, None)
                conforms = not any(is_error(i) for i in trial.issues)
                ctx.conformance[key] = conforms
            if conforms:
                return
        names = ", ".join(profiles)
        _add(
            ctx,
            "error",
            "processing",
            expr,
            "ref-target-profile",
            f"The referenced {target_type} ({reference}) does not conform to {names}",
            f"Den refererte {target_type} ({reference}) følger ikke {names}",
        )

    # -- extensions -----------------------------------------------------------------------------

    def _check_extensions(
        self, obj: dict, type_name: str, path: str, full: str, expr: str, ctx: _Ctx, holders: set[int] | None = None
    ) -> None:
        """Find every extension in ``obj`` (an element of ``type_name`` at ``path``) and check it.

        ``holders``: ids of the objects with an extension at or below them (``extension_scan.py``); the
        walk does not enter the others, where it would find nothing. None: the walk enters every object.
        """
        defs = r4()
        kids = defs.children(type_name, path) if defs.type(type_name) else {}
        for key, val in obj.items():
            if key in ("extension", "modifierExtension"):
                if isinstance(val, list):
                    for i, ext in enumerate(val):
                        if isinstance(ext, dict):
                            self._check_extension(ext, (path, full, type_name), f"{expr}.{key}[{i}]", ctx)
                continue
            if key.startswith("_"):
                name = key[1:]
                child = kids.get(name)
                host = (f"{path}.{name}", f"{full}.{name}", child.type_code if child else None)
                holders = val if isinstance(val, list) else [val]
                for i, holder in enumerate(holders):
                    if not isinstance(holder, dict):
                        continue
                    where = f"{expr}.{name}[{i}]" if isinstance(val, list) else f"{expr}.{name}"
                    for j, ext in enumerate(_list(holder.get("extension"))):
                        if isinstance(ext, dict):
                            self._check_extension(ext, host, f"{where}.extension[{j}]", ctx)
                continue
            child = kids.get(key)
            if child is None or key == "contained":
                continue
            items = val if isinstance(val, list) else [val]
            code = child.type_code
            for i, item in enumerate(items):
                if not isinstance(item, dict) or (holders is not None and id(item) not in holders):
                    continue
                where = f"{expr}.{key}[{i}]" if isinstance(val, list) else f"{expr}.{key}"
                if code == "Resource" or "resourceType" in item:
                    continue  # resources inside (Bundle entries, contained) are checked on their own
                if code in ("BackboneElement", "Element") or code is None:
                    sub = child.element.content_reference.lstrip("#") if child.element.content_reference else None
                    self._check_extensions(
                        item, type_name, sub or child.element.path, f"{full}.{key}", where, ctx, holders
                    )
                elif defs.type(code) is not None and not defs.is_primitive(code):
                    self._check_extensions(item, code, code, f"{full}.{key}", where, ctx, holders)

    def _check_extension(self, ext: dict, host: tuple[str, str, str | None], expr: str, ctx: _Ctx) -> None:
        url = ext.get("url")
        if not isinstance(url, str) or ":" not in url:
            return  # relative urls belong to a complex extension; a missing url is base validation's job
        sd = self._structure_definition(url)
        if sd is None:
            if expr.rsplit(".", 1)[-1].startswith("modifierExtension["):
                # an unknown modifier extension may change the meaning of the resource: it cannot be accepted
                _add(
                    ctx,
                    "error",
                    "extension",
                    expr,
                    "ext-unknown-modifier",
                    f"Modifier extension {url} is not known to this server, so the resource cannot be understood",
                    f"Modifikasjonsutvidelsen {url} er ukjent for serveren; ressursen kan ikke tolkes",
                )
                return
            _add(
                ctx,
                "warning",
                "extension",
                expr,
                "ext-unknown",
                f"Extension {url} is not known to this server; its content was not checked",
                f"Utvidelsen {url} er ukjent for serveren; innholdet er ikke kontrollert",
            )
            return
        if sd.get("type") != "Extension":
            _add(
                ctx,
                "error",
                "extension",
                expr,
                "ext-not-extension",
                f"{url} is a {sd.get('type')} profile, not an extension definition",
                f"{url} er ikke en utvidelsesdefinisjon",
            )
            return
        contexts = sd.get("context") or []
        if self.registry.suppressions.context_as_element(url):
            contexts = [dict(c, type="element") for c in contexts]
        if contexts and not any(_context_ok(c, host) for c in contexts):
            allowed = ", ".join(c.get("expression", "?") for c in contexts)
            _add(
                ctx,
                "error",
                "extension",
                expr,
                "ext-context",
                f"Extension {url} is not allowed on {host[1]} (allowed on: {allowed})",
                f"Utvidelsen {url} er ikke tillatt på {host[1]} (tillatt på: {allowed})",
            )
        try:
            cp = self.compiled(url)
        except (ProfileUnknown, SnapshotError):
            return
        previous = ctx.profile_url
        ctx.profile_url = url
        self._check_value(cp.root, ext, expr, ctx, "Extension")
        ctx.profile_url = previous
        for j, inner in enumerate(_list(ext.get("extension"))):
            if isinstance(inner, dict) and ":" in str(inner.get("url", "")):
                self._check_extension(inner, ("Extension", "Extension", "Extension"), f"{expr}.extension[{j}]", ctx)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _profile_claims(resource: dict) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in _list(profiles) if isinstance(p, str)]


def _contained_by_id(resource: dict) -> dict[str, dict]:
    return {
        c["id"]: c for c in _list(resource.get("contained")) if isinstance(c, dict) and isinstance(c.get("id"), str)
    }


def _add(ctx: _Ctx, severity: str, code: str, expr: str, rule: str, en: str, nb: str) -> None:
    ctx.issues.append(Issue(severity, code, en, expr, nb, rule))


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


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


def _context_ok(context: dict, host: tuple[str, str, str | None]) -> bool:
    kind = context.get("type")
    expression = context.get("expression", "")
    path, full, type_code = host
    if kind == "element":
        if expression in ("Element", "Base", "BackboneElement") or expression in (path, full, type_code):
            return True
        return bool(expression in ("Resource", "DomainResource") and r4().is_resource_type(type_code or ""))
    if kind == "extension":
        return type_code == "Extension"
    return True  # fhirpath contexts are not evaluated


def _bundle_resolver(bundle: dict, outer: Resolver | None) -> Resolver:
    by_url: dict[str, dict] = {}
    for entry in _list(bundle.get("entry")):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        res = entry["resource"]
        if isinstance(entry.get("fullUrl"), str):
            by_url[entry["fullUrl"]] = res
        if res.get("resourceType") and res.get("id"):
            by_url.setdefault(f"{res['resourceType']}/{res['id']}", res)

    def resolve(reference: str) -> dict | None:
        hit = by_url.get(reference)
        if hit is None:
            m = _REF_PATTERN.search(reference)
            if m:
                hit = by_url.get(reference[m.start() :].lstrip("/").split("/_history/")[0])
        if hit is None and outer is not None:
            hit = outer(reference)
        return hit

    return resolve


# ------------------------------------------------------------------------------------------------
# the verdict API behind $validate
# ------------------------------------------------------------------------------------------------

_DEFAULT: dict[str, ProfileValidator] = {}


def configure(registry: ConformanceRegistry) -> ProfileValidator:
    """Use ``registry`` for :func:`validate_against_profiles` from now on."""
    _DEFAULT["validator"] = ProfileValidator(registry)
    return _DEFAULT["validator"]


def default_validator() -> ProfileValidator:
    """The process-wide validator (the project's profiles only, unless :func:`configure` was called)."""
    if "validator" not in _DEFAULT:
        configure(default_registry())
    return _DEFAULT["validator"]


def validate_against_profiles(
    resource: dict,
    profile_urls: Iterable[str] | None = None,
    *,
    mode: str = "create",
    resolver: Resolver | None = None,
    validator: ProfileValidator | None = None,
) -> list[Issue]:
    """Profile issues for ``$validate``: ``meta.profile`` claims plus ``profile_urls``.

    ``mode`` is the $validate mode: ``create`` and ``update`` check the content; ``delete`` has
    nothing to check against profiles. An unknown profile URL is an error.
    """
    if mode not in ("create", "update", "delete"):
        return [
            Issue(
                "error",
                "invalid",
                f"Unknown validation mode {mode!r}",
                None,
                f"Ukjent valideringsmodus {mode!r}",
                "validate-mode",
            )
        ]
    if mode == "delete":
        return []
    engine = validator or default_validator()
    return engine.validate(resource, list(profile_urls or ()), resolver=resolver)
