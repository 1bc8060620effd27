"""Search parameters by resource type, from SearchParameter resources (R4 core plus our own).

Each parameter's FHIRPath expression is compiled once: simple path forms by
:mod:`fhirpath_paths`, anything else by fhirpathpy (with the R4 model, so choice types work).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.indexing.combos import COMPONENT_TYPES, Combo, is_combo
from fhir_server.core.indexing.fhirpath_paths import Value, compile_paths
from fhir_server.core.jsonio import to_plain
from fhir_server.core.resource_types import STORABLE_TYPES

log = logging.getLogger(__name__)

SUPPORTED_TYPES = frozenset({"token", "string", "reference", "date", "uri", "number", "quantity"})

#: Result parameters: they shape the result rather than filter it.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_format",
        "_pretty",
        "_contained",
        "_containedType",
        "_getpages",
        "_getpagesoffset",
        "_bundletype",
        "_totalMethod",
    }
)


@dataclass
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    type: str
    url: str
    expression: str
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    extract: Callable[[dict], list[Value]] = field(repr=False, default=lambda r: [])
    resource: dict = field(repr=False, default_factory=dict)


def _fhirpathpy_extractor(expression: str, resource_type: str) -> Callable[[dict], list[Value]]:
    import fhirpathpy
    from fhirpathpy.models import models

    compiled = fhirpathpy.compile(expression, model=models["r4"])

    def evaluate(resource: dict) -> list[Value]:
        try:
            result = compiled(to_plain(resource))  # type: ignore[call-arg]
        except Exception:
            log.warning("search expression failed: %s", expression)
            return []
        return [(v if not isinstance(v, float) else Decimal(str(v)), None) for v in result if v is not None]

    # the top-level elements the expression reads (``Patient.deceased...`` reads ``deceased``)
    roots = re.findall(rf"\b(?:{resource_type}|Resource|DomainResource)\.([A-Za-z]+)", expression)
    starts = re.findall(r"(?:^|[|(]\s*)([A-Za-z]+)\.", expression)
    evaluate.roots = (  # type: ignore[attr-defined]
        frozenset(roots)
        if roots
        and set(starts)
        <= {
            resource_type,
            "Resource",
            "DomainResource",
        }
        | set(STORABLE_TYPES)
        else None
    )
    return evaluate


class SearchRegistry:
    """All search parameters the server supports, by resource type and code."""

    def __init__(self, definitions: Iterable[dict] | None = None) -> None:
        self.by_type: dict[str, dict[str, SearchParam]] = {}
        #: Combo indexes by resource type (:mod:`~fhir_server.core.indexing.combos`).
        self.combos_by_type: dict[str, list[Combo]] = {}
        resources = list(definitions) if definitions is not None else r4().search_parameter_resources
        for sp in resources:
            self.add(sp)

    def add(self, sp: dict) -> None:
        """Register a SearchParameter resource for each of its base types (a combo index: after its components)."""
        if is_combo(sp):
            self._add_combo(sp)
            return
        if sp.get("type") not in SUPPORTED_TYPES or not sp.get("expression"):
            return
        bases = sp.get("base", [])
        types = STORABLE_TYPES if set(bases) & {"Resource", "DomainResource"} else set(bases) & STORABLE_TYPES
        for resource_type in types:
            extract = compile_paths(sp["expression"], resource_type) or _fhirpathpy_extractor(
                sp["expression"], resource_type
            )
            self.by_type.setdefault(resource_type, {})[sp["code"]] = SearchParam(
                code=sp["code"],
                type=sp["type"],
                url=sp["url"],
                expression=sp["expression"],
                targets=tuple(sp.get("target", ())),
                modifiers=tuple(sp.get("modifier", ())),
                extract=extract,
                resource=sp,
            )

    def _add_combo(self, sp: dict) -> None:
        """Register a combo index for each base type whose parameters it names (by their canonical URLs)."""
        for resource_type in set(sp.get("base", [])) & STORABLE_TYPES:
            by_url = {p.url: p for p in self.params(resource_type).values()}
            parts = [by_url.get(c.get("definition", "")) for c in sp.get("component", [])]
            if len(parts) < 2 or any(p is None or p.type not in COMPONENT_TYPES for p in parts):
                log.warning(
                    "combo search parameter %s: its components must be token or reference parameters "
                    "of %s registered before it; left out",
                    sp.get("url"),
                    resource_type,
                )
                continue
            combo = Combo(sp["code"], resource_type, tuple(p.code for p in parts), tuple(p.type for p in parts))  # type: ignore[union-attr]
            self.combos_by_type.setdefault(resource_type, []).append(combo)

    def combos(self, resource_type: str) -> list[Combo]:
        """The combo indexes of ``resource_type``."""
        return self.combos_by_type.get(resource_type, [])

    def params(self, resource_type: str) -> dict[str, SearchParam]:
        return self.by_type.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.by_type.get(resource_type, {}).get(code)
