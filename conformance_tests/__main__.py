"""Command line: ``python -m conformance_tests --base-url URL [--token TOKEN] [--only NAME] [--verbose]``."""

from __future__ import annotations

import argparse
import sys

from conformance_tests.runner import Result, all_checks, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance_tests", description=__doc__)
    parser.add_argument("--base-url", help="the FHIR base, e.g. http://127.0.0.1:8080/fhir")
    parser.add_argument("--token", help="sent as 'Authorization: Bearer TOKEN'")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="a check (rest.create), an area (search) or a glob; repeatable"
    )
    parser.add_argument(
        "--exclude", action="append", metavar="NAME", help="leave out a check, area or glob; repeatable"
    )
    parser.add_argument("--verbose", action="store_true", help="also print each check's requests and timing")
    parser.add_argument("--keep", action="store_true", help="leave the data the checks created on the server")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    args = parser.parse_args(argv)

    if args.list:
        for c in all_checks():
            print(f"{c.name:40} {c.description}")
        return 0
    if not args.base_url:
        parser.error("--base-url is required")

    def show(result: Result) -> None:
        print(result.line(), flush=True)
        if args.verbose:
            print(f"    ({result.seconds:.2f} s)")
            for line in result.requests:
                print(f"    {line}")

    report = run(
        args.base_url, token=args.token, only=args.only, exclude=args.exclude, cleanup=not args.keep, on_result=show
    )
    if not report.results:
        print(f"no check matches {args.only}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok and report.results else 1


if __name__ == "__main__":
    sys.exit(main())
