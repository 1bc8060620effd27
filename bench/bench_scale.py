"""National scale: the queries regions and clients run, over HTTP, against a database of N referrals.

Builds (or reuses) a database of ``--referrals`` referrals through the bulk import (``bench/bench_import.py``:
each referral a Patient, Condition and ServiceRequest with the intake's routing Task and Provenance, GP
offices and GPs), gives the routing Tasks a realistic status mix (the older ones accepted, completed or
rejected, the newest still requested), refreshes the planner's statistics, starts ``fhir-server serve``
(2 workers) on it and measures, with an administrator's token and a region's (Helse Vest):

* the regional pull (``Task?owner:Organization.identifier=…&status=requested&_include=Task:focus&
  _include:iterate=ServiceRequest:subject``) and its next page (the link's keyset cursor),
* an identifier search and a chained identifier search (one match each),
* ``_total=accurate``, ``_has`` and ``_summary=count``,
* ``ServiceRequest?authored=ge2026-06-01&_sort=-authored&_count=20``,
* a read by id,

``--requests`` times each, one after the other (p50/p95/p99 in ms), then every query by ``--clients``
clients at once for ``--seconds`` (requests/s and p95), and the largest worker's resident memory.

Run:  python bench/bench_scale.py [--referrals 10000] [--database-url URL] [--keep DIR] [--requests 100]
      (default: a fresh SQLite file; ``--keep DIR`` keeps the SQLite database and the import's slices there:
      run again, it goes on with a build that stopped, or reuses the database; a PostgreSQL URL is filled
      when empty and reused when it holds referrals, with ``--keep DIR`` a build that stopped goes on)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import ADMIN_ORG, ADMIN_SCOPES, RunningServer, start_server, stop_server  # noqa: E402

ENH = "urn:oid:2.16.578.1.12.4.1.4.101"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HELSE_VEST = "983658725"
REGION_SCOPES = [
    "system/ServiceRequest.rus",
    "system/Task.rus",
    "system/Patient.rs",
    "system/Provenance.rs",
    "system/Organization.rs",
]
PULL = (
    f"Task?owner:Organization.identifier={ENH}|{HELSE_VEST}&status=requested"
    "&_include=Task:focus&_include:iterate=ServiceRequest:subject"
)


def _one_row(database_url: str, sql: str) -> tuple | None:
    """The one row ``sql`` answers in the database (None when its tables do not exist yet)."""
    from sqlalchemy import create_engine, text

    from fhir_server.core.storage.db import normalise_url

    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(text(sql)).one())
    except Exception:  # no tables yet
        return None
    finally:
        engine.dispose()


def referrals_in(database_url: str) -> int:
    """How many referrals (ServiceRequests) the database holds (0 when it has no tables yet)."""
    row = _one_row(database_url, "SELECT count(*) FROM resources WHERE res_type = 'ServiceRequest' AND NOT deleted")
    return int(row[0]) if row else 0


def settled_share(database_url: str) -> float:
    """The share of Tasks no longer requested (the status mix is applied once)."""
    sql = (
        "SELECT count(*), sum(CASE WHEN code = 'requested' THEN 0 ELSE 1 END) FROM idx_token "
        "WHERE res_type = 'Task' AND param = 'status'"
    )
    row = _one_row(database_url, sql)
    return (row[1] or 0) / row[0] if row and row[0] else 0.0


def build(
    database_url: str, count: int, work: Path | None = None, parallel: int = 1, numbers: range | None = None
) -> None:
    """Import ``count`` referrals (or the slices ``numbers`` of them), give their Tasks a status mix, refresh
    statistics (progress on stderr); with ``work``, a build that stopped goes on where it was."""
    from bench.bench_import import build_database

    started = time.monotonic()
    slices = build_database(database_url, count, work=work, parallel=parallel, numbers=numbers)
    stored = sum(s.stored for s in slices)
    part = f" (slices {numbers.start}-{numbers.stop - 1})" if numbers is not None else ""
    print(f"built: {count} referrals{part}, {stored} resources in {time.monotonic() - started:.0f} s", file=sys.stderr)
    mix_statuses(database_url)


def mix_statuses(database_url: str, seed: int = 16) -> None:
    """The routing Tasks, oldest first: 80 % settled (accepted 70, completed 20, rejected 10 of each 100),
    the newest 20 % still requested; Tasks in manual triage stay there. Written as the regions would, by
    updates through the server's own write path (500 a transaction). Run again, it settles what is left."""
    from tqdm import tqdm

    from fhir_server.components import build_server
    from fhir_server.config import load_settings
    from fhir_server.core.storage import access, statistics
    from fhir_server.core.storage.schema import resources as resource_table

    server = build_server(load_settings(database_url=database_url))
    rng = random.Random(seed)
    with access.acting_as(access.SYSTEM):
        with server.store.reading() as conn:
            from sqlalchemy import select

            ids = list(
                conn.execute(
                    select(resource_table.c.res_id)
                    .where(resource_table.c.res_type == "Task", resource_table.c.deleted.is_(False))
                    .order_by(resource_table.c.res_id)
                ).scalars()
            )
        settled = ids[: int(len(ids) * 0.8)]
        with tqdm(total=len(settled), desc="status mix", unit="task", file=sys.stderr, mininterval=5) as progress:
            for start in range(0, len(settled), 500):
                chunk = settled[start : start + 500]
                with server.store.batch() as batch:  # one transaction per 500 updates, as the import writes
                    stored = server.store.load_many(batch.conn, [("Task", task_id) for task_id in chunk])
                    updates = []
                    for task_id in chunk:
                        body = json.loads(stored[("Task", task_id)].body or b"{}")
                        if body.get("status") == "requested" and "hub-manual-triage" not in str(body.get("owner")):
                            body["status"] = rng.choices(["accepted", "completed", "rejected"], [70, 20, 10])[0]
                            updates.append(body)
                    refused = [a for a in server.service.update_many(updates) if isinstance(a, Exception)]
                    if refused:
                        raise SystemExit(f"status mix refused: {refused[0]}")
                progress.update(len(chunk))
        statistics.refresh(server.store)
    server.db.dispose()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Client:
    """One HTTP client with a token."""

    def __init__(self, server: RunningServer, token: str) -> None:
        self.base = server.base
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})

    def get(self, path: str) -> tuple[float, requests.Response]:
        url = path if path.startswith("http") else f"{self.base}/{path}"
        started = time.perf_counter()
        response = self.session.get(url, timeout=300)
        return (time.perf_counter() - started) * 1000, response


def samples(admin: Client, count: int) -> dict[str, list[str]]:
    """Values the queries take in turn: identity numbers, ids, the pull's next page."""
    _, r = admin.get(f"Patient?_count={count}&_elements=identifier")
    fnrs = [
        i["value"]
        for e in r.json().get("entry", [])
        for i in e["resource"].get("identifier", [])
        if i.get("system") == FNR
    ]
    _, r = admin.get(f"Task?_count={count}&_elements=id")
    tasks = [e["resource"]["id"] for e in r.json().get("entry", [])]
    return {"fnr": fnrs or ["00000000000"], "task": tasks or ["none"]}


def region_tasks(region: Client, count: int) -> list[str]:
    """Tasks the region sees (a region reads its own)."""
    _, r = region.get(f"Task?_count={count}&_elements=id")
    return [e["resource"]["id"] for e in r.json().get("entry", [])] or ["none"]


def queries(values: dict[str, list[str]]) -> dict[str, object]:
    """Query name → a function of the request number giving the path."""
    fnrs, tasks = values["fnr"], values["task"]
    return {
        "regional pull": lambda n: PULL,
        "identifier (one match)": lambda n: f"Patient?identifier={FNR}|{fnrs[n % len(fnrs)]}",
        "chained identifier": lambda n: f"ServiceRequest?subject:Patient.identifier={FNR}|{fnrs[n % len(fnrs)]}",
        "_total=accurate": lambda n: "Task?status=requested&_total=accurate",
        "_has": lambda n: "Patient?_has:ServiceRequest:subject:status=active&_count=20",
        "_summary=count": lambda n: "ServiceRequest?status=active&_summary=count",
        "authored, sorted": lambda n: "ServiceRequest?authored=ge2026-06-01&_sort=-authored&_count=20",
        "read by id": lambda n: f"Task/{tasks[n % len(tasks)]}",
    }


def sequential(client: Client, name: str, path_of, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for n in range(runs + 2):
        ms, r = client.get(path_of(n))
        if r.status_code != 200:
            raise SystemExit(f"{name}: {r.status_code} {r.text[:300]}")
        if n >= 2:  # two warm-up requests
            times.append(ms)
    return times


def next_page(client: Client, runs: int) -> list[float]:
    """The pull's second page through the first page's ``next`` link (a keyset cursor)."""
    times = []
    for _ in range(runs):
        _, first = client.get(PULL)
        link = next((x["url"] for x in first.json().get("link", []) if x["relation"] == "next"), None)
        if link is None:
            return []
        ms, r = client.get(link)
        if r.status_code != 200:
            raise SystemExit(f"next page: {r.status_code} {r.text[:300]}")
        times.append(ms)
    return times


def concurrent(server: RunningServer, token: str, path_of, clients: int, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Requests/s and p95 (ms) of ``clients`` clients asking at once for ``seconds``."""
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(number: int) -> None:
        client = Client(server, token)
        n = number
        while time.monotonic() < stop:
            ms, r = client.get(path_of(n))
            n += clients
            with lock:
                times.append(ms if r.status_code == 200 else float("inf"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(times) / (time.monotonic() - started), percentile(times, 0.95)


def worker_memory_mb(server: RunningServer) -> float:
    """The largest resident memory of the server's processes (the gunicorn master and its workers), in MB."""
    pids = [server.process.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid:  # the parent's id
            pids.append(int(stat.parent.name))
    sizes = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        sizes += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
    return max(sizes, default=0) / 1000


def _slice_range(text: str) -> range:
    """``6-10`` as the slice numbers 6 to 10."""
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--referrals", type=int, default=10_000)
    parser.add_argument("--database-url")
    parser.add_argument("--keep", type=Path, help="folder keeping the database (SQLite) and slices for a later run")
    parser.add_argument("--build-only", action="store_true", help="build (or go on building) the database, then stop")
    parser.add_argument("--parallel", type=int, default=1, help="import processes for slices 2-10 (PostgreSQL)")
    parser.add_argument(
        "--slices",
        type=_slice_range,
        help="build only these tenths, e.g. 6-10 (then stop): parts built at once in several databases, "
        "joined by bench/join_databases.py",
    )
    parser.add_argument(
        "--as-built", action="store_true", help="measure the database as it is: no status mix on a built one"
    )
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    folder = args.keep or work
    folder.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{folder / f'scale-{args.referrals}.sqlite3'}"
    if args.slices is not None:
        build(url, args.referrals, work=args.keep, numbers=args.slices)
        print(f"database: {referrals_in(url)} referrals ({url.split('@')[-1]})")
        return
    held = referrals_in(url)
    if held < args.referrals:
        if held and args.keep is None:
            raise SystemExit(f"{url} holds {held} referrals, fewer than {args.referrals}: use an empty database")
        build(url, args.referrals, work=args.keep, parallel=args.parallel)  # with --keep: goes on where it stopped
    elif not args.as_built and settled_share(url) < 0.75:
        # built elsewhere (bench_web.py), or a mix that stopped: the mix settles the rest (a whole mix leaves
        # ~0.77 settled: 80 % of the Tasks but those in manual triage; run again it changes nothing)
        mix_statuses(url)
    print(f"database: {referrals_in(url)} referrals ({url.split('@')[-1]})")
    if args.build_only:
        return
    server = start_server(url, work, access_log=False)
    try:
        admin = Client(server, server.token(ADMIN_SCOPES, ADMIN_ORG, client_id="bench-admin"))
        region_token = server.token(REGION_SCOPES, HELSE_VEST, client_id="helse-vest")
        region = Client(server, region_token)
        values = samples(admin, 200)
        plans = {"admin": queries(values), "region": queries({**values, "task": region_tasks(region, 200)})}
        print(f"\n{'query':28} {'who':7} {'p50':>8} {'p95':>8} {'p99':>8}   (ms, {args.requests} sequential)")
        for who, client in (("admin", admin), ("region", region)):
            for name, path_of in plans[who].items():
                times = sequential(client, name, path_of, args.requests)
                p50, p95, p99 = (percentile(times, q) for q in (0.5, 0.95, 0.99))
                print(f"{name:28} {who:7} {p50:8.1f} {p95:8.1f} {p99:8.1f}", flush=True)
            times = next_page(client, max(10, args.requests // 5))
            if times:
                p50, p95, p99 = (percentile(times, q) for q in (0.5, 0.95, 0.99))
                print(f"{'pull, next page':28} {who:7} {p50:8.1f} {p95:8.1f} {p99:8.1f}", flush=True)
        print(f"\n{'query':28} {'who':7} {'req/s':>8} {'p95':>8}   ({args.clients} clients, {args.seconds:.0f} s)")
        for name in ("regional pull", "identifier (one match)", "authored, sorted", "read by id"):
            rate, p95 = concurrent(server, region_token, plans["region"][name], args.clients, args.seconds)
            print(f"{name:28} {'region':7} {rate:8.1f} {p95:8.1f}", flush=True)
        print(f"\nlargest server worker: {worker_memory_mb(server):.0f} MB resident")
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
