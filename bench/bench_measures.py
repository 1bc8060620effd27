"""Measure evaluation over a national year: ``$evaluate-measure``'s SQL over 300 000 referrals.

Fills ``referral_facts`` directly (synthetic rows, no resources: the fact table is all evaluation
reads) with ``--referrals`` referrals received over one year across the four regions, their health
trusts, eight pathways, age groups and sexes, with assessments, milestones, first attendances and
care deadlines, some on time, some late, some still waiting. Then evaluates every Measure of the
catalog over that year, as an administrator (all regions, every stratum) and as one region (masked
small strata), ``--runs`` times each, and prints p50 and p95 in ms.

Run:  python bench/bench_measures.py [--referrals 300000] [--runs 20] [--database-url URL]
(default: a fresh SQLite file in a temporary folder; a PostgreSQL URL must name an empty database).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.core.storage.db import Database, open_database  # noqa: E402
from fhir_server.domain.calendar import add_working_days  # noqa: E402
from fhir_server.domain.measures import MeasureCatalog, Request, ensure_fact_table, evaluate  # noqa: E402
from fhir_server.domain.measures.facts import referral_facts  # noqa: E402

#: RHF orgnr → its health trusts (orgnr), from the routing notes
REGIONS = {
    "991324968": ["983971636", "993467049", "983971709", "983971768", "983975259", "983975267", "983975240"],
    "983658725": ["983974678", "983974694", "983974724", "983974732"],
    "983658776": ["997005562", "883974832", "983974791"],
    "883658752": ["983974880", "983974899", "983974910", "983974929"],
}
PATHWAYS = [
    "psykisk-helsevern-voksne",
    "psykisk-helsevern-barn-og-unge",
    "tsb",
    "psykoselidelser",
    "tvangslidelse-ocd",
    "spiseforstyrrelser-barn-og-unge",
    "gravide-og-rusmidler",
    "ordinaer-henvisning",
]
AGE_GROUPS = ["0-17", "18-22", "23-64", "65+"]
YEAR = date(2025, 1, 1)


def synthetic_rows(count: int, seed: int = 18) -> list[dict]:
    """``count`` fact rows received during 2025 (deterministic)."""
    rng = random.Random(seed)
    regions = list(REGIONS)
    rows = []
    for n in range(count):
        region = rng.choice(regions)
        received = YEAR + timedelta(days=rng.randrange(365))
        deadline = add_working_days(received, 10)
        assessed = received + timedelta(days=rng.randrange(20)) if rng.random() < 0.95 else None
        first = assessed + timedelta(days=rng.randrange(5, 90)) if assessed and rng.random() < 0.8 else None
        care_deadline = received + timedelta(days=rng.choice((30, 45, 65, 90))) if assessed else None
        row = {
            "referral_id": f"r{n:07d}",
            "patient_id": f"p{rng.randrange(count * 9 // 10):07d}",
            "status": "active",
            "region": region,
            "health_trust": rng.choice(REGIONS[region]),
            "pathway": rng.choice(PATHWAYS),
            "age_group": rng.choice(AGE_GROUPS),
            "sex": rng.choice(("female", "male")),
            "received": received.toordinal(),
            "assessment_deadline": deadline.toordinal(),
            "assessed": assessed.toordinal() if assessed else None,
            "decided": None,
            "pathway_start": assessed.toordinal() if assessed else None,
            "care_deadline": care_deadline.toordinal() if care_deadline else None,
            "first_attendance": first.toordinal() if first else None,
            "waiting_days": (first - received).days if first else None,
            "first_attendance_due": (received + timedelta(days=28)).toordinal(),
            "clinical_decision": (first + timedelta(days=rng.randrange(40))).toordinal() if first else None,
            "clinical_decision_due": (first + timedelta(days=21)).toordinal() if first else None,
            "first_evaluation": None,
            "first_evaluation_due": None,
        }
        rows.append(row)
    per_patient: dict[str, int] = {}
    for row in rows:
        per_patient[row["patient_id"]] = per_patient.get(row["patient_id"], 0) + 1
    for row in rows:
        row["patient_referrals"] = per_patient[row["patient_id"]]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-measures-") as folder:
        url = args.database_url or f"sqlite:///{folder}/facts.sqlite3"
        db = open_database(url, sqlite_synchronous="OFF")
        try:
            fill(db, args.referrals)
            return run(db, args.runs)
        finally:
            db.dispose()


def fill(db: Database, referrals: int) -> None:
    """Replace the fact table's rows by ``referrals`` synthetic ones, then gather the planner's statistics
    (as autovacuum would after such a load on PostgreSQL; SQLite's ANALYZE)."""
    ensure_fact_table(db)
    started = time.perf_counter()
    rows = synthetic_rows(referrals)
    with db.write.begin() as conn:
        conn.execute(referral_facts.delete())
        for start in range(0, len(rows), 20_000):
            conn.execute(referral_facts.insert(), rows[start : start + 20_000])
    with db.write.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("ANALYZE referral_facts" if db.is_sqlite else "VACUUM ANALYZE referral_facts")
    print(f"{referrals} referrals filled in {time.perf_counter() - started:.1f} s ({db.dialect})")


def run(db: Database, runs: int) -> int:
    """Evaluate every Measure ``runs`` times per audience; print p50 and p95 (ms)."""
    print(f"load average before the runs: {' '.join(f'{n:.1f}' for n in os.getloadavg())} ({os.cpu_count()} cores)")
    catalog = MeasureCatalog.load()
    year_end = date(2025, 12, 31)
    audiences = {
        "administrator (all regions)": Request(YEAR, year_end, year_end),
        "one region (masked)": Request(YEAR, year_end, year_end, regions=frozenset({"983658725"}), min_patients=5),
        "statistics (all, masked)": Request(YEAR, year_end, year_end, min_patients=5),
    }
    print(f"{'measure':32} {'audience':28} {'p50 ms':>8} {'p95 ms':>8}")
    worst = 0.0
    with db.read.connect() as conn:
        for measure in catalog.by_id.values():
            for audience, request in audiences.items():
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    evaluate(conn, measure, request)
                    times.append((time.perf_counter() - t0) * 1000)
                p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
                worst = max(worst, p95)
                print(f"{measure.id:32} {audience:28} {statistics.median(times):8.0f} {p95:8.0f}")
    print(f"worst p95: {worst:.0f} ms (target < 2000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
