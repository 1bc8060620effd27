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
from dataclasses import dataclass, field
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
    """The counts of one stratum (or of the whole group)."""

    counts: dict[str, int] = field(default_factory=dict)
    #: distinct patients in the initial population (counted only where strata may be masked)
    patients: int | None = None
    #: the most referrals one patient of this stratum has (a patient count is at least referrals / this)
    most: int = 1
    obs_count: int = 0
    obs_sum: int = 0
    #: observed value → how often (median measures only)
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int], obs_count: int, obs_sum: int, most: int) -> None:
        self.most = max(self.most, most)
        for code, n in counts.items():
            self.counts[code] = self.counts.get(code, 0) + n
        self.obs_count += obs_count
        self.obs_sum += obs_sum


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


def _tally(
    conn: Connection, measure: MeasureDef, request: Request
) -> tuple[_Cell | None, list[dict[str | None, _Cell]]]:
    """The whole group's counts, and each stratifier's counts by value.

    One ``GROUP BY`` over every stratifier column gives all the counts (each stratifier and the whole
    group are sums of its rows); a median measure's histograms one more (by combination and value);
    distinct patients (small-number protection) are counted only where they could hide a stratum.
    """
    where, params = _where(measure, request)
    flags = _flags(measure)
    columns = [STRATIFIERS[name].column for name in measure.stratifiers]
    sums = [f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)" for cond in flags.values()]
    observed = None
    if measure.scoring == "continuous-variable":
        value = OBSERVATIONS[measure.populations["measure-observation"]]
        observed = f"{flags['measure-population']} AND {value} IS NOT NULL"
        sums += [f"SUM(CASE WHEN {observed} THEN 1 ELSE 0 END)", f"SUM(CASE WHEN {observed} THEN {value} ELSE 0 END)"]
    keys = columns or ["NULL"]
    group_by = ", ".join(str(i + 1) for i in range(len(keys)))
    sums.append("MAX(patient_referrals)")
    sql = f"SELECT {', '.join(keys)}, COUNT(*), {', '.join(sums)} FROM referral_facts WHERE {where} GROUP BY {group_by}"
    overall: _Cell | None = None
    strata: list[dict[str | None, _Cell]] = [{} for _ in columns]
    width = len(keys)
    for row in _run(conn, sql, params):
        counts = {"initial-population": int(row[width])}
        counts.update({code: int(row[width + 1 + i] or 0) for i, code in enumerate(flags)})
        obs_count, obs_sum = (int(row[-3] or 0), int(row[-2] or 0)) if observed else (0, 0)
        most = int(row[-1] or 1)
        overall = overall or _Cell()
        overall.add(counts, obs_count, obs_sum, most)
        for i in range(len(columns)):
            strata[i].setdefault(row[i], _Cell()).add(counts, obs_count, obs_sum, most)
    if overall is None:
        return None, strata
    if observed and measure.aggregate == "median":
        _histograms(conn, measure, where, params, observed, keys, overall, strata)
    if request.min_patients:
        _count_patients(conn, request, where, params, columns, strata)
    return overall, strata


def _histograms(
    conn: Connection,
    measure: MeasureDef,
    where: str,
    params: dict,
    observed: str,
    keys: list[str],
    overall: _Cell,
    strata: list[dict[str | None, _Cell]],
) -> None:
    """The observed values of a median measure, per stratum: PostgreSQL hashes one value histogram per
    stratifier in one scan (GROUPING SETS); SQLite, which has none, streams one per stratum combination
    in index order and rolls them up."""
    value = OBSERVATIONS[measure.populations["measure-observation"]]
    width = len(keys)
    if conn.dialect.name == "postgresql" and strata:
        sets = ", ".join(f"({key}, {value})" for key in keys)
        sql = (
            f"SELECT {', '.join(keys)}, {value}, COUNT(*), GROUPING({', '.join(keys)}) FROM referral_facts "
            f"WHERE {where} AND {observed} GROUP BY GROUPING SETS ({sets})"
        )
        full = (1 << width) - 1
        for row in _run(conn, sql, params):
            i = next(i for i in range(width) if row[-1] == full - (1 << (width - 1 - i)))
            v, n = int(row[width]), int(row[width + 1])
            for cell in (strata[i][row[i]], *((overall,) if i == 0 else ())):
                cell.histogram[v] = cell.histogram.get(v, 0) + n
        return
    group_by = ", ".join(str(i + 1) for i in range(width + 1))
    sql = (
        f"SELECT {', '.join(keys)}, {value}, COUNT(*) FROM referral_facts "
        f"WHERE {where} AND {observed} GROUP BY {group_by}"
    )
    for row in _run(conn, sql, params):
        v, n = int(row[width]), int(row[width + 1])
        for cell in [overall, *(strata[i][row[i]] for i in range(len(strata)))]:
            cell.histogram[v] = cell.histogram.get(v, 0) + n


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
        statement = text(sql)
        if "regions" in params:
            statement = statement.bindparams(bindparam("regions", expanding=True))
        if known:
            statement = statement.bindparams(bindparam("values", expanding=True))
        for k, n in conn.execute(statement, {**params, "values": known} if known else params):
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
