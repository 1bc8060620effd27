"""Due dates of pathway milestones, from the timing rules carried by the actions themselves.

A milestone action counts from the milestone named in its first ``relatedAction``; its time target is
* the extension ``deadline-working-days`` (valueInteger): that many working days after the base date
  (the legal § 2-2 assessment deadline), counted by :func:`fhir_server.domain.calendar.add_working_days`;
* ``timingDuration`` (calendar days, UCUM ``d`` or ``wk``): the base date plus that many days;
* ``timingTiming.repeat`` (a repeating milestone, e.g. evaluations): the base date plus one period;
* none of these: the base date itself when the relationship is ``concurrent*``, otherwise no due date.
An action without ``relatedAction`` is the anchor (referral received): its date is the received date.

The base date is the predecessor's actual completion date when known, otherwise its due date
(a projection). The same rules work on PlanDefinition actions and on the RequestGroup actions that
:func:`~fhir_server.domain.pathway_apply.apply_plan_definition` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from fhir_server.domain.calendar import add_calendar_days, add_working_days
from fhir_server.domain.pathways.catalog import EXT_TIMING_VARIANT, working_days_rule

_DAYS_PER_UNIT = {"d": 1, "wk": 7}
_SUPPORTED_RELATIONSHIPS = (
    "after-end",
    "after",
    "after-start",
    "concurrent",
    "concurrent-with-start",
    "concurrent-with-end",
)


class ScheduleError(ValueError):
    """A milestone's timing rule cannot be turned into a date."""


def predecessor(action: dict) -> str | None:
    """The id of the milestone this one counts from."""
    related = action.get("relatedAction") or []
    return related[0].get("actionId") if related else None


def resolve_variants(action: dict, variants: Iterable[str]) -> dict:
    """A copy of ``action`` whose timing is replaced by a matching ``timing-variant`` (first match wins)."""
    chosen = set(variants)
    resolved = {k: v for k, v in action.items() if k != "extension"}
    kept = [e for e in action.get("extension", []) if e.get("url") != EXT_TIMING_VARIANT]
    if kept:
        resolved["extension"] = kept
    for ext in action.get("extension", []):
        if ext.get("url") != EXT_TIMING_VARIANT:
            continue
        parts = {e["url"]: e for e in ext.get("extension", [])}
        if parts.get("variant", {}).get("valueCode") in chosen:
            days = _days(parts["duration"]["valueDuration"], action.get("id", "?"))
            if "timingTiming" in action:
                resolved["timingTiming"] = {"repeat": {"frequency": 1, "period": days, "periodUnit": "d"}}
            else:
                resolved["timingDuration"] = {
                    "value": days,
                    "unit": "days",
                    "system": "http://unitsofmeasure.org",
                    "code": "d",
                }
            break
    return resolved


def due_dates(
    actions: list[dict], received: date, completed: Mapping[str, date] | None = None
) -> dict[str, date | None]:
    """Due date of every milestone action by id (None where the milestone has no time target)."""
    by_id = {a["id"]: a for a in actions}
    done = dict(completed or {})
    due: dict[str, date | None] = {}

    def visit(action_id: str, trail: tuple[str, ...]) -> date | None:
        if action_id in due:
            return due[action_id]
        if action_id in trail:
            raise ScheduleError(f"milestones depend on each other in a cycle: {' -> '.join((*trail, action_id))}")
        action = by_id[action_id]
        before = predecessor(action)
        if before is None:
            due[action_id] = received
            return received
        if before not in by_id:
            raise ScheduleError(f"milestone {action_id!r} counts from unknown milestone {before!r}")
        base = done.get(before) or visit(before, (*trail, action_id))
        due[action_id] = None if base is None else _due_after(action, base)
        return due[action_id]

    for action in actions:
        visit(action["id"], ())
    return due


def _due_after(action: dict, base: date) -> date | None:
    relationship = action["relatedAction"][0].get("relationship", "after-end")
    if relationship not in _SUPPORTED_RELATIONSHIPS:
        raise ScheduleError(f"milestone {action.get('id')!r}: relationship {relationship!r} is not supported")
    working = working_days_rule(action)
    if working is not None:
        return add_working_days(base, working)
    if "timingDuration" in action:
        return add_calendar_days(base, _days(action["timingDuration"], action.get("id", "?")))
    repeat = action.get("timingTiming", {}).get("repeat")
    if repeat and repeat.get("period") is not None:
        period = {"value": repeat["period"], "code": repeat.get("periodUnit", "d")}
        return add_calendar_days(base, _days(period, action.get("id", "?")))
    return base if relationship.startswith("concurrent") else None


def _days(quantity: dict, action_id: str) -> int:
    unit = quantity.get("code") or quantity.get("unit")
    if unit not in _DAYS_PER_UNIT:
        raise ScheduleError(f"milestone {action_id!r}: duration unit {unit!r} is not days or weeks")
    value = quantity.get("value")
    if value is None or int(value) != value:
        raise ScheduleError(f"milestone {action_id!r}: duration {value!r} is not a whole number")
    return int(value) * _DAYS_PER_UNIT[unit]
