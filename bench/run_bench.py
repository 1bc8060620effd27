"""HTTP benchmark of the FHIR server against ceilings measured in the same run.

Scenarios (each ``--seconds`` long, ``--connections`` concurrent clients, wrk on loopback):
  read           GET [base]/Patient/{id}
  search-include GET [base]/ServiceRequest?subject=Patient/{id}&_include=ServiceRequest:subject
  create         POST [base]/Patient
  transaction    POST [base] with the 8-entry Bundle (tests/data/referral-transaction.json), the ServiceRequest
                 not categorised as a referral: the plain FHIR transaction
  referral pipeline  the same Bundle as a referral: intake (normalise, profiles, validate, suggest, route,
                 Task + Provenance + outbox), each request with its own referral identifier
Ceilings, served by gunicorn with the same worker settings:
  trivial        GET /trivial (constant JSON from Flask)
  validate-only  POST /validate (fhir.resources R4B validation of the same Bundle)
Every request to the server carries a real bearer token (development issuer, administrator scopes),
passes the security gate and is audited (an AuditEvent per request), as in production. The events'
search index is deferred (built when idle or before an AuditEvent search): after each of the server's
scenarios the bench builds it with an AuditEvent search, so it never runs during the next scenario (a
ceiling's, say), and reports the req/s that counts its time too (on one core, against two during the
scenario: requests / (seconds + index seconds / 2)).

Run:  python bench/run_bench.py [--database-url URL] [--seconds 5] [--rounds 3] [--connections 8] [--workers 2]
Needs wrk (Debian package ``wrk``). Prints a Markdown table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, start_server, stop_server  # noqa: E402

BUNDLE = ROOT / "tests" / "data" / "referral-transaction.json"
LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
local f = io.open("{path}", "rb"); local template = f:read("*a"); f:close()
local counter = 0
local prefix = ""
local threads = 0
-- each wrk thread has its own Lua state with the same unseeded random numbers: number the threads
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args)
  prefix = tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))
end
-- every request carries its own referral identifier: a repeated one would be answered as a duplicate
function request()
  counter = counter + 1
  local body = template:gsub("__UNIQUE__", prefix .. "-" .. counter)
  return wrk.format(nil, nil, nil, body)
end
"""


def _unit_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, seconds: int, connections: int, body: Path | None = None, token: str | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(LUA_POST.format(path=body))
            cmd += ["-s", script.name]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _unit_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _unit_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": int(non2xx.group(1)) if non2xx else 0}


def start_ceiling(workers: int, threads: int, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (log_dir / "ceiling.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-k",
            "gthread" if threads > 1 else "sync",
            "-b",
            f"127.0.0.1:{port}",
            "bench.ceiling_app:app",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(base + "/trivial", timeout=1)
            return proc, base
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("ceiling app did not start")


def seed(base: str, auth: dict[str, str]) -> tuple[str, str]:
    bundle = json.loads(BUNDLE.read_text())
    headers = {"Content-Type": "application/fhir+json", **auth}
    result = requests.post(base, json=bundle, headers=headers, timeout=60).json()
    patient_ref = next(
        e["response"]["location"] for e in result["entry"] if e["response"]["location"].startswith("Patient/")
    )
    return patient_ref.split("/")[1], patient_ref.rsplit("/_history", 1)[0]


def catch_up_audit_index(base: str, auth: dict[str, str]) -> float:
    """Seconds an AuditEvent search takes to build the index of every event stored so far (one core)."""
    time.sleep(0.5)  # the audit writers store what they queued every 0.2 s
    start = time.perf_counter()
    requests.get(f"{base}/AuditEvent?_summary=count", headers=auth, timeout=600).raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per worker, as `fhir-server serve` (1: gunicorn sync workers)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument(
        "--only", default="", help="comma-separated words: run only scenarios whose name contains one (ceilings kept)"
    )
    parser.add_argument("--hold", type=int, default=0, help="seconds to keep the server up before measuring")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
    db_url = args.database_url or f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ["FHIR_SERVER_THREADS"] = str(args.threads)
    os.environ["FHIR_SERVER_RATE_LIMIT_PER_MINUTE"] = "0"  # one client sends everything: no per-client limit
    # no access log, as the ceilings have none (every request is still recorded as an AuditEvent)
    # and the outbox polls at its production interval, not the tests' quick one
    server = start_server(
        db_url, work, workers=args.workers, access_log=False, env_overrides={"FHIR_SERVER_OUTBOX_POLL_SECONDS": "1"}
    )
    ceiling, ceiling_base = start_ceiling(args.workers, args.threads, work)
    patient_file = work / "patient.json"
    bundle = json.loads(BUNDLE.read_text())
    patient_file.write_text(json.dumps(bundle["entry"][0]["resource"]))
    referral_file, core_file = work / "referral.json", work / "core.json"
    bundle["entry"][5]["resource"]["identifier"][0]["value"] = "__UNIQUE__"
    referral_file.write_text(json.dumps(bundle))
    # the same 8 entries without the referral category: the plain FHIR transaction, no intake pipeline
    bundle["entry"][5]["resource"]["category"][0]["coding"][0]["code"] = "409063005"
    core_file.write_text(json.dumps(bundle))
    results: dict[str, dict] = {}
    try:
        # every request carries a real token (development issuer, an administrator's scopes) and is audited
        token = server.auth["Authorization"].removeprefix("Bearer ")
        pid, _ = seed(server.base, server.auth)
        scenarios = [
            ("trivial (ceiling)", f"{ceiling_base}/trivial", None),
            ("read by id", f"{server.base}/Patient/{pid}", None),
            (
                "search with _include",
                f"{server.base}/ServiceRequest?subject=Patient/{pid}&_include=ServiceRequest:subject",
                None,
            ),
            ("create Patient", f"{server.base}/Patient", patient_file),
            ("validate-only (ceiling)", f"{ceiling_base}/validate", core_file),
            ("transaction, 8 entries", f"{server.base}", core_file),
            ("referral pipeline, 8 entries", f"{server.base}", referral_file),
        ]
        if args.only:
            wanted = [w.strip() for w in args.only.split(",") if w.strip()]
            scenarios = [s for s in scenarios if "ceiling" in s[0] or any(w in s[0] for w in wanted)]
        if args.hold:
            print(f"server {server.base} up; measuring in {args.hold}s", file=sys.stderr, flush=True)
            time.sleep(args.hold)
        # the machine is noisy: rounds interleave the scenarios, and each figure is the median round
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in scenarios}
        for round_ in range(1, args.rounds + 1):
            for name, url, body in scenarios:
                print(f"round {round_}/{args.rounds}: {name} for {args.seconds}s ...", file=sys.stderr, flush=True)
                result = run_wrk(url, args.seconds, args.connections, body, None if "ceiling" in name else token)
                if "ceiling" not in name:
                    # the AuditEvents' search index is built later (idle time, or before an AuditEvent
                    # search): build it now, so it neither runs in the next scenario nor goes uncounted
                    result["audit_index_s"] = catch_up_audit_index(server.base, server.auth)
                    seconds = result["rps"] * args.seconds
                    result["rps_with_audit_index"] = seconds / (args.seconds + result["audit_index_s"] / 2)
                runs[name].append(result)
        for name, measured in runs.items():
            results[name] = sorted(measured, key=lambda r: r["rps"])[len(measured) // 2]
    finally:
        stop_server(server)
        ceiling.terminate()

    def ratio(name: str, ceiling: str) -> float:
        return results[name]["rps"] / results[ceiling]["rps"] if name in results else float("nan")

    def ratio_with_index(name: str, ceiling: str) -> float:
        return results[name]["rps_with_audit_index"] / results[ceiling]["rps"] if name in results else float("nan")

    read_ratio = ratio("read by id", "trivial (ceiling)")
    tx_ratio = ratio("transaction, 8 entries", "validate-only (ceiling)")
    pipeline_ratio = ratio("referral pipeline, 8 entries", "validate-only (ceiling)")
    print(
        f"\nDatabase: {db_url.split('://')[0]}; {args.workers} workers x {args.threads} threads; "
        f"{args.connections} connections; median of {args.rounds} interleaved rounds of {args.seconds}s\n"
    )
    print("| scenario | req/s | p50 ms | p99 ms | non-2xx | req/s counting the deferred audit index |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        with_index = f"{r['rps_with_audit_index']:.0f}" if "rps_with_audit_index" in r else "-"
        print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {with_index} |")
    print(
        f"\nread / trivial = {read_ratio:.0%} (target >= 70%); "
        f"transaction / validate-only = {tx_ratio:.0%} (target >= 70%); "
        f"referral pipeline / validate-only = {pipeline_ratio:.0%} (target >= 60%)\n"
        "counting the deferred audit index: "
        f"read {ratio_with_index('read by id', 'trivial (ceiling)'):.0%}, "
        f"transaction {ratio_with_index('transaction, 8 entries', 'validate-only (ceiling)'):.0%}, "
        f"referral pipeline {ratio_with_index('referral pipeline, 8 entries', 'validate-only (ceiling)'):.0%}"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    if args.only:
        return  # a partial run does not replace the full figures
    (out / "latest.json").write_text(
        json.dumps(
            {
                "database": db_url.split("://")[0],
                "results": results,
                "read_ratio": read_ratio,
                "transaction_ratio": tx_ratio,
                "pipeline_ratio": pipeline_ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
