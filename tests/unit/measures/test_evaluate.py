"""The population definitions and the evaluator, on fact rows written straight into a SQLite table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fhir_server.core.storage.db import open_database
from fhir_server.domain.measures import MeasureCatalog, Request, ensure_fact_table, evaluate
from fhir_server.domain.measures.catalog import MeasureError, measure_def
from fhir_server.domain.measures.evaluate import _median
from fhir_server.domain.measures.facts import age_group, referral_facts

D = date.toordinal
START, END = date(2025, 1, 1), date(2025, 12, 31)
HV, HN = "983658725", "883658752"


def row(rid: str, region: str = HV, **facts: object) -> dict:
    base = dict.fromkeys(c.name for c in referral_facts.columns)
    base.update(
        referral_id=rid, patient_id=f"p-{rid}", patient_referrals=1, status="active", region=region, sex="female"
    )
    base.update({k: D(v) if isinstance(v, date) else v for k, v in facts.items()})
    return base


@pytest.fixture
def conn(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'facts.sqlite3'}")
    ensure_fact_table(db)
    rows = [
        # received in March; deadline 14 March
        row("on-time", received=date(2025, 3, 3), assessment_deadline=date(2025, 3, 14), assessed=date(2025, 3, 10)),
        row("late", received=date(2025, 3, 3), assessment_deadline=date(2025, 3, 14), assessed=date(2025, 3, 20)),
        row("decided", received=date(2025, 3, 3), assessment_deadline=date(2025, 3, 14), decided=date(2025, 3, 5)),
        row("overdue", received=date(2025, 3, 3), assessment_deadline=date(2025, 3, 14)),
        row("pending", received=date(2025, 12, 29), assessment_deadline=date(2026, 1, 12)),
        row("revoked", status="revoked", received=date(2025, 3, 3), assessment_deadline=date(2025, 3, 14)),
        row("last-year", received=date(2024, 12, 1), assessment_deadline=date(2024, 12, 13)),
        row("nord", region=HN, received=date(2025, 5, 5), assessment_deadline=date(2025, 5, 16)),
    ]
    with db.write.begin() as c:
        c.execute(referral_facts.insert(), rows)
    with db.read.connect() as c:
        yield c
    db.dispose()


def counts(group: dict) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p.get("count") for p in group["population"]}


def test_assessed_within_deadline_counts_recorded_and_overdue(conn):
    measure = MeasureCatalog.load().by_id["vurdert-innen-frist"]
    report = evaluate(conn, measure, Request(START, END, END))
    group = report["group"][0]
    # received in 2025 and active: on-time, late, decided, overdue, pending, nord (not revoked, not last year)
    # denominator: assessed (on-time, late), decided, overdue and nord past their deadline; not pending (deadline
    # after the as-of day); numerator: on-time and decided
    assert counts(group) == {"initial-population": 6, "denominator": 5, "numerator": 2}
    assert group["measureScore"]["value"] == 0.4
    regions = {s["value"]["text"]: counts(s) for s in group["stratifier"][0]["stratum"]}
    assert regions == {
        HV: {"initial-population": 5, "denominator": 4, "numerator": 2},
        HN: {"initial-population": 1, "denominator": 1, "numerator": 0},
    }


def test_a_region_sees_its_rows_and_small_strata_are_masked(conn):
    measure = MeasureCatalog.load().by_id["vurdert-innen-frist"]
    report = evaluate(conn, measure, Request(START, END, END, regions=frozenset({HN}), min_patients=5))
    group = report["group"][0]
    assert counts(group)["initial-population"] == 1
    stratum = group["stratifier"][0]["stratum"][0]
    assert stratum["value"]["text"] == HN
    assert all("count" not in p for p in stratum["population"])
    assert stratum["measureScore"]["extension"][0]["valueCode"] == "masked"
    # one patient fewer than the threshold is enough to mask; at the threshold it is shown
    shown = evaluate(conn, measure, Request(START, END, END, regions=frozenset({HN}), min_patients=1))
    assert shown["group"][0]["stratifier"][0]["stratum"][0]["population"][0]["count"] == 1


def test_small_number_protection_counts_patients_not_referrals(conn, tmp_path):
    measure = MeasureCatalog.load().by_id["vurdert-innen-frist"]
    conn.execute(
        referral_facts.insert(),
        [
            row(f"again-{n}", region=HN, received=date(2025, 6, 2), assessment_deadline=date(2025, 6, 13))
            | {"patient_id": "p-same", "patient_referrals": 6}
            for n in range(6)
        ],
    )
    request = Request(START, END, END, regions=frozenset({HN}), min_patients=5)
    stratum = evaluate(conn, measure, request)["group"][0]["stratifier"][0]["stratum"][0]
    assert "count" not in stratum["population"][0]  # 7 referrals, 2 patients: masked
    shown = evaluate(conn, measure, Request(START, END, END, regions=frozenset({HN}), min_patients=2))
    assert shown["group"][0]["stratifier"][0]["stratum"][0]["population"][0]["count"] == 7


def test_as_of_date_decides_what_is_overdue(conn):
    measure = MeasureCatalog.load().by_id["vurdert-innen-frist"]
    early = evaluate(conn, measure, Request(START, END, date(2025, 3, 14)))  # the deadline day itself
    assert counts(early["group"][0])["denominator"] == 3  # on-time, late, decided: overdue is not overdue yet


def test_subject_list_names_the_referrals(conn):
    measure = MeasureCatalog.load().by_id["vurdert-innen-frist"]
    report = evaluate(conn, measure, Request(START, END, END, report_type="subject-list"))
    lists = {c["id"]: [e["item"]["reference"] for e in c["entry"]] for c in report["contained"]}
    assert lists["numerator"] == ["ServiceRequest/decided", "ServiceRequest/on-time"]
    assert report["type"] == "subject-list"
    assert report["group"][0]["population"][2]["subjectResults"] == {"reference": "#numerator"}


def test_median_of_a_histogram():
    assert _median({3: 1, 5: 1, 10: 1}) == 5
    assert _median({3: 2, 10: 2}) == 6.5
    assert _median({}) is None


def test_age_groups_are_whole_years_at_receipt():
    assert age_group(date(2007, 6, 2), date(2025, 6, 1)) == "0-17"
    assert age_group(date(2007, 6, 1), date(2025, 6, 1)) == "18-22"
    assert age_group(date(2002, 6, 1), date(2025, 6, 1)) == "23-64"
    assert age_group(date(1960, 1, 1), date(2025, 6, 1)) == "65+"
    assert age_group(None, date(2025, 6, 1)) is None


def test_a_measure_naming_an_unknown_definition_is_refused():
    resource = MeasureCatalog.load().by_id["fristbrudd"].resource
    broken = {**resource, "group": [{**resource["group"][0]}]}
    broken["group"][0]["population"] = [
        {**p, "criteria": {**p["criteria"], "expression": "nope"}} for p in resource["group"][0]["population"]
    ]
    with pytest.raises(MeasureError, match="unknown definition 'nope'"):
        measure_def(broken)
