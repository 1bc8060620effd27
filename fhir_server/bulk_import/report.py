"""What an import refused (one NDJSON line each: file, line, type/id, the OperationOutcome's issues), and
its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fhir_server.core import jsonio
from fhir_server.core.issues import Issue

#: Refusals named in the printed summary (all of them are in the report file).
SHOWN = 50


@dataclass
class Refusal:
    """One line (or Bundle file) the import did not store, and why."""

    file: str
    line: int | None
    resource_type: str | None
    resource_id: str | None
    issues: list[Issue]

    def as_json(self) -> dict:
        found: dict = {"file": self.file}
        if self.line is not None:
            found["line"] = self.line
        if self.resource_type:
            found["resourceType"] = self.resource_type
        if self.resource_id:
            found["id"] = self.resource_id
        found["issue"] = [i.as_json() for i in self.issues if i.severity in ("fatal", "error")] or [
            i.as_json() for i in self.issues
        ]
        return found

    def text(self) -> str:
        where = f"{Path(self.file).name}" + (f" line {self.line}" if self.line is not None else "")
        what = f" {self.resource_type}/{self.resource_id or '-'}" if self.resource_type else ""
        errors = [i for i in self.issues if i.severity in ("fatal", "error")] or self.issues
        first = errors[0] if errors else None
        at = f" at {first.expression}" if first and first.expression else ""
        return f"{where}{what}: {first.diagnostics if first else 'refused'}{at}"


class RefusalReport:
    """Appends refusals to an NDJSON file (once their batch is committed) and keeps the first for the summary."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.shown: list[str] = []
        self._handle: IO[bytes] | None = None

    def add(self, refusals: list[Refusal]) -> None:
        for refusal in refusals:
            if len(self.shown) < SHOWN:
                self.shown.append(refusal.text())
            if self.path is not None:
                if self._handle is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._handle = self.path.open("ab")
                self._handle.write(jsonio.dumps(refusal.as_json()) + b"\n")
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class ImportSummary:
    """What an import did (this run, and its job over all runs)."""

    job_id: str
    files: int
    lines: int = 0
    stored: int = 0
    refused: int = 0
    #: lines whose stored version had the same content (left as they were)
    unchanged: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: CPU seconds of this process (the figure a busy machine disturbs least)
    cpu_seconds: float = 0.0
    resumed_at: str | None = None
    report_path: Path | None = None

    @property
    def rate(self) -> float:
        """Resources stored per second in this run."""
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        lines = [
            f"import {self.job_id}: {self.files} file(s), {self.lines} line(s) read: "
            f"{self.stored} resource(s) stored, {self.unchanged} unchanged, {self.refused} refused "
            f"({self.seconds:.1f} s, {self.rate:.0f} resources/s; CPU {self.cpu_seconds:.1f} s)"
        ]
        if self.resumed_at:
            lines.append(f"  resumed at {self.resumed_at}")
        lines += [f"  {rtype}: {n}" for rtype, n in sorted(self.by_type.items())]
        lines += [f"  refused: {text}" for text in self.refusals]
        if self.refused > len(self.refusals) or (self.refused and self.report_path):
            lines.append(f"  every refusal: {self.report_path}")
        return "\n".join(lines)
