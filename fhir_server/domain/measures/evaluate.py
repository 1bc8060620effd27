"""``$evaluate-measure`` over the fact table: SQL aggregates per stratum, a FHIR R4 MeasureReport.

The evaluator never loads resources: one ``GROUP BY`` per stratifier (and one for the whole group)
over :data:`~.facts.referral_facts` gives the population counts, the distinct patients (for
small-number protection) and, for continuous-variable measures, a histogram of the observed days
from which the median or mean is taken (the same SQL on SQLite and PostgreSQL).

Who sees what is decided by the caller of :func:`evaluate` (the operation): ``regions`` limits the rows
to referrals owned by those regions (None: every region), ``min_patients`` suppresses strata of fewer
patients (0: none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, bindparam, text

from fhir_server.core.storage import access
from fhir_server.domain.measures.catalog import POPULATION_SYSTEM, MeasureDef
from fhir_server.domain.measures.definitions import OBSERVATIONS, POPULATIONS, STRATIFIERS

DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
REPORT_TYPES = {"population": "summary", "subject-list": "subject-list", "subject": "individual"}
_UNKNOWN = "unknown"


@dataclass(frozen=True)
class Request:
    """What to evaluate: the period (inclusive dates), the report type, and whose rows count."""

    start: date
    end: date
    asof: date
    report_type: str = "population"
    #: a Patient id: only that patient's referrals
    subject: str | None = None
    #: region (RHF orgnr) rows the caller may see; None: all
    regions: frozenset[str] | None = None
    #: strata with fewer distinct patients than this are suppressed (0: none)
    min_patients: int = 0


@dataclass
class _Cell:
    counts: dict[str, int]
    patients: int
    histogram: dict[int, int]


def _where(measure: MeasureDef, request: Request) -> tuple[str, dict]:
    clauses = [f"({POPULATIONS[measure.populations['initial-population']]})"]
    params: dict = {
        "start": request.start.toordinal(),
        "end": request.end.toordinal(),
        "asof": request.asof.toordinal(),
    }
    if request.regions is not None:
        clauses.append("region IN :regions")
        params["regions"] = sorted(request.regions)
    if request.subject is not None:
        clauses.append("patient_id = :subject")
        params["subject"] = request.subject
    return " AND ".join(clauses), params


def _flags(measure: MeasureDef) -> dict[str, str]:
    """Population code → SQL condition, for the populations after the initial population."""
    if measure.scoring == "proportion":
        denominator = POPULATIONS[measure.populations["denominator"]]
        numerator = POPULATIONS[measure.populations["numerator"]]
        return {"denominator": f"({denominator})", "numerator": f"({denominator}) AND ({numerator})"}
    return {"measure-population": f"({POPULATIONS[measure.populations['measure-population']]})"}


def _run(conn: Connection, sql: str, params: dict) -> list:
    statement = text(sql)
    if "regions" in params:
        statement = statement.bindparams(bindparam("regions", expanding=True))
    return list(conn.execute(statement, params))


def _cells(conn: Connection, measure: MeasureDef, request: Request, column: str | None) -> dict[str | None, _Cell]:
    """Counts per value of ``column`` (one cell, key None, when no column)."""
    where, params = _where(measure, request)
    flags = _flags(measure)
    key = f"{column}" if column else "NULL"
    sums = ", ".join(f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)" for cond in flags.values())
    sql = f"SELECT {key} AS k, COUNT(*), COUNT(DISTINCT patient_id), {sums} FROM referral_facts WHERE {where}"
    sql += " GROUP BY 1" if column else ""
    cells: dict[str | None, _Cell] = {}
    for row in _run(conn, sql, params):
        if not row[1]:
            continue
        counts = {"initial-population": int(row[1])}
        counts.update({code: int(row[3 + i] or 0) for i, code in enumerate(flags)})
        cells[row[0]] = _Cell(counts, int(row[2]), {})
    if measure.scoring == "continuous-variable" and cells:
        value = OBSERVATIONS[measure.populations["measure-observation"]]
        group = "GROUP BY 1, 2" if column else "GROUP BY 2"
        sql = (
            f"SELECT {key} AS k, {value} AS v, COUNT(*) FROM referral_facts "
            f"WHERE {where} AND {flags['measure-population']} AND {value} IS NOT NULL {group}"
        )
        for k, v, n in _run(conn, sql, params):
            if k in cells:
                cells[k].histogram[int(v)] = int(n)
    return cells


def _median(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]  # the middle one or two positions (0-based)
    found: list[int] = []
    seen = 0
    for value in sorted(histogram):
        count = histogram[value]
        found += [value for position in wanted if seen <= position < seen + count]
        seen += count
    return sum(found) / len(found)


def _score(measure: MeasureDef, cell: _Cell) -> dict | None:
    if measure.scoring == "proportion":
        denominator = cell.counts["denominator"]
        return {"value": round(cell.counts["numerator"] / denominator, 4)} if denominator else None
    total = sum(cell.histogram.values())
    if not total:
        return None
    if measure.aggregate == "median":
        value = _median(cell.histogram)
    else:
        value = round(sum(v * n for v, n in cell.histogram.items()) / total, 2)
    return {"value": value, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}


def _population(code: str, count: int | None) -> dict:
    entry: dict = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}}
    if count is not None:
        entry["count"] = count
    return entry


def _populations(measure: MeasureDef, cell: _Cell | None) -> list[dict]:
    codes = ["initial-population", *_flags(measure)]
    if measure.scoring == "continuous-variable":
        codes.append("measure-observation")
    out = []
    for code in codes:
        if code == "measure-observation":
            out.append(_population(code, sum(cell.histogram.values()) if cell else 0))
        else:
            out.append(_population(code, cell.counts[code] if cell else 0))
    return out


def _stratum_value(name: str, value: str | None) -> dict:
    system = STRATIFIERS[name].system
    if value is None:
        return {"text": _UNKNOWN}
    return {"coding": [{"system": system, "code": value}], "text": value} if system else {"text": value}


def _stratum(measure: MeasureDef, name: str, value: str | None, cell: _Cell, min_patients: int) -> dict:
    stratum: dict = {"value": _stratum_value(name, value)}
    if cell.patients < min_patients:  # small-number protection: neither counts nor score
        stratum["population"] = [{"code": p["code"]} for p in _populations(measure, cell)]
        stratum["measureScore"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
        return stratum
    stratum["population"] = _populations(measure, cell)
    score = _score(measure, cell)
    if score is not None:
        stratum["measureScore"] = score
    return stratum


def _subject_lists(conn: Connection, measure: MeasureDef, request: Request) -> tuple[list[dict], dict[str, str]]:
    """Contained Lists of the referrals in each population (subject-list and individual reports)."""
    where, params = _where(measure, request)
    flags = _flags(measure)
    cases = ", ".join(f"CASE WHEN {cond} THEN 1 ELSE 0 END" for cond in flags.values())
    rows = _run(conn, f"SELECT referral_id, {cases} FROM referral_facts WHERE {where} ORDER BY referral_id", params)
    members = {"initial-population": [r[0] for r in rows]}
    for i, code in enumerate(flags):
        members[code] = [r[0] for r in rows if r[1 + i]]
    lists, refs = [], {}
    for code, ids in members.items():
        lists.append(
            {
                "resourceType": "List",
                "id": code,
                "status": "current",
                "mode": "snapshot",
                "title": code,
                "entry": [{"item": {"reference": f"ServiceRequest/{rid}"}} for rid in ids],
            }
        )
        refs[code] = f"#{code}"
    return lists, refs


def evaluate(conn: Connection, measure: MeasureDef, request: Request) -> dict:
    """A MeasureReport of ``measure`` for ``request``, read from the fact table on ``conn``."""
    overall = _cells(conn, measure, request, None).get(None)
    group: dict = {"population": _populations(measure, overall)}
    score = _score(measure, overall) if overall else None
    if score is not None:
        group["measureScore"] = score
    stratifiers = []
    for stratifier, name in zip(measure.resource["group"][0].get("stratifier") or [], measure.stratifiers, strict=True):
        cells = _cells(conn, measure, request, STRATIFIERS[name].column)
        ordered = sorted(cells.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
        stratifiers.append(
            {
                "code": [stratifier.get("code") or {"text": name}],
                "stratum": [_stratum(measure, name, value, cell, request.min_patients) for value, cell in ordered],
            }
        )
    if stratifiers:
        group["stratifier"] = stratifiers
    report: dict = {"resourceType": "MeasureReport"}
    if request.report_type != "population":
        lists, refs = _subject_lists(conn, measure, request)
        report["contained"] = lists
        for population in group["population"]:
            code = population["code"]["coding"][0]["code"]
            if code in refs:
                population["subjectResults"] = {"reference": refs[code]}
    report.update(
        {
            "status": "complete",
            "type": REPORT_TYPES[request.report_type],
            "measure": measure.url,
            "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "period": {"start": request.start.isoformat(), "end": request.end.isoformat()},
        }
    )
    if request.subject is not None:
        report["subject"] = {"reference": f"Patient/{request.subject}"}
    if measure.improvement:
        report["improvementNotation"] = measure.improvement
    report["group"] = [group]
    return report


def region_rows(labels: Iterable[str]) -> frozenset[str]:
    """The regions (RHF orgnr) of a caller's access labels (``region:<orgnr>``)."""
    prefix = access.region_label("")
    return frozenset(label.removeprefix(prefix) for label in labels if label.startswith(prefix))
