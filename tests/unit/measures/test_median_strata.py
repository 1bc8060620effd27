"""The waiting-time median and mean are exact in every stratum, on SQLite and PostgreSQL: the evaluator's
figures for a few hundred fact rows (every stratifier, unknown values, rows outside the period, revoked
and still waiting referrals) equal the median and mean Python takes of the same rows."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection

from fhir_server.core.storage.db import open_database
from fhir_server.domain.measures import MeasureCatalog, Request, ensure_fact_table, evaluate
from fhir_server.domain.measures.catalog import measure_def
from fhir_server.domain.measures.definitions import STRATIFIERS
from fhir_server.domain.measures.facts import referral_facts
from tests.conftest import BACKENDS, database_url

START, END = date(2025, 1, 1), date(2025, 12, 31)
REGIONS = {"983658725": ["983974678", "983974694"], "883658752": ["983974880"], None: [None]}
#: stratifier → fact column, in the Measures' order
COLUMNS = {name: STRATIFIERS[name].column for name in ("region", "health-trust", "pathway", "age-group", "sex")}


def fact_rows(count: int) -> list[dict]:
    """Fact rows of referrals received from late 2024 on; most started within 0 to 120 days."""
    rng = random.Random(18)
    rows = []
    for n in range(count):
        region = rng.choice(list(REGIONS))
        received = date(2024, 11, 1) + timedelta(days=rng.randrange(400))
        first = received + timedelta(days=rng.randrange(121)) if rng.random() < 0.8 else None
        row = dict.fromkeys(c.name for c in referral_facts.columns)
        row.update(
            referral_id=f"r{n}",
            patient_id=f"p{n}",
            patient_referrals=1,
            status=rng.choice(["active", "active", "completed", "revoked"]),
            region=region,
            health_trust=rng.choice(REGIONS[region]),
            pathway=rng.choice(["tsb", "psykoselidelser", None]),
            age_group=rng.choice(["0-17", "23-64", "65+"]),
            sex=rng.choice(["female", "male", None]),
            received=received.toordinal(),
            first_attendance=first.toordinal() if first else None,
            waiting_days=(first - received).days if first else None,
        )
        rows.append(row)
    return rows


ROWS = fact_rows(600)


@pytest.fixture(params=BACKENDS)
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connection]:
    url = database_url(request.param, tmp_path, "facts.sqlite3")
    db = open_database(url)
    ensure_fact_table(db)
    with db.write.begin() as c:
        c.execute(referral_facts.insert(), ROWS)
    with db.read.connect() as c:
        yield c
    db.dispose()


def started(rows: list[dict], start: date, end: date) -> list[dict]:
    """The rows whose health care started in the period (the measures' observed referrals)."""
    return [
        r
        for r in rows
        if r["first_attendance"] is not None
        and start.toordinal() <= r["first_attendance"] <= end.toordinal()
        and r["status"] != "revoked"
    ]


def expected(rows: list[dict], aggregate) -> dict:  # type: ignore[no-untyped-def]
    """The group's value and each stratifier's values by stratum, taken in Python."""
    days = [r["waiting_days"] for r in rows]
    strata = {}
    for name, column in COLUMNS.items():
        values = {r[column] for r in rows}
        strata[name] = {
            "unknown" if v is None else v: aggregate([r["waiting_days"] for r in rows if r[column] == v])
            for v in values
        }
    return {"group": aggregate(days), "strata": strata}


def reported(report: dict) -> dict:
    group = report["group"][0]
    strata = {}
    for stratifier, name in zip(group["stratifier"], COLUMNS, strict=True):
        strata[name] = {s["value"]["text"]: s["measureScore"]["value"] for s in stratifier["stratum"]}
    return {"group": group["measureScore"]["value"], "strata": strata}


def mean(values: list[int]) -> float:
    return round(statistics.mean(values), 2)


@pytest.mark.parametrize(("start", "end"), [(START, END), (date(2025, 3, 1), date(2025, 3, 31))])
def test_median_and_mean_of_every_stratum(conn, start, end):
    catalog = MeasureCatalog.load().by_id
    assert tuple(COLUMNS) == catalog["ventetid-median"].stratifiers
    rows = started(ROWS, start, end)
    assert len(rows) > 20 and any(r["waiting_days"] == 0 for r in ROWS)
    median = evaluate(conn, catalog["ventetid-median"], Request(start, end, end))
    assert reported(median) == expected(rows, statistics.median)
    average = evaluate(conn, catalog["ventetid-gjennomsnitt"], Request(start, end, end))
    assert reported(average) == expected(rows, mean)


def test_median_of_one_region_and_of_a_measure_without_stratifiers(conn):
    measure = MeasureCatalog.load().by_id["ventetid-median"]
    rows = started(ROWS, START, END)
    region = "983658725"
    report = evaluate(conn, measure, Request(START, END, END, regions=frozenset({region})))
    assert reported(report) == expected([r for r in rows if r["region"] == region], statistics.median)
    group = {k: v for k, v in measure.resource["group"][0].items() if k != "stratifier"}
    plain = measure_def({**measure.resource, "group": [group]})
    assert plain.stratifiers == ()
    report = evaluate(conn, plain, Request(START, END, END))
    assert report["group"][0]["measureScore"]["value"] == statistics.median(r["waiting_days"] for r in rows)
