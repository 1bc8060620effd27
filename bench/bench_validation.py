"""Validation cost, in process: fhir.resources base validation against the server's full validation.

For the 8-entry referral Bundle (tests/data/referral-transaction.json) with the Norwegian profiles
claimed on its resources, and for each resource alone:

* fhir.resources R4B ``model_validate`` (the baseline);
* the server's full validation: fhir.resources plus our base checks (strict JSON, required bindings,
  references, invariants), Norwegian identifier check digits, and the claimed profiles.

Run:  python bench/bench_validation.py [--rounds 200] [--runs 7]   (best of --runs runs of --rounds calls, in ms)

The baseline and the full validation are timed in alternating runs, so that a change of machine load
during the benchmark affects both numbers of a row alike (their ratio is what the target is about).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B import get_fhir_model_class  # noqa: E402

from fhir_server.components import build_conformance, build_validators  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core import jsonio  # noqa: E402
from fhir_server.domain.referral.intake import PROFILES  # noqa: E402

SHARED = ROOT.parent / "shared" / "reference"


def _run_ms(call, rounds: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(rounds):
        call()
    return (time.perf_counter() - start) / rounds * 1000


def best_ms(call, rounds: int, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Best mean ms per call over ``runs`` runs of ``rounds`` calls."""
    return min(_run_ms(call, rounds) for _ in range(runs))


def best_pair_ms(first, second, rounds: int, runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """:func:`best_ms` of two calls, their runs alternating (first, second, first, ...)."""
    a, b = [], []
    for _ in range(runs):
        a.append(_run_ms(first, rounds))
        b.append(_run_ms(second, rounds))
    return min(a), min(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from fhir_server.core.validation.profile.validator import ProfileValidator

    ig = [str(SHARED / "no-basis")] if (SHARED / "no-basis").is_dir() else []
    settings = load_settings(database_url="sqlite://", ig_paths=ig)
    profiles = ProfileValidator(build_conformance(settings), unknown_claim_severity="warning")
    validators = build_validators(settings, profiles)
    bundle = jsonio.loads((ROOT / "tests" / "data" / "referral-transaction.json").read_bytes())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in PROFILES:
            resource.setdefault("meta", {})["profile"] = [PROFILES[resource["resourceType"]]]
    plain = jsonio.to_plain(bundle)
    model = get_fhir_model_class("Bundle")

    def full(resource: dict) -> None:
        for validator in validators:
            validator(resource)

    issues = [i for v in validators for i in v(bundle) if i.severity in ("error", "fatal")]
    assert not issues, issues
    rows = []
    base, ours = best_pair_ms(lambda: model.model_validate(plain), lambda: full(bundle), args.rounds, args.runs)
    rows.append(("Bundle, 8 entries", base, ours))
    for entry in bundle["entry"]:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        cls = get_fhir_model_class(rtype)
        plain_one = jsonio.to_plain(resource)
        rows.append(
            (
                rtype,
                *best_pair_ms(
                    lambda c=cls, p=plain_one: c.model_validate(p), lambda r=resource: full(r), args.rounds, args.runs
                ),
            )
        )
    print("Full validation of the Bundle, by part:")
    for validator in validators:
        name = getattr(validator, "__name__", str(validator))
        print(f"  {name}: {best_ms(lambda v=validator: v(bundle), args.rounds, args.runs):.2f} ms")
    from fhir_server.core.validation.base.walk import check_base

    print(
        f"  (of validate_resource, our own checks beyond fhir.resources: "
        f"{best_ms(lambda: check_base(bundle), args.rounds, args.runs):.2f} ms)\n"
    )
    print("| what | fhir.resources ms | full validation ms | ratio |")
    print("|---|---|---|---|")
    for name, b, o in rows:
        print(f"| {name} | {b:.2f} | {o:.2f} | {o / b:.2f} |")


if __name__ == "__main__":
    main()
