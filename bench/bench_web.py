"""How fast the web app's pages answer with many referrals in the database.

Builds a SQLite database in-process: the project's data, then ``--referrals`` referrals, spread over the
regions, some unroutable (manual triage), and ``--accept`` of them accepted through the web app's own action.
Two ways to build it:

* ``--build import`` (the default when ``bench/scale_data.py`` and ``fhir_server.bulk_import`` are present):
  the synthetic generator's NDJSON through the bulk import (the same interactions and referral policy, many
  resources a transaction); the referrals are received the day they are imported;
* ``--build intake``: the sample referral varied, one ``IntakePipeline.submit`` each (the pipeline behind every
  door), received over the last ``--days`` days (so deadlines differ and some are past): ~10 referrals/s.

Then signs in (development sign-in) and times each page through the Flask test client (the app's whole request
path: session, access, audit, templates; no network): median and 95th percentile of ``--repeat`` requests.

Run:  python bench/bench_web.py [--referrals 10000] [--accept 500] [--repeat 20] [--database DIR] [--build ...]
A ``--database`` folder that already holds a built database is reused (the build is the slow part).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.app import create_app  # noqa: E402
from fhir_server.components import Components, build_server  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core.conformance.seed import seed  # noqa: E402
from fhir_server.core.storage import access  # noqa: E402
from fhir_server.web.worklist import Person, Worklist  # noqa: E402
from tests.browser.referrals import referral_bundle  # noqa: E402

#: Home municipalities spread over the regions (Sør-Øst, Vest, Midt, Nord); None: manual triage.
MUNICIPALITIES = ["3301", "4204", "4601", "1103", "5001", "5501", "1804", "3403"]
SOUTH_EAST = "991324968"
#: A health trust of Helse Sør-Øst (Vestre Viken HF), for the queue's health-trust filter.
ONE_TRUST = "894166762"


def can_import() -> bool:
    """True when the synthetic generator and the bulk import are there (``--build import``)."""
    try:
        import fhir_server.bulk_import.runner  # noqa: F401
        from bench import scale_data  # noqa: F401
    except ImportError:
        return False
    return True


def build_by_intake(components: Components, referrals: int, days: int) -> None:
    """One referral at a time through the intake, received evenly over the last ``days`` days (oldest first)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    for n in range(referrals):
        municipality = None if n % 30 == 29 else MUNICIPALITIES[n % len(MUNICIPALITIES)]
        received = now - timedelta(days=days) * (1 - n / referrals)
        components.intake.submit(referral_bundle(n, f"Bench{n}", municipality), received=received)
        if n and n % 1000 == 0:
            print(f"  {n} referrals ({n / (time.perf_counter() - started):.0f}/s)", file=sys.stderr)


def build_by_import(components: Components, referrals: int, folder: Path) -> None:
    """The synthetic generator's NDJSON (``bench/scale_data.py``) through the bulk import."""
    from bench.scale_data import write_referrals
    from fhir_server.bulk_import.runner import Importer, ImportOptions

    ndjson = folder / "ndjson"
    write_referrals(ndjson, referrals, seed=1)
    Importer(components, ImportOptions(progress=True)).run([ndjson])


def accept_some(components: Components, accept: int) -> None:
    """Accept the ``accept`` first received referrals of Helse Sør-Øst by the app's own action (found by a
    search in creation order, not the queue's deadline order: the build does not depend on that sort)."""
    worklist = Worklist(components.service, components.intake.tables, components.pathways)
    region = worklist.tables.organizations[SOUTH_EAST]
    person = Person("Bench Person", "bench", SOUTH_EAST)
    params = [("owner", f"Organization/{region.code}"), ("status", "requested"), ("_sort", "_id")]
    found = components.service.search_window("Task", [*params, ("_count", str(accept))], with_total=False)
    for task in found.matches:
        worklist.accept(task.id, task.version_id, person, "2")


def sign_in(client, orgnr: str, admin: bool) -> None:  # type: ignore[no-untyped-def]
    form = client.get("/app/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    data = {"csrf_token": token, "org": orgnr, "name": "Bench", "ident": "bench"}
    if admin:
        data["role"] = "admin"
    assert client.post("/app/login", data=data).status_code == 302


def timed(client, path: str, repeat: int, before: Callable[[], None] | None = None) -> str:  # type: ignore[no-untyped-def]
    """``| median | p95 |`` of ``repeat`` requests, in ms; a page that fails (e.g. the statement timeout) is
    named with its status and the time it took, once."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        answer = client.get(path)
        took = (time.perf_counter() - started) * 1000
        if answer.status_code != 200:
            return f"failed: {answer.status_code} after {took:.0f} ms | |"
        times.append(took)
    times.sort()
    return f"{statistics.median(times):.0f} | {times[min(len(times) - 1, round(len(times) * 0.95) - 1)]:.0f} |"


def analyze(components: Components) -> None:
    """Refresh the planner's statistics now (the import does so when it ends, a server every 10 minutes)."""
    from fhir_server.core.storage import statistics

    statistics.refresh(components.store)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=10_000)
    parser.add_argument("--accept", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--days", type=int, default=60, help="--build intake: received over this many days")
    parser.add_argument("--database", type=Path, help="a folder for the SQLite database (kept and reused)")
    parser.add_argument("--build", choices=("import", "intake"), default="import" if can_import() else "intake")
    parser.add_argument("--analyze", action="store_true", help="refresh the planner's statistics before timing")
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
        started = time.perf_counter()
        with access.acting_as(access.SYSTEM):
            seed(components.service)
            if args.build == "import":
                build_by_import(components, args.referrals, folder)
            else:
                build_by_intake(components, args.referrals, args.days)
            accept_some(components, args.accept)
        print(
            f"built {args.referrals} referrals ({args.build}) in {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
    if args.analyze:
        analyze(components)
    app = create_app(settings, components)
    client = app.test_client()
    sign_in(client, SOUTH_EAST, admin=False)
    with access.acting_as(access.SYSTEM):
        referral = components.service.search_window("ServiceRequest", [("_count", "1")], with_total=False)
        referrals = components.service.search_window("ServiceRequest", [("_count", "0")]).total
    referral_id = referral.matches[0].id
    measures = app.extensions["fhir_measures"]
    pages = [
        ("regional queue, first page (deadline order)", "/app/queue", None),
        ("regional queue, page 40", "/app/queue?page=40", None),
        ("regional queue, accepted", "/app/queue?status=accepted", None),
        ("regional queue, one health trust", f"/app/queue?hf={ONE_TRUST}", None),
        ("regional queue, overdue only", "/app/queue?overdue=1", None),
        ("a referral's page", f"/app/referrals/{referral_id}", None),
        ("measures, 7 charts (kept a minute)", "/app/measures", None),
        ("measures, 7 charts evaluated (nothing kept)", "/app/measures", measures.forget),
        ("measures, this year, evaluated", "/app/measures?period=year", measures.forget),
    ]
    print(f"| page ({referrals} referrals, SQLite{', ANALYZE' if args.analyze else ''}) | median ms | p95 ms |")
    print("| --- | ---: | ---: |")
    for name, path, before in pages:
        print(f"| {name} | {timed(client, path, args.repeat, before)}", flush=True)
    admin = app.test_client()
    sign_in(admin, SOUTH_EAST, admin=True)
    for name, path in (
        ("manual triage (administrator), first page", "/app/triage"),
        ("manual triage, page 2", "/app/triage?page=2"),
    ):
        print(f"| {name} | {timed(admin, path, args.repeat)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
