"""The pathway catalog: PlanDefinitions, ActivityDefinitions, CodeSystems and ValueSets from ``pathways/``.

The catalog is data. Each PlanDefinition's applicability is ``action[0].condition`` (kind
``applicability``, language ``text/fhirpath``); the expressions are compiled once here with the R4
model and reused by :mod:`fhir_server.domain.pathway_suggest`. Loading checks the files enough that
the engine can trust them (ids, urls, related actions, canonical references, FHIRPath syntax) and
reports every problem as an :class:`~fhir_server.core.issues.Issue`.

The legal assessment deadline is data too: the ``deadline-working-days`` extension on each plan's
``referral-assessed`` milestone (:meth:`PathwayCatalog.assessment_working_days`; the ordinary-referral
plan when no pathway is suggested). The ValueSets are code lists the engine reads
(:class:`~fhir_server.domain.pathways.code_lists.CodeList`, e.g. the pregnancy codes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhir_server.core import jsonio
from fhir_server.core.issues import Issue
from fhir_server.data import data_folder
from fhir_server.domain.pathways.code_lists import CodeList, CodeListError
from fhir_server.domain.pathways.fhirpath_memo import memoised, variables_read
from fhir_server.naming import code_system, plan_definition, structure_definition, value_set

#: Extension (project's own) on an action: the deadline is this many working days (not calendar days).
EXT_DEADLINE_WORKING_DAYS = structure_definition("deadline-working-days")
#: Extension (project's own) on an action: an alternative time target for a setting or severity.
EXT_TIMING_VARIANT = structure_definition("timing-variant")
#: Extension (project's own) on a PlanDefinition: order of evaluation and of suggestions (low first).
EXT_SUGGESTION_RANK = structure_definition("suggestion-rank")
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
MILESTONE_SYSTEM = code_system("pathway-milestone")
#: The milestone whose ``deadline-working-days`` is the legal assessment deadline (pbrl. § 2-2).
ASSESSED_MILESTONE = "referral-assessed"
#: The plan of a referral that joins no pathway: its assessment deadline is the fallback.
ORDINARY_REFERRAL = plan_definition("ordinaer-henvisning")
#: The code lists the pregnancy evidence is read with (see :mod:`fhir_server.domain.pathways.suggest`).
PREGNANCY_DIAGNOSES = value_set("pregnancy-diagnoses")
PREGNANCY_STATUS_OBSERVATIONS = value_set("pregnancy-status-observations")
PREGNANCY_STATUS_PREGNANT = value_set("pregnancy-status-pregnant")
PREGNANCY_STATUS_NOT_PREGNANT = value_set("pregnancy-status-not-pregnant")
_REQUIRED_CODE_LISTS = (
    PREGNANCY_DIAGNOSES,
    PREGNANCY_STATUS_OBSERVATIONS,
    PREGNANCY_STATUS_PREGNANT,
    PREGNANCY_STATUS_NOT_PREGNANT,
)
DEFAULT_FOLDER = data_folder("pathways")

_KINDS = ("PlanDefinition", "ActivityDefinition", "CodeSystem", "ValueSet")
#: The variables an applicability condition may read (see pathway_suggest), with sample values for a trial run.
_TRIAL_ENV = {"age": 30, "icd10": ["F200"], "icpc2": ["P72"], "pregnant": False, "gender": "female", "suggested": []}


class PathwayCatalogError(ValueError):
    """The pathway files are not usable; ``issues`` says where and why."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(f"{i.expression}: {i.diagnostics}" for i in issues))
        self.issues = issues


@dataclass(frozen=True)
class Applicability:
    """A PlanDefinition's compiled applicability condition."""

    expression: str
    evaluate: Callable[[Any, dict], list]
    reason_en: str
    reason_nb: str
    #: The expression depends on ``%suggested`` (what other plans suggested), so it runs after them.
    needs_suggested: bool
    #: The variables the expression reads when it reads nothing else (its results are then remembered
    #: by their values, see :mod:`fhir_server.domain.fhirpath_memo`); None when it may read the resource.
    variables: frozenset[str] | None = None


@dataclass
class PathwayCatalog:
    """PlanDefinitions (in suggestion order); ActivityDefinitions, CodeSystems and code lists by canonical url."""

    plans: list[dict] = field(default_factory=list)
    activity_definitions: dict[str, dict] = field(default_factory=dict)
    code_systems: dict[str, dict] = field(default_factory=dict)
    applicability: dict[str, Applicability] = field(default_factory=dict)
    code_lists: dict[str, CodeList] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path = DEFAULT_FOLDER) -> PathwayCatalog:
        """Load every ``PlanDefinition-*.json``, ``ActivityDefinition-*.json``, ``CodeSystem-*.json`` and
        ``ValueSet-*.json``."""
        catalog = cls()
        issues: list[Issue] = []
        plans: list[dict] = []
        for path in sorted(Path(folder).glob("*.json")):
            kind = path.name.split("-", 1)[0]
            if kind not in _KINDS:
                continue
            try:
                resource = jsonio.loads(path.read_bytes())
            except jsonio.JsonError as exc:
                issues.append(Issue("error", "structure", f"{path.name}: {exc}", kind))
                continue
            if resource.get("resourceType") != kind or not resource.get("url"):
                issues.append(Issue("error", "invalid", f"{path.name}: expected a {kind} with a url", kind))
                continue
            if kind == "PlanDefinition":
                plans.append(resource)
            elif kind == "ActivityDefinition":
                catalog.activity_definitions[resource["url"]] = resource
            elif kind == "ValueSet":
                try:
                    catalog.code_lists[resource["url"]] = CodeList.from_value_set(resource)
                except CodeListError as exc:
                    issues.append(Issue("error", "not-supported", f"{path.name}: {exc}", "ValueSet.compose"))
            else:
                catalog.code_systems[resource["url"]] = resource
        for plan in plans:
            issues.extend(catalog._check_plan(plan))
        issues.extend(
            Issue("error", "required", f"the code list {url} is missing", "ValueSet")
            for url in _REQUIRED_CODE_LISTS
            if url not in catalog.code_lists
        )
        if not any(p["url"] == ORDINARY_REFERRAL for p in plans):
            issues.append(Issue("error", "required", f"the plan {ORDINARY_REFERRAL} is missing", "PlanDefinition"))
        if issues:
            raise PathwayCatalogError(issues)
        catalog.plans = sorted(plans, key=lambda p: (_rank(p), p["url"]))
        for plan in catalog.plans:
            catalog.applicability[plan["url"]] = _compile_applicability(plan)
        return catalog

    def plan(self, canonical: str) -> dict:
        """The PlanDefinition for ``url`` or ``url|version``; KeyError when unknown."""
        url, _, version = canonical.partition("|")
        for plan in self.plans:
            if plan["url"] == url and (not version or plan.get("version") == version):
                return plan
        raise KeyError(canonical)

    def activity_definition(self, canonical: str) -> dict | None:
        """The ActivityDefinition for ``url`` or ``url|version``, or None."""
        return self.activity_definitions.get(canonical.partition("|")[0])

    def code_list(self, url: str) -> CodeList:
        """The code list (ValueSet) ``url``; KeyError when unknown."""
        return self.code_lists[url]

    def assessment_working_days(self, url: str | None) -> int:
        """The legal assessment deadline in working days: the ``deadline-working-days`` of the plan's
        ``referral-assessed`` milestone (plan ``url``, or the ordinary-referral plan when None)."""
        return assessment_working_days(self.plan(url or ORDINARY_REFERRAL))

    def _check_plan(self, plan: dict) -> list[Issue]:
        name = plan.get("id") or plan["url"]
        issues: list[Issue] = []

        def problem(expr: str, text: str) -> None:
            issues.append(Issue("error", "invalid", f"PlanDefinition {name}: {text}", f"PlanDefinition.{expr}"))

        if not plan.get("version"):
            problem("version", "has no version")
        top = (plan.get("action") or [None])[0]
        if not isinstance(top, dict):
            problem("action[0]", "has no top-level action")
            return issues
        conditions = [c for c in top.get("condition", []) if c.get("kind") == "applicability"]
        if len(conditions) != 1 or conditions[0].get("expression", {}).get("language") != "text/fhirpath":
            problem("action[0].condition", "needs exactly one applicability condition in text/fhirpath")
        else:
            try:
                # fhirpathpy's parser does not report syntax errors, so a trial run finds them.
                result = fhirpath_compile(conditions[0]["expression"]["expression"], models["r4"])({}, _TRIAL_ENV)
                if len(result) > 1 or any(not isinstance(r, bool) for r in result):
                    problem("action[0].condition[0].expression.expression", f"does not give a boolean: {result}")
            except Exception as exc:  # fhirpathpy raises several exception types
                problem("action[0].condition[0].expression.expression", f"FHIRPath does not run: {exc}")
        milestones = top.get("action", [])
        try:
            assessment_working_days(plan)
        except (KeyError, TypeError, ValueError):
            problem("action[0].action", f"needs a {ASSESSED_MILESTONE} milestone with a whole deadline-working-days")
        ids = [a.get("id") for a in milestones]
        for i, act in enumerate(milestones):
            where = f"action[0].action[{i}]"
            if not act.get("id"):
                problem(f"{where}.id", "milestone action has no id")
            if ids.count(act.get("id")) > 1:
                problem(f"{where}.id", f"milestone id {act.get('id')!r} is used twice")
            if not act.get("code"):
                problem(f"{where}.code", "milestone action has no code")
            for j, rel in enumerate(act.get("relatedAction", [])):
                if rel.get("actionId") not in ids:
                    problem(f"{where}.relatedAction[{j}].actionId", f"names unknown action {rel.get('actionId')!r}")
            canonical = act.get("definitionCanonical")
            if canonical and self.activity_definition(canonical) is None:
                problem(f"{where}.definitionCanonical", f"{canonical} is not in the catalog")
        return issues


def iter_milestones(plan: dict) -> Iterator[dict]:
    """The milestone actions of a plan: the children of the top-level pathway action."""
    yield from plan["action"][0].get("action", [])


def working_days_rule(action: dict) -> int | None:
    """The action's deadline in working days (the project's extension), or None."""
    for ext in action.get("extension", []):
        if ext.get("url") == EXT_DEADLINE_WORKING_DAYS:
            return int(ext["valueInteger"])
    return None


def assessment_working_days(plan: dict) -> int:
    """The plan's ``referral-assessed`` deadline in working days; KeyError when the plan states none."""
    for action in iter_milestones(plan):
        codes = {(c.get("system"), c.get("code")) for c in (action.get("code") or [{}])[0].get("coding", [])}
        if (MILESTONE_SYSTEM, ASSESSED_MILESTONE) in codes:
            days = working_days_rule(action)
            if days is not None:
                return days
    raise KeyError(f"{plan.get('url')} states no {ASSESSED_MILESTONE} deadline in working days")


def pathway_code(plan: dict) -> list[dict]:
    """The top-level action's code (the pathway type, national code first where one exists)."""
    return plan["action"][0].get("code", [])


def _rank(plan: dict) -> int:
    for ext in plan.get("extension", []):
        if ext.get("url") == EXT_SUGGESTION_RANK:
            return int(ext["valueInteger"])
    return 100


def _translation(element: dict | None, lang: str) -> str | None:
    for ext in (element or {}).get("extension", []):
        if ext.get("url") != TRANSLATION:
            continue
        parts = {e["url"]: e for e in ext.get("extension", [])}
        if parts.get("lang", {}).get("valueCode") == lang:
            return parts.get("content", {}).get("valueString")
    return None


def _compile_applicability(plan: dict) -> Applicability:
    expression = plan["action"][0]["condition"][0]["expression"]
    text = expression["expression"]
    reason_en = expression.get("description") or plan.get("title", "")
    evaluate = fhirpath_compile(text, models["r4"])
    variables = variables_read(text, _TRIAL_ENV)
    return Applicability(
        expression=text,
        evaluate=evaluate if variables is None else memoised(evaluate, variables),
        reason_en=reason_en,
        reason_nb=_translation(expression.get("_description"), "nb") or reason_en,
        needs_suggested="%suggested" in text,
        variables=variables,
    )
