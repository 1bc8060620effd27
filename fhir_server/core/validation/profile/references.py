"""References: the target's type from the reference string, and the target itself (contained, Bundle
entry or resolver callback) checked against the ``targetProfile`` values, each once per call.
"""

from __future__ import annotations

import re

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.conformance.packages import is_core_url
from fhir_server.core.issues import is_error

from .cache import ProfileUnknown
from .context import _MAX_DEPTH, _add, _contained_by_id, _Ctx
from .model import Node
from .sections import Sections
from .snapshot import SnapshotError

_REF_PATTERN = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


class ReferenceChecks(Sections):
    """Reference targets and target profiles.

    A part of :class:`~.validator.ProfileValidator`, which mixes the parts together: the methods of
    the other parts are reached through ``self``.
    """

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
