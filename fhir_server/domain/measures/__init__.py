"""Waiting-time and pathway measures: the fact table kept on the write path, the Measure catalog
(``measures/`` data folder), and evaluation to a MeasureReport with SQL aggregates."""

from fhir_server.domain.measures.catalog import MeasureCatalog, MeasureDef, MeasureError
from fhir_server.domain.measures.evaluate import Request, evaluate, region_rows
from fhir_server.domain.measures.facts import ensure_fact_table, facts_follow_writes, fill_missing_facts

__all__ = [
    "MeasureCatalog",
    "MeasureDef",
    "MeasureError",
    "Request",
    "ensure_fact_table",
    "evaluate",
    "facts_follow_writes",
    "fill_missing_facts",
    "region_rows",
]
