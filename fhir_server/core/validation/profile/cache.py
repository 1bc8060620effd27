"""What the validator keeps between calls: compiled profiles, value-set indexes, structure definitions
and per-node memos, all dropped when the registry changes (:meth:`ProfileCache._fresh`).
"""

from __future__ import annotations

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.conformance.packages import ConformanceRegistry

from .model import CompiledProfile, Node, ValueSetIndex, build_value_set_index, compile_snapshot, upper_first
from .snapshot import SnapshotError, ensure_snapshot


class ProfileUnknown(LookupError):
    pass


class ProfileCache:
    """The caches of a :class:`~.validator.ProfileValidator` over one :class:`ConformanceRegistry`."""

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
