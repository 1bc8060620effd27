"""Bulk import speed from an empty database to ``--count`` referrals, slice by slice (is it flat?).

The referrals (bench/scale_data.py: Patient, Condition, ServiceRequest each, and their GP offices and GPs)
are written as ten NDJSON slices of a tenth each, then imported one slice after the other with
``fhir-server import``'s own code (full validation, indexing, the referral intake: routing Task and
Provenance per referral). Printed per slice: lines read and resources stored per second (wall clock), and
the CPU seconds of this process; at the end the totals. ``build_database(url, count)`` is the function the
scale benchmark calls to fill a database.

Run:  python bench/bench_import.py [--count 10000] [--database-url URL] [--batch-size 500] [--seed 1] [--parallel N]
      (default database: a fresh SQLite file in a temporary folder)
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale_data import write_referrals  # noqa: E402
from fhir_server.bulk_import.jobs import latest_job  # noqa: E402
from fhir_server.bulk_import.runner import Importer, ImportOptions  # noqa: E402
from fhir_server.bulk_import.sources import import_files  # noqa: E402
from fhir_server.components import Components, build_server, start_workers  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core.conformance.seed import seed, seed_conformance  # noqa: E402
from fhir_server.core.storage import access  # noqa: E402

SLICES = 10


@dataclass
class Slice:
    number: int
    lines: int
    stored: int
    seconds: float
    cpu: float

    def text(self) -> str:
        return (
            f"slice {self.number:2d}: {self.lines:7d} lines {self.stored:8d} stored in {self.seconds:7.1f} s: "
            f"{self.lines / self.seconds:7.0f} lines/s {self.stored / self.seconds:7.0f} resources/s "
            f"(CPU {self.cpu:6.1f} s)"
        )


_worker: Importer | None = None


def _start_worker(database_url: str, batch_size: int) -> None:
    """A parallel slice process: its own components, built once."""
    global _worker
    server = build_server(load_settings(database_url=database_url))
    _worker = Importer(server, ImportOptions(batch_size=batch_size, progress=False))


def _import_slice(importer: Importer, data: Path, number: int) -> Slice:
    started, cpu = time.monotonic(), time.process_time()
    summary = importer.run([data])
    done = Slice(number, summary.lines, summary.stored, time.monotonic() - started, time.process_time() - cpu)
    print(done.text(), flush=True)
    return done


def _in_worker(data: Path, number: int) -> Slice:
    assert _worker is not None
    return _import_slice(_worker, data, number)


def build_database(
    database_url: str,
    count: int,
    *,
    seed_number: int = 1,
    batch_size: int = 500,
    work: Path | None = None,
    parallel: int = 1,
    numbers: range | None = None,
) -> list[Slice]:
    """Import ``count`` referrals into ``database_url`` in ten slices; returns each slice's figures.

    With ``work`` the slices' NDJSON stay in that folder and a build that stopped (killed, or the machine's
    session over) goes on where it was when run again: a slice whose import completed is skipped, the one
    that was running resumes at its last stored batch (the import's own job record). ``parallel`` > 1 imports
    slices 2 to 10 in that many processes at once (the first, with the GP offices and GPs the others name,
    before them): for PostgreSQL, whose writers do not wait for each other; on SQLite a batch holds the
    database's write lock, so parallel slices only take turns. ``numbers`` (from 1) imports only those
    slices, after the GP offices and GPs when slice 1 is not among them: one part of a set built in several
    databases at once (``bench/join_databases.py`` puts them together)."""
    settings = load_settings(database_url=database_url)
    server = build_server(settings)
    workers = start_workers(server, delivery=False)
    slices: list[Slice] = []
    try:
        seed(server.service)
        seed_conformance(server.service, server.conformance)
        importer = Importer(server, ImportOptions(batch_size=batch_size, progress=False))
        with _slice_folder(work, count, seed_number) as folder:
            chosen = _write_slices(folder, count, seed_number, numbers)
            if numbers is not None and 1 not in numbers:
                chosen.insert(0, (0, _parties_slice(folder, count, seed_number)))
            todo = [(number, data) for number, data in chosen if not _imported(server, data)]
            for number, data in todo[: 1 if parallel > 1 else None]:
                slices.append(_import_slice(importer, data, number))
            if parallel > 1 and todo[1:]:
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(
                    parallel, mp_context=context, initializer=_start_worker, initargs=(database_url, batch_size)
                ) as pool:
                    futures = [pool.submit(_in_worker, data, number) for number, data in todo[1:]]
                    slices += [f.result() for f in futures]
    finally:
        workers.stop()
        server.db.dispose()
    return slices


@contextmanager
def _slice_folder(work: Path | None, count: int, seed_number: int) -> Iterator[Path]:
    """``work``'s folder for these slices (kept), else a temporary one."""
    if work is not None:
        folder = work / f"slices-{count}-seed-{seed_number}"
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory() as temporary:
        yield Path(temporary)


def _write_slices(folder: Path, count: int, seed_number: int, numbers: range | None = None) -> list[tuple[int, Path]]:
    """The slices' numbers (from 1) and folders, each written unless a complete one is there (written aside,
    then renamed); with ``numbers`` only those slices."""
    size = max(1, count // SLICES)
    folders = []
    for number in range(SLICES):
        n = size if number < SLICES - 1 else count - number * size
        if n <= 0:
            break
        if numbers is not None and number + 1 not in numbers:
            continue
        data = _written(folder / f"slice-{number}", n, seed_number, first=1 + number * size, total=count)
        folders.append((number + 1, data))
    return folders


def _parties_slice(folder: Path, count: int, seed_number: int) -> Path:
    """A slice of the GP offices and GPs alone (those the referrals of every slice name)."""
    return _written(folder / "parties", 0, seed_number, first=1, total=count)


def _written(data: Path, n: int, seed_number: int, *, first: int, total: int) -> Path:
    """The folder ``data`` of referrals ``first`` .. ``first + n - 1`` (with the GP offices and GPs when
    ``first`` is 1), written unless a complete one is there (written aside, then renamed)."""
    if not data.exists():
        partial = data.with_name(f"{data.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        write_referrals(partial, n, seed_number, first=first, total=total)
        partial.rename(data)
    return data


def _imported(server: Components, data: Path) -> bool:
    """True when an import of exactly these files completed (a build run again skips the slice)."""
    with access.acting_as(access.SYSTEM):
        done = latest_job(server.store, import_files([data]), "completed") is not None
    if done:
        print(f"{data.name}: imported before", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--database-url")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="processes for slices 2-10 (PostgreSQL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'import.sqlite3'}"
        started = time.monotonic()
        slices = build_database(
            url, args.count, seed_number=args.seed, batch_size=args.batch_size, parallel=args.parallel
        )
        elapsed = time.monotonic() - started
        lines = sum(s.lines for s in slices)
        stored = sum(s.stored for s in slices)
        seconds = sum(s.seconds for s in slices) if args.parallel <= 1 else elapsed
        cpu = sum(s.cpu for s in slices)
        print(
            f"total: {args.count} referrals, {lines} lines, {stored} resources stored in {seconds:.1f} s: "
            f"{lines / seconds:.0f} lines/s, {stored / seconds:.0f} resources/s; CPU {cpu:.1f} s: "
            f"{stored / cpu:.0f} resources per CPU second"
        )


if __name__ == "__main__":
    main()
