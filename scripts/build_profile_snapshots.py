"""Write a generated snapshot into each StructureDefinition under ``profiles/`` (differential kept).

The project's profiles build on R4 core and on HL7 Norway's no-basis 2.2.2 (differential-only
files), so the no-basis conformance resources must be available as a folder or FHIR package.

Run:   python scripts/build_profile_snapshots.py [--no-basis DIR_OR_TGZ] [--check]
``--check`` writes nothing and exits 1 when a stored snapshot differs from a fresh generation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.core.conformance.packages import PROFILES_DIR, ConformanceRegistry  # noqa: E402
from fhir_server.core.validation.profile.snapshot import generate_snapshot, strip_documentation, with_snapshot  # noqa: E402

DEFAULT_NO_BASIS = ROOT.parent / "shared" / "reference" / "no-basis"


def build_registry(no_basis: Path, profiles_dir: Path = PROFILES_DIR) -> ConformanceRegistry:
    registry = ConformanceRegistry()
    is_package = no_basis.suffix in (".tgz", ".gz")
    problems = registry.load_package(no_basis) if is_package else registry.load_folder(no_basis)
    problems += registry.load_folder(profiles_dir)
    for problem in problems:
        print(f"note: {problem.source}: {problem.message}", file=sys.stderr)
    return registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-basis", type=Path, default=DEFAULT_NO_BASIS, help="no-basis folder or package .tgz")
    parser.add_argument("--profiles", type=Path, default=PROFILES_DIR)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    if not args.no_basis.exists():
        print(f"no-basis definitions not found at {args.no_basis}", file=sys.stderr)
        return 2
    registry = build_registry(args.no_basis, args.profiles)
    stale = 0
    for file in sorted(args.profiles.glob("StructureDefinition-*.json")):
        sd = json.loads(file.read_text(encoding="utf-8"))
        if args.check:
            fresh = strip_documentation(generate_snapshot(sd, registry))
            if sd.get("snapshot", {}).get("element") != fresh:
                print(f"stale snapshot: {file.name}")
                stale += 1
            continue
        warnings: list[str] = []
        updated = with_snapshot(sd, registry, warnings)
        file.write_text(json.dumps(updated, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {file.name}: {len(updated['snapshot']['element'])} snapshot elements")
        for warning in warnings:
            print(f"  note: {warning}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
