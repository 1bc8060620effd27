"""``$evaluate-measure`` over the fact table: SQL aggregates per stratum, a FHIR R4 MeasureReport.

The evaluator never loads resources: one ``GROUP BY`` over every stratifier column of
:data:`~.facts.referral_facts` gives the population counts and, for continuous-variable measures, the
sum or (for a median) the list of the observed days, rolled up here to each stratum; distinct patients
(for small-number protection) are counted only where needed (the same SQL on SQLite and PostgreSQL,
but for the name of the string aggregate).

Who sees what is decided by the caller of :func:`evaluate` (the operation): ``regions`` limits the rows
to referrals owned by those regions (None: every region), ``min_patients`` suppresses strata of fewer
patients (0: none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Connection, TextClause, bindparam, text

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
    """The counts of one stratum (or of the whole group)."""

    counts: dict[str, int] = field(default_factory=dict)
    #: distinct patients in the initial population (counted only where strata may be masked)
    patients: int | None = None
    #: the most referrals one patient of this stratum has (a patient count is at least referrals / this)
    most: int = 1
    obs_count: int = 0
    obs_sum: int = 0
    #: observed value → how often (median measures only)
    histogram: Counter[int] = field(default_factory=Counter)

    def add(self, counts: dict[str, int], obs_count: int, obs_sum: int, most: int, observed: list[int]) -> None:
        self.most = max(self.most, most)
        for code, n in counts.items():
            self.counts[code] = self.counts.get(code, 0) + n
        self.obs_count += obs_count
        self.obs_sum += obs_sum
        self.histogram.update(observed)


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
    """Population code → SQL condition, for the populations after the initial population (one defined
    as the initial population holds for every row the ``WHERE`` keeps: not tested again on each)."""
    initial = measure.populations["initial-population"]

    def condition(code: str) -> str:
        name = measure.populations[code]
        return "1 = 1" if name == initial else f"({POPULATIONS[name]})"

    if measure.scoring == "proportion":
        denominator = condition("denominator")
        return {"denominator": denominator, "numerator": f"{denominator} AND {condition('numerator')}"}
    return {"measure-population": condition("measure-population")}


def _statement(sql: str, params: dict) -> TextClause:
    """``sql`` with its list parameters expanded. (PostgreSQL plans every execution with its own day numbers:
    ``core/storage/postgres.py``, so a prepared statement's generic plan never serves another period.)"""
    statement = text(sql)
    for name in ("regions", "values"):
        if name in params:
            statement = statement.bindparams(bindparam(name, expanding=True))
    return statement


def _run(conn: Connection, sql: str, params: dict) -> list:
    return list(conn.execute(_statement(sql, params), params))


def _tally(
    conn: Connection, measure: MeasureDef, request: Request
) -> tuple[_Cell | None, list[dict[str | None, _Cell]]]:
    """The whole group's counts, and each stratifier's counts by value.

    One ``GROUP BY`` over every stratifier column gives all the counts (each stratifier and the whole
    group are sums of its rows) and, for a median measure, every observed value: each stratum
    combination's values come as one list (a string aggregate) and are counted here into the histogram
    of each of its strata. One scan on both databases, where a histogram per stratum in SQL would take
    GROUPING SETS (SQLite has none) or a second scan. Distinct patients (small-number protection) are
    counted only where they could hide a stratum.
    """
    where, params = _where(measure, request)
    flags = _flags(measure)
    columns = [STRATIFIERS[name].column for name in measure.stratifiers]
    aggregates = {"initial-population": "COUNT(*)"}
    aggregates.update({code: f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)" for code, cond in flags.items()})
    if measure.scoring == "continuous-variable":
        value = OBSERVATIONS[measure.populations["measure-observation"]]
        observed = f"{flags['measure-population']} AND {value} IS NOT NULL"
        aggregates["obs_count"] = f"SUM(CASE WHEN {observed} THEN 1 ELSE 0 END)"
        aggregates["obs_sum"] = f"SUM(CASE WHEN {observed} THEN {value} ELSE 0 END)"
        if measure.aggregate == "median":
            join = "string_agg" if conn.dialect.name == "postgresql" else "group_concat"
            aggregates["observed"] = f"{join}(CASE WHEN {observed} THEN CAST({value} AS TEXT) END, ',')"
    aggregates["most"] = "MAX(patient_referrals)"
    keys = columns or ["NULL"]
    group_by = ", ".join(str(i + 1) for i in range(len(keys)))
    sql = (
        f"SELECT {', '.join(keys)}, {', '.join(aggregates.values())} FROM referral_facts WHERE {where} "
        f"GROUP BY {group_by}"
    )
    overall: _Cell | None = None
    strata: list[dict[str | None, _Cell]] = [{} for _ in columns]
    for row in _run(conn, sql, params):
        got = dict(zip(aggregates, row[len(keys) :], strict=True))
        counts = {code: int(got[code] or 0) for code in ("initial-population", *flags)}
        obs_count, obs_sum = int(got.get("obs_count") or 0), int(got.get("obs_sum") or 0)
        most = int(got["most"] or 1)
        values = list(map(int, got["observed"].split(","))) if got.get("observed") else []
        overall = overall or _Cell()
        overall.add(counts, obs_count, obs_sum, most, values)
        for i in range(len(columns)):
            strata[i].setdefault(row[i], _Cell()).add(counts, obs_count, obs_sum, most, values)
    if overall is None:
        return None, strata
    if request.min_patients:
        _count_patients(conn, request, where, params, columns, strata)
    return overall, strata


def _count_patients(
    conn: Connection,
    request: Request,
    where: str,
    params: dict,
    columns: list[str],
    strata: list[dict[str | None, _Cell]],
) -> None:
    """Distinct patients of the strata that small-number protection could hide.

    A stratum with at least ``min_patients`` times the most referrals any one of its patients has
    (``patient_referrals``, kept on the write) has that many patients for certain; only smaller ones are
    counted exactly.
    """
    least = request.min_patients
    for column, cells in zip(columns, strata, strict=True):
        unsure = [k for k, c in cells.items() if least <= c.counts["initial-population"] < least * c.most]
        if not unsure:
            continue
        known = [k for k in unsure if k is not None]
        matches = " OR ".join(
            ([f"{column} IN :values"] if known else []) + ([f"{column} IS NULL"] if None in unsure else [])
        )
        sql = (
            f"SELECT {column}, COUNT(DISTINCT patient_id) FROM referral_facts WHERE {where} AND ({matches}) GROUP BY 1"
        )
        for k, n in _run(conn, sql, {**params, "values": known} if known else params):
            cells[k].patients = int(n)


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
    if not cell.obs_count:
        return None
    value = _median(cell.histogram) if measure.aggregate == "median" else round(cell.obs_sum / cell.obs_count, 2)
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
            out.append(_population(code, cell.obs_count if cell else 0))
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
    patients = cell.patients if cell.patients is not None else cell.counts["initial-population"]
    if patients < min_patients:  # small-number protection: neither counts nor score
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
    overall, strata = _tally(conn, measure, request)
    group: dict = {"population": _populations(measure, overall)}
    score = _score(measure, overall) if overall else None
    if score is not None:
        group["measureScore"] = score
    stratifiers = []
    described = measure.resource["group"][0].get("stratifier") or []
    for stratifier, name, cells in zip(described, measure.stratifiers, strata, strict=True):
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
