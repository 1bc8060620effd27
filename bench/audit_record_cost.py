"""What auditing costs a request thread: ``AuditTrail.record`` with the in-memory queue only, with the journal
written (survives ``kill -9``), and with the journal fsynced (survives a power loss); 1 and 8 threads at once.

Run: ``python bench/audit_record_cost.py [directory]`` (the journal goes to a temporary directory by default).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from fhir_server.security.audit import AuditRecord, AuditTrail
from fhir_server.security.audit_journal import AuditJournal
from fhir_server.security.policy import RequestInfo
from fhir_server.security.tokens import Caller


def main() -> None:
    caller = Caller("ehr-a", "EHR A", ("910000001",), None, ("system/*.rs",), 0.0)  # type: ignore[arg-type]
    record = AuditRecord(RequestInfo("read", "Patient", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), caller, 200, "::1")
    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    kinds = {
        "queue only": None,
        "journal, written": AuditJournal(root / "written", fsync=False),
        "journal, fsynced": AuditJournal(root / "fsynced"),
    }
    for label, journal in kinds.items():
        trail = AuditTrail(object(), "bench")  # type: ignore[arg-type]
        trail.journal = journal
        trail._thread = threading.Thread()  # no writer: only the request thread's cost is timed
        for threads in (1, 8):
            times: list[float] = []

            def run(trail: AuditTrail = trail, times: list[float] = times) -> None:
                for _ in range(300):
                    start = time.perf_counter()
                    trail.record(record)
                    times.append(time.perf_counter() - start)

            started = time.perf_counter()
            workers = [threading.Thread(target=run) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - started
            p99 = sorted(times)[int(len(times) * 0.99)]
            print(
                f"{label:18} {threads} thread(s): median {statistics.median(times) * 1e3:.3f} ms, "
                f"p99 {p99 * 1e3:.3f} ms, {len(times) / elapsed:.0f} events/s"
            )


if __name__ == "__main__":
    main()
