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
The walk skips elements that can report nothing (``plan.py``), finds slices discriminated by
one fixed string with a lookup (``_slice_table``), enters only the objects that hold extensions
(``extension_scan.py``) and remembers per node what does not depend on the instance (reference
targets, discriminator paths); each shortcut gives the issues of the full walk.

This module holds the entry point; the checks are parts of :class:`ProfileValidator` in their own
modules: ``elements.py`` (cardinality, fixed, pattern, invariants), ``slicing.py``, ``bindings.py``,
``references.py``, ``extensions.py``, over the caches of ``cache.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fhir_server.core.conformance.packages import ConformanceRegistry, default_registry
from fhir_server.core.issues import Issue, is_error

from .bindings import BindingChecks
from .cache import ProfileUnknown
from .context import Resolver, _add, _contained_by_id, _Ctx, _list
from .elements import ElementChecks
from .extension_scan import extension_holders
from .extensions import ExtensionChecks
from .references import _REF_PATTERN, ReferenceChecks
from .slicing import SliceChecks
from .snapshot import SnapshotError

log = logging.getLogger(__name__)


class ProfileValidator(ElementChecks, SliceChecks, BindingChecks, ReferenceChecks, ExtensionChecks):
    """Validates resources against profiles held in a :class:`ConformanceRegistry`."""

    # -- entry point ----------------------------------------------------------------------------

    def validate(
        self,
        resource: dict,
        profile_urls: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
        expression: str | None = None,
        verdicts: dict | None = None,
    ) -> list[Issue]:
        """Issues of ``resource`` against its ``meta.profile`` claims plus ``profile_urls``.

        For a Bundle, each entry's resource is checked against its own claims, and references
        between entries resolve through the Bundle's ``fullUrl`` values. ``verdicts``, when given, is
        filled with ``(id(resource), profile url) -> conforms`` for every resource checked.
        """
        issues: list[Issue] = []
        self._validate_resource(resource, list(profile_urls), resolver, expression, issues, 0, verdicts)
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


def _profile_claims(resource: dict) -> list[str]:
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in _list(profiles) if isinstance(p, str)]


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
