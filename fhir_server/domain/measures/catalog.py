"""The measure catalog: the FHIR ``Measure`` resources of the ``measures/`` data folder.

Loading checks what the evaluator relies on: the scoring (proportion or continuous-variable), the
populations each scoring needs, and that every criteria expression names a definition of
:mod:`.definitions` in its language. A file that fails is refused with the reason (no silent skips).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.data import data_folder
from fhir_server.domain.measures.definitions import LANGUAGE, OBSERVATIONS, POPULATIONS, STRATIFIERS

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
#: The CQF Measures extension naming how observations are aggregated (median, average).
EXT_AGGREGATE_METHOD = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-aggregateMethod"
_NEEDED = {
    "proportion": ("initial-population", "denominator", "numerator"),
    "continuous-variable": ("initial-population", "measure-population", "measure-observation"),
}
AGGREGATES = ("median", "average")


class MeasureError(ValueError):
    """A Measure file the evaluator cannot evaluate."""


@dataclass(frozen=True)
class MeasureDef:
    """What the evaluator needs of one Measure."""

    id: str
    url: str
    scoring: str
    #: population code → definition name (observation name for ``measure-observation``)
    populations: dict[str, str]
    #: stratifier definition names, in the Measure's order
    stratifiers: tuple[str, ...]
    aggregate: str | None
    improvement: dict | None
    resource: dict


def _code(concept: dict | None) -> str | None:
    codings = (concept or {}).get("coding") or [{}]
    return codings[0].get("code")


def _expression(element: dict, where: str) -> str:
    criteria = element.get("criteria") or {}
    if criteria.get("language") != LANGUAGE or not isinstance(criteria.get("expression"), str):
        raise MeasureError(f"{where}.criteria: language must be {LANGUAGE} with an expression")
    return criteria["expression"]


def measure_def(resource: dict) -> MeasureDef:
    """Read one Measure; raises :class:`MeasureError` naming the element that is wrong."""
    rid = resource.get("id") or "?"
    scoring = _code(resource.get("scoring"))
    if scoring not in _NEEDED:
        raise MeasureError(f"Measure/{rid}.scoring: {scoring!r} is not proportion or continuous-variable")
    groups = resource.get("group") or []
    if len(groups) != 1:
        raise MeasureError(f"Measure/{rid}.group: exactly one group is evaluated")
    group = groups[0]
    populations: dict[str, str] = {}
    for i, population in enumerate(group.get("population") or []):
        where = f"Measure/{rid}.group[0].population[{i}]"
        code, name = _code(population.get("code")), _expression(population, where)
        known = OBSERVATIONS if code == "measure-observation" else POPULATIONS
        if name not in known:
            raise MeasureError(f"{where}.criteria.expression: unknown definition {name!r}")
        populations[str(code)] = name
    missing = [c for c in _NEEDED[scoring] if c not in populations]
    if missing:
        raise MeasureError(f"Measure/{rid}.group[0].population: {scoring} needs {', '.join(missing)}")
    stratifiers = []
    for i, stratifier in enumerate(group.get("stratifier") or []):
        name = _expression(stratifier, f"Measure/{rid}.group[0].stratifier[{i}]")
        if name not in STRATIFIERS:
            raise MeasureError(f"Measure/{rid}.group[0].stratifier[{i}].criteria.expression: unknown {name!r}")
        stratifiers.append(name)
    aggregate = next(
        (e.get("valueCode") for e in resource.get("extension") or [] if e.get("url") == EXT_AGGREGATE_METHOD), None
    )
    if scoring == "continuous-variable" and aggregate not in AGGREGATES:
        raise MeasureError(f"Measure/{rid}.extension: a continuous-variable measure names median or average")
    return MeasureDef(
        rid,
        resource["url"],
        scoring,
        populations,
        tuple(stratifiers),
        aggregate,
        resource.get("improvementNotation"),
        resource,
    )


@dataclass(frozen=True)
class MeasureCatalog:
    """The Measures this server evaluates, by id."""

    by_id: dict[str, MeasureDef]

    @classmethod
    def load(cls, folder: Path | None = None) -> MeasureCatalog:
        folder = folder or data_folder("measures")
        found: dict[str, MeasureDef] = {}
        for path in sorted(folder.glob("Measure-*.json")):
            resource = jsonio.loads(path.read_bytes())
            try:
                definition = measure_def(resource)
            except (MeasureError, KeyError) as exc:
                raise MeasureError(f"{path.name}: {exc}") from exc
            found[definition.id] = definition
        return cls(found)
