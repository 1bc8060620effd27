"""Problems found while handling a request, and the OperationOutcome that reports them.

Everything below the HTTP edge reports problems as :class:`Issue` values and raises
:class:`FhirError` to refuse a request; the edge turns that into an OperationOutcome with the
HTTP status the FHIR specification asks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fhir_server.core.text import clean
from fhir_server.naming import code_system


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what is wrong, where (a FHIRPath expression), and how bad."""

    severity: str  # fatal | error | warning | information
    code: str  # OperationOutcome issue type: invalid, structure, required, value, invariant, not-found ...
    diagnostics: str
    expression: str | None = None
    #: Norwegian (bokmål) wording of ``diagnostics`` where one exists.
    diagnostics_nb: str | None = None
    #: Optional rule identifier (e.g. ``ele-1`` or ``no-fnr-checksum``) for machines and tests.
    rule: str | None = None

    def as_json(self, language: str = "en") -> dict:
        text = self.diagnostics_nb if language == "nb" and self.diagnostics_nb else self.diagnostics
        item: dict = {"severity": self.severity, "code": self.code, "diagnostics": clean(text)}
        if self.expression:
            item["expression"] = [clean(self.expression)]
        if self.rule:
            item["details"] = {"coding": [{"system": RULE_SYSTEM, "code": self.rule}]}
        return item

    def at(self, prefix: str) -> Issue:
        """The same issue, its expression re-rooted under ``prefix`` (e.g. ``Bundle.entry[2].resource``)."""
        expr = self.expression or ""
        dot = expr.find(".")
        tail = expr[dot:] if dot >= 0 else ""
        return Issue(self.severity, self.code, self.diagnostics, prefix + tail, self.diagnostics_nb, self.rule)


#: Code system of the project's own for validation rule identifiers (not a national code system).
RULE_SYSTEM = code_system("validation-rule")


def is_error(issue: Issue) -> bool:
    return issue.severity in ("error", "fatal")


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(is_error(i) for i in issues)


#: Issue codes that mean the content could not be read as FHIR at all (400, not 422).
UNREADABLE_CODES = frozenset({"structure", "not-supported", "too-costly"})


def refusal_status(issues: Iterable[Issue]) -> int:
    """400 when the content is unreadable as FHIR, 422 when it is FHIR that breaks rules."""
    errors = [i for i in issues if is_error(i)]
    return 400 if any(i.code in UNREADABLE_CODES for i in errors) else 422


def operation_outcome(issues: Iterable[Issue], language: str = "en") -> dict:
    """Build an OperationOutcome; an empty list yields the customary 'All OK' information issue."""
    items = [i.as_json(language) for i in issues]
    if not items:
        items = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": items}


@dataclass
class FhirError(Exception):
    """A refusal: an HTTP status plus the issues that explain it."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # pragma: no cover - for logs
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    @classmethod
    def single(
        cls,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        *,
        diagnostics_nb: str | None = None,
    ) -> FhirError:
        return cls(status, [Issue("error", code, diagnostics, expression, diagnostics_nb)])


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError.single(
        404,
        "not-found",
        f"Resource {resource_type}/{resource_id} is not known",
        diagnostics_nb=f"Ressursen {resource_type}/{resource_id} finnes ikke",
    )
