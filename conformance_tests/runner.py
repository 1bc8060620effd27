"""Running the registered checks against a base URL and collecting a Report."""

from __future__ import annotations

import fnmatch
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from conformance_tests.client import Client
from conformance_tests.registry import AREAS, CHECKS, Check, CheckFailed, CheckSkipped

#: An 11-digit number standing alone (fødselsnummer, D-nummer …): shown as its first 6 digits only.
NATIONAL_ID = re.compile(r"(?<![0-9A-Za-z-])(\d{6})\d{5}(?![0-9A-Za-z-])")


def mask_national_ids(text: str) -> str:
    """``text`` with every standalone 11-digit number cut to its first 6 digits (``150385*****``)."""
    return NATIONAL_ID.sub(r"\1*****", text)


@dataclass
class Result:
    """The outcome of one check: status PASS, FAIL or SKIP, with the reason for the last two."""

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    requests: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``PASS name``, ``FAIL name: reason`` or ``SKIP name: reason``."""
        return f"{self.status} {self.name}" + (f": {self.reason}" if self.reason else "")


@dataclass
class Report:
    """All results of a run, in the order the checks ran."""

    results: list[Result] = field(default_factory=list)

    def named(self, status: str) -> list[Result]:
        return [r for r in self.results if r.status == status]

    @property
    def passed(self) -> list[Result]:
        return self.named("PASS")

    @property
    def failed(self) -> list[Result]:
        return self.named("FAIL")

    @property
    def skipped(self) -> list[Result]:
        return self.named("SKIP")

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def result(self, name: str) -> Result:
        return next(r for r in self.results if r.name == name)

    def summary(self) -> str:
        """``N passed, N failed`` (``, N skipped`` when any were skipped)."""
        text = f"{len(self.passed)} passed, {len(self.failed)} failed"
        return text + (f", {len(self.skipped)} skipped" if self.skipped else "")


def all_checks() -> list[Check]:
    """Every registered check, area by area in ``AREAS`` order (importing the check modules registers them)."""
    import conformance_tests.checks  # noqa: F401  (registers the checks)

    def area_rank(c: Check) -> int:
        return AREAS.index(c.area) if c.area in AREAS else len(AREAS)

    return sorted(CHECKS, key=area_rank)


def matches(check: Check, pattern: str) -> bool:
    """True when ``pattern`` is the check's name, its area, or a glob (``search.*``) matching its name."""
    return check.name == pattern or check.area == pattern or fnmatch.fnmatchcase(check.name, pattern)


def select(checks: Iterable[Check], only: Iterable[str] | None, exclude: Iterable[str] | None = None) -> list[Check]:
    """Checks matching one of ``only`` (all when empty) and none of ``exclude``."""
    wanted = [p for p in (only or []) if p]
    unwanted = [p for p in (exclude or []) if p]
    return [
        c
        for c in checks
        if (not wanted or any(matches(c, p) for p in wanted)) and not any(matches(c, p) for p in unwanted)
    ]


def run_check(client: Client, check: Check, cleanup: bool = True) -> Result:
    """Run one check with a clean request log; an unexpected exception is a failure naming it."""
    client.log.clear()
    client.created.clear()
    started = time.monotonic()
    try:
        check.function(client)
        status, reason = "PASS", ""
    except CheckFailed as exc:
        status, reason = "FAIL", str(exc) or "failed"
    except CheckSkipped as exc:
        status, reason = "SKIP", str(exc)
    except Exception as exc:  # a check must never take the run down
        where = traceback.extract_tb(exc.__traceback__)[-1]
        status, reason = "FAIL", f"unexpected {type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
    seconds = time.monotonic() - started
    requests_made = [f"{e.method} {client.short(e.url)} -> {e.status} ({e.seconds * 1000:.0f} ms)" for e in client.log]
    if cleanup:
        client.cleanup()
    return Result(check.name, status, mask_national_ids(" ".join(reason.split())), seconds, requests_made)


def run(
    base_url: str,
    token: str | None = None,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    cleanup: bool = True,
    on_result: Callable[[Result], None] | None = None,
) -> Report:
    """Run the kit (or the checks selected by ``only`` less ``exclude``) against ``base_url``; return the Report."""
    client = Client(base_url, token=token)
    report = Report()
    for check in select(all_checks(), only, exclude):
        result = run_check(client, check, cleanup=cleanup)
        report.results.append(result)
        if on_result:
            on_result(result)
    return report
