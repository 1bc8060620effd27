"""Whose figures a measure report shows, and to whom: one rule for every door that evaluates Measures
(the ``$evaluate-measure`` operation and the web app's measures page).

* unrestricted access (the server's own work, an administrator): every region, nothing masked;
* the statistics view (a client with the statistics scope; a person in the web app): every region side
  by side, strata of fewer than the minimum number of patients masked;
* anyone else: only the rows of its own region (its ``region:`` access labels), small strata masked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhir_server.core.storage.access import Access
from fhir_server.domain.measures.catalog import MeasureDef
from fhir_server.domain.measures.evaluate import region_rows


@dataclass(frozen=True)
class Audience:
    """The rows a report covers (RHF orgnr; None: every region) and the smallest stratum shown (0: all)."""

    regions: frozenset[str] | None
    min_patients: int


def audience(current: Access | None, *, statistics: bool, min_patients: int) -> Audience:
    """What a caller with ``current`` access sees; ``statistics``: the caller has the statistics view."""
    if current is None or current.unrestricted:
        return Audience(None, 0)
    if statistics:
        return Audience(None, min_patients)
    return Audience(region_rows(current.labels), min_patients)


def stratified_by(measure: MeasureDef, *names: str) -> MeasureDef:
    """``measure`` with only the stratifiers ``names`` (in the Measure's order): a report that needs fewer
    strata (e.g. per region only) groups by fewer columns."""
    group = measure.resource["group"][0]
    kept = [(n, s) for n, s in zip(measure.stratifiers, group.get("stratifier") or [], strict=True) if n in names]
    resource = {**measure.resource, "group": [{**group, "stratifier": [s for _, s in kept]}]}
    return replace(measure, stratifiers=tuple(n for n, _ in kept), resource=resource)
