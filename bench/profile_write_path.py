"""In-process cost of the write path, without HTTP: where a transaction and a referral spend their time.

Times, per call, on a fresh SQLite file (synchronous=FULL, as the server runs):
  (a) validate     fhir.resources R4B ``Bundle.model_validate`` of the 8-entry Bundle (the ceiling's work)
  (b) transaction  ``BundleProcessor.process`` of the same Bundle as a plain FHIR transaction
                   (the ServiceRequest not categorised as a referral, as bench/run_bench.py sends it)
  (c) intake       ``IntakePipeline.submit`` of the Bundle as a referral
  (v) full validation  what every write checks, without storing: ``FhirService.validate`` of the
                   Bundle of (b) (fhir.resources, strict JSON, bindings, invariants, identifiers, profiles)
  (s) storage      (b) without its validation: the 8 resources, their versions and search index rows
                   in one write transaction, committed (``BundleProcessor._transaction``)
(a), (v) and (s) are the parts of the bound in the README: (b) costs at least (v) + (s), against (a).

Every round gets its own referral identifier and patient fødselsnummer, so nothing is answered as a
duplicate. Practitioners and organisations keep their national identifiers: the plain transactions (b)
store copies of them (warm-up runs every scenario), so in (c) their conditional creates match several
resources and are stored anew, as in bench/run_bench.py, where (b) runs before (c) on one database.
The pathway conditions' results are remembered by the values they read (fhir_server.domain.fhirpath_memo):
the patients' ages repeat, so after the first rounds (c) mostly finds them remembered; a referral whose
age and codes are new costs about 2 ms CPU more (8 fhirpathpy evaluations).

Run:  python bench/profile_write_path.py [--rounds 100] [--repeat 3] [--profile a|b|c] [--top 30]
Prints the best of ``--repeat`` runs of ``--rounds`` calls, in ms per call (wall clock, and CPU time of
this process: steadier when the machine is busy); with ``--profile`` a
cProfile of one more run of that scenario (top ``--top`` functions by cumulative and by own time).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B.bundle import Bundle  # noqa: E402

from fhir_server.components import Components, build_server, start_workers  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core import jsonio  # noqa: E402
from fhir_server.core.bundles.transaction import BundleProcessor  # noqa: E402
from fhir_server.core.conformance.seed import seed, seed_conformance  # noqa: E402
from fhir_server.core.storage import access  # noqa: E402
from tests.api.fhirhttp import fnr  # noqa: E402

BUNDLE = ROOT / "tests" / "data" / "referral-transaction.json"
SHARED = ROOT.parent / "shared" / "reference"
PLAIN_CATEGORY = "409063005"  # a ServiceRequest category that is not "patient referral"


class Bundles:
    """The test Bundle with a fresh referral identifier and patient for every call."""

    def __init__(self) -> None:
        self.template = jsonio.loads(BUNDLE.read_bytes())
        self.plain_text = BUNDLE.read_bytes()
        self.counter = count(1)
        self.prefix = str(os.getpid()) + str(int(time.time()))

    def referral(self) -> dict:
        n = next(self.counter)
        bundle = copy.deepcopy(self.template)
        birth = f"{1950 + n % 50}-{1 + (n // 50) % 12:02d}-{1 + (n // 600) % 28:02d}"
        patient = bundle["entry"][0]["resource"]
        patient["identifier"][0]["value"] = fnr(birth, f"{n:x}")
        patient["birthDate"] = birth
        bundle["entry"][5]["resource"]["identifier"][0]["value"] = f"henv-{self.prefix}-{n}"
        return bundle

    def transaction(self) -> dict:
        bundle = self.referral()
        bundle["entry"][5]["resource"]["category"][0]["coding"][0]["code"] = PLAIN_CATEGORY
        return bundle


def build(db_path: Path) -> Components:
    """The server as ``fhir-server serve`` prepares it: IG packages loaded, data folders stored."""
    ig = [str(SHARED / name) for name in ("no-basis", "helsenorge-fhir") if (SHARED / name).is_dir()]
    settings = load_settings(database_url=f"sqlite:///{db_path}", ig_paths=ig, delivery_worker=False)
    server = build_server(settings)
    start_workers(server, delivery=False)  # the WAL checkpointer, as every server process runs one
    seed(server.service)
    seed_conformance(server.service, server.conformance)
    return server


def scenarios(server: Components, bundles: Bundles) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Each scenario: (prepare the input, not timed) and (the timed call on that input)."""
    held: dict[str, object] = {}
    processor = BundleProcessor(server.service, server.settings.max_bundle_entries)

    def store_only() -> object:
        return processor._transaction(held["s"], None)  # type: ignore[arg-type]

    def keep(name: str, make: Callable[[], object]) -> Callable[[], object]:
        def prepare() -> object:
            held[name] = make()
            return held[name]

        return prepare

    return {
        "a": (keep("a", lambda: bundles.plain_text), lambda: Bundle.model_validate_json(held["a"])),  # type: ignore[arg-type]
        "b": (
            keep("b", bundles.transaction),
            lambda: BundleProcessor(server.service, server.settings.max_bundle_entries).process(held["b"]),
        ),
        "c": (keep("c", bundles.referral), lambda: server.intake.submit(held["c"])),  # type: ignore[arg-type]
        "v": (keep("v", bundles.transaction), lambda: server.service.validate(held["v"])),
        "s": (keep("s", lambda: processor._parse_entries(bundles.transaction()["entry"])[0]), store_only),
    }


NAMES = {
    "a": "fhir.resources Bundle.model_validate",
    "b": "transaction (BundleProcessor)",
    "c": "referral intake",
    "v": "full validation, no storage",
    "s": "storage only, no validation",
}


def time_ms(prepare: Callable[[], object], call: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds per call (CPU time is steadier on a busy machine)."""
    wall = cpu = 0.0
    for _ in range(rounds):
        prepare()
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return wall / rounds * 1000, cpu / rounds * 1000


def profile(prepare: Callable[[], object], call: Callable[[], object], rounds: int, top: int) -> None:
    profiler = cProfile.Profile()
    for _ in range(rounds):
        prepare()
        profiler.enable()
        call()
        profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    for key in ("cumulative", "tottime"):
        print(f"\n--- top {top} by {key} ({rounds} calls) ---")
        stats.sort_stats(key).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the best is reported")
    parser.add_argument("--only", default="abcvs", help="scenarios to time, e.g. bc")
    parser.add_argument("--profile", choices=list(NAMES), help="cProfile one more run of this scenario")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    # in process, as the server's own work: unrestricted, as an administrator's request is
    with tempfile.TemporaryDirectory(prefix="fhir-profile-") as work, access.acting_as(access.SYSTEM):
        server = build(Path(work) / "profile.sqlite3")
        bundles = Bundles()
        runs = scenarios(server, bundles)
        for prepare, call in runs.values():  # warm up: first-call caches, page cache, the RHF lookups
            for _ in range(5):
                prepare()
                call()
        for key in args.only:
            prepare, call = runs[key]
            runs_ms = [time_ms(prepare, call, args.rounds) for _ in range(args.repeat)]
            wall, cpu = min(r[0] for r in runs_ms), min(r[1] for r in runs_ms)
            print(
                f"({key}) {NAMES[key]:<38} {wall:7.2f} ms/call wall {cpu:7.2f} ms/call CPU"
                f"  (best of {args.repeat} x {args.rounds})"
            )
        if args.profile:
            profile(*runs[args.profile], args.rounds, args.top)
        server.db.dispose()


if __name__ == "__main__":
    main()
