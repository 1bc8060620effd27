"""How fast the web app's pages answer with many referrals in the database.

Builds a SQLite database in-process: the project's data, then ``--referrals`` referrals through the intake
(the same pipeline as every door: validation, routing, Task, Provenance), spread over the four regions, one
in 30 unroutable (manual triage); ``--accept`` of them accepted through the web app's own action. Then signs
in (development sign-in) and times each page through the Flask test client (the app's whole request path:
session, access, audit, templates; no network): median and 95th percentile of ``--repeat`` requests.

Run:  python bench/bench_web.py [--referrals 10000] [--accept 500] [--repeat 20] [--database DIR]
A ``--database`` folder that already holds a built database is reused (the build is the slow part).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.app import create_app  # noqa: E402
from fhir_server.components import build_server  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core.conformance.seed import seed  # noqa: E402
from fhir_server.core.storage import access  # noqa: E402
from fhir_server.web.worklist import Person, Worklist  # noqa: E402
from tests.browser.referrals import referral_bundle  # noqa: E402

#: Home municipalities spread over the regions (Sør-Øst, Vest, Midt, Nord); None: manual triage.
MUNICIPALITIES = ["3301", "4204", "4601", "1103", "5001", "5501", "1804", "3403"]
SOUTH_EAST = "991324968"


def build(components, referrals: int, accept: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with access.acting_as(access.SYSTEM):
        seed(components.service)
        for n in range(referrals):
            municipality = None if n % 30 == 29 else MUNICIPALITIES[n % len(MUNICIPALITIES)]
            components.intake.submit(referral_bundle(n, f"Bench{n}", municipality))
            if n and n % 1000 == 0:
                rate = n / (time.perf_counter() - started)
                print(f"  {n} referrals ({rate:.0f}/s)", file=sys.stderr)
        worklist = Worklist(components.service, components.intake.tables, components.pathways)
        region = worklist.tables.organizations[SOUTH_EAST]
        person = Person("Bench Person", "bench", SOUTH_EAST)
        done = 0
        while done < accept:
            rows = worklist.queue(region, page=1).rows
            if not rows:
                break
            for row in rows[: accept - done]:
                worklist.accept(row.task_id, row.task_version, person, "2")
                done += 1
    return time.perf_counter() - started


def sign_in(client, orgnr: str, admin: bool) -> None:  # type: ignore[no-untyped-def]
    form = client.get("/app/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    data = {"csrf_token": token, "org": orgnr, "name": "Bench", "ident": "bench"}
    if admin:
        data["role"] = "admin"
    assert client.post("/app/login", data=data).status_code == 302


def timed(client, path: str, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(len(times) * 0.95) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10_000)
    parser.add_argument("--accept", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database", type=Path, help="a folder for the SQLite database (kept and reused)")
    args = parser.parse_args()
    folder = args.database or Path(tempfile.mkdtemp(prefix="bench-web-"))
    folder.mkdir(parents=True, exist_ok=True)
    fresh = not (folder / "web.sqlite3").exists()
    settings = load_settings(
        database_url=f"sqlite:///{folder / 'web.sqlite3'}",
        auth_mode="development",
        dev_key_path=str(folder / "dev-key.json"),
        delivery_worker=False,
        sqlite_synchronous="NORMAL",
        log_level="WARNING",
    )
    components = build_server(settings)
    if fresh:
        seconds = build(components, args.referrals, args.accept)
        print(f"built {args.referrals} referrals in {seconds:.0f} s", file=sys.stderr)
    app = create_app(settings, components)
    client = app.test_client()
    sign_in(client, SOUTH_EAST, admin=False)
    with access.acting_as(access.SYSTEM):
        referral = components.service.search_window("ServiceRequest", [("_count", "1")], with_total=False)
    referral_id = referral.matches[0].id
    pages = [
        ("regional queue, first page", "/app/queue"),
        ("regional queue, page 40", "/app/queue?page=40"),
        ("regional queue, accepted", "/app/queue?status=accepted"),
        ("regional queue, one health trust", "/app/queue?hf=894166762"),
        ("regional queue, overdue only", "/app/queue?overdue=1"),
        ("a referral's page", f"/app/referrals/{referral_id}"),
        ("measures (cached after the first)", "/app/measures"),
    ]
    print(f"| page ({args.referrals} referrals, SQLite) | median ms | p95 ms |")
    print("| --- | ---: | ---: |")
    for name, path in pages:
        median, p95 = timed(client, path, args.repeat)
        print(f"| {name} | {median:.0f} | {p95:.0f} |")
    admin = app.test_client()
    sign_in(admin, SOUTH_EAST, admin=True)
    median, p95 = timed(admin, "/app/triage", args.repeat)
    print(f"| manual triage (administrator) | {median:.0f} | {p95:.0f} |")
    app.extensions["fhir_measures"].forget()
    started = time.perf_counter()
    client.get("/app/measures")
    print(f"| measures, computed (cache empty) | {(time.perf_counter() - started) * 1000:.0f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
