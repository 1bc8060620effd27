"""Timing of base validation on the 8-entry referral Bundle (not a test; run it by hand).

    .venv/bin/python tests/unit/validation/bench_base_validation.py [iterations]

Prints best-of-5 µs per call for: fhir.resources ``model_validate(dict)`` and
``model_validate_json(bytes)``, our own checks alone (``check_base``), the structure layer, and the
whole ``validate_resource``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.base.structure import check_structure, model_class
from fhir_server.core.validation.base.walk import check_base

BUNDLE_FILE = Path(__file__).resolve().parent / "data" / "referral-bundle.json"


def best_of(fn: Callable[[], object], iterations: int, repeats: int = 5) -> float:
    """Best mean time per call in µs over ``repeats`` runs of ``iterations`` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations * 1e6)
    return best


def main(iterations: int = 300) -> None:
    raw = BUNDLE_FILE.read_bytes()
    compact = jsonio.dumps(jsonio.loads(raw))
    bundle = jsonio.loads(compact)
    plain = jsonio.to_plain(bundle)
    model = model_class("Bundle")
    assert validate_resource(bundle) == []
    rows = {
        "jsonio.loads(bytes)": lambda: jsonio.loads(compact),
        "fhir.resources Bundle.model_validate(dict)": lambda: model.model_validate(bundle),
        "fhir.resources Bundle.model_validate(plain dict, no Decimal)": lambda: model.model_validate(plain),
        "fhir.resources Bundle.model_validate_json(bytes)": lambda: model.model_validate_json(compact),
        "own checks: check_base(dict)": lambda: check_base(bundle),
        "structure layer: check_structure(dict)": lambda: check_structure(bundle),
        "validate_resource(dict)  (both layers)": lambda: validate_resource(bundle),
    }
    print(f"referral Bundle: {len(compact)} bytes, {len(bundle['entry'])} entries; {iterations} calls x 5, best")
    for label, fn in rows.items():
        print(f"  {label:<62} {best_of(fn, iterations):8.0f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
