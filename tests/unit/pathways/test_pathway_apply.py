"""$apply: every pathway gives a valid R4 CarePlan with the right due dates for a referral received 2026-04-01."""

from __future__ import annotations

import copy
from datetime import date

import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.requestgroup import RequestGroup

from fhir_server.domain.pathways.apply import EXT_MILESTONE_COMPLETED, apply_plan_definition
from fhir_server.domain.pathways.catalog import PathwayCatalog
from fhir_server.domain.pathways.schedule import ScheduleError, due_dates

CATALOG = PathwayCatalog.load()
BASE = "https://fhir.referral-hub.no/PlanDefinition/"
RECEIVED = date(2026, 4, 1)
ROUTINE = {"resourceType": "ServiceRequest", "id": "sr1", "priority": "routine"}
URGENT = {"resourceType": "ServiceRequest", "id": "sr1", "priority": "urgent"}

# Due dates (scheduledPeriod.end) per milestone for a routine outpatient referral received Wed 2026-04-01.
# The legal assessment deadline is 10 working days: 2026-04-20 (Easter 2-6 April). None = no time target.
EXPECTED = {
    "psykisk-helsevern-voksne": {
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-20",
        "first-attendance": None,
        "clinical-decision": None,
        "evaluation": None,
        "closing": None,
    },
    "psykisk-helsevern-barn-og-unge": {
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-20",
        "first-attendance": None,
        "clinical-decision": None,
        "evaluation": None,
        "closing": None,
    },
    "tsb": {
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-20",
        "first-attendance": None,
        "clinical-decision": None,
        "first-evaluation": None,
        "evaluation": None,
        "closing": None,
    },
    "psykoselidelser": {  # first consultation within 7 calendar days of receipt
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-01",
        "first-attendance": "2026-04-08",
        "clinical-decision": None,
        "evaluation": None,
        "closing": None,
    },
    "tvangslidelse-ocd": {  # 42 days to first attendance, then 56 to the decision
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-01",
        "first-attendance": "2026-05-13",
        "clinical-decision": "2026-07-08",
        "evaluation": None,
        "closing": None,
    },
    "spiseforstyrrelser-barn-og-unge": {  # less serious: 28, then 42, 28, 42 days
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "first-attendance": "2026-04-29",
        "pathway-start": "2026-04-29",
        "clinical-decision": "2026-06-10",
        "first-evaluation": "2026-07-08",
        "evaluation": "2026-08-19",
        "closing": None,
    },
    "gravide-og-rusmidler": {
        "referral-received": "2026-04-01",
        "referral-assessed": "2026-04-20",
        "pathway-start": "2026-04-01",
        "first-attendance": None,
        "clinical-decision": None,
        "first-evaluation": None,
        "evaluation": None,
        "closing": None,
    },
    "ordinaer-henvisning": {"referral-received": "2026-04-01", "referral-assessed": "2026-04-20"},
}


# Pathways where the start date is the received date (2019 rule): the start is completed at $apply.
STARTS_ON_RECEIPT = {"psykoselidelser", "tvangslidelse-ocd", "gravide-og-rusmidler"}


def apply(name: str, sr: dict = ROUTINE, **kw) -> tuple[dict, dict]:
    return apply_plan_definition(CATALOG.plan(BASE + name), sr, "Patient/p1", RECEIVED, catalog=CATALOG, **kw)


def due_by_id(careplan: dict) -> dict[str, str | None]:
    return {a["id"]: a["detail"].get("scheduledPeriod", {}).get("end") for a in careplan["activity"] if "detail" in a}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_apply_gives_valid_careplan_with_due_dates(name: str) -> None:
    careplan, request_group = apply(name)
    CarePlan.model_validate(careplan)
    RequestGroup.model_validate(request_group)
    assert due_by_id(careplan) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_careplan_shape(name: str) -> None:
    careplan, request_group = apply(name)
    plan = CATALOG.plan(BASE + name)
    assert careplan["status"] == "active" and careplan["intent"] == "plan"
    assert careplan["instantiatesCanonical"] == [f"{plan['url']}|{plan['version']}"]
    assert careplan["subject"] == {"reference": "Patient/p1"}
    # the pathway start date: received under the 2019 rule (and for the ordinary referral, which has no pathway
    # start); not started yet where the pathway starts at the assessment or the first attendance
    starts_on_receipt = name in STARTS_ON_RECEIPT or name == "ordinaer-henvisning"
    assert careplan.get("period") == ({"start": "2026-04-01"} if starts_on_receipt else None)
    assert careplan["supportingInfo"] == [{"reference": "ServiceRequest/sr1"}]
    assert careplan["contained"] == [request_group]
    assert careplan["activity"][0] == {"reference": {"reference": "#requestgroup"}}
    assert request_group["basedOn"] == [{"reference": "ServiceRequest/sr1"}]
    assert request_group["instantiatesCanonical"] == careplan["instantiatesCanonical"]
    for activity in careplan["activity"][1:]:
        assert "reference" not in activity  # cpl-3: reference or detail, not both
        completed = activity["id"] == "referral-received" or (
            activity["id"] == "pathway-start" and name in STARTS_ON_RECEIPT
        )
        assert activity["detail"]["status"] == ("completed" if completed else "not-started")
        assert activity["detail"]["code"]["coding"][0]["code"]


def test_received_milestone_is_completed_on_the_received_date() -> None:
    careplan, _ = apply("tsb")
    received = careplan["activity"][1]
    assert received["id"] == "referral-received"
    assert {"url": EXT_MILESTONE_COMPLETED, "valueDate": "2026-04-01"} in received["detail"]["extension"]


def test_pathway_type_code_goes_to_category() -> None:
    careplan, _ = apply("psykisk-helsevern-voksne")
    assert careplan["category"][0]["coding"][0] == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.9321",
        "code": "D11",
        "display": "Utredning og behandling i psykisk helsevern, voksne",
    }


def test_serious_variant_from_urgent_priority() -> None:
    careplan, _ = apply("spiseforstyrrelser-barn-og-unge", URGENT)
    assert due_by_id(careplan)["first-attendance"] == "2026-04-08"  # 7 days, not 28
    assert due_by_id(careplan)["clinical-decision"] == "2026-05-20"


def test_inpatient_variant() -> None:
    careplan, request_group = apply("spiseforstyrrelser-barn-og-unge", variants={"inpatient"})
    due = due_by_id(careplan)
    assert due["first-attendance"] == "2026-04-29"  # no inpatient variant for this interval
    assert due["clinical-decision"] == "2026-05-13"  # 14 days
    assert due["first-evaluation"] == "2026-05-27"
    assert due["evaluation"] == "2026-06-10"
    decision = request_group["action"][0]["action"][4]
    assert decision["id"] == "clinical-decision" and decision["timingDuration"]["value"] == 14


def test_request_group_keeps_rules_and_outcomes() -> None:
    _, request_group = apply("tsb")
    actions = {a["id"]: a for a in request_group["action"][0]["action"]}
    assert actions["referral-assessed"]["extension"][0]["valueInteger"] == 10
    assert actions["evaluation"]["timingTiming"]["repeat"]["period"] == 56
    outcomes = [o["code"][0]["coding"][0]["code"] for o in actions["clinical-decision"]["action"]]
    assert "treatment-tsb" in outcomes and len(outcomes) == 7
    assert actions["clinical-decision"]["selectionBehavior"] == "exactly-one"


def test_service_request_reference_without_id() -> None:
    sr = {"resourceType": "ServiceRequest", "identifier": [{"system": "urn:x", "value": "42"}]}
    careplan, _ = apply("ordinaer-henvisning", sr)
    assert careplan["supportingInfo"] == [{"type": "ServiceRequest", "identifier": {"system": "urn:x", "value": "42"}}]
    careplan, _ = apply("ordinaer-henvisning", sr, service_request_ref="urn:uuid:1")
    assert careplan["supportingInfo"] == [{"reference": "urn:uuid:1"}]


def test_due_dates_over_year_end() -> None:
    plan = CATALOG.plan(BASE + "psykoselidelser")
    careplan, _ = apply_plan_definition(plan, ROUTINE, "Patient/p1", date(2026, 12, 22), catalog=CATALOG)
    assert due_by_id(careplan)["referral-assessed"] == "2027-01-07"
    assert due_by_id(careplan)["first-attendance"] == "2026-12-29"


def _milestones(name: str) -> list[dict]:
    return copy.deepcopy(CATALOG.plan(BASE + name)["action"][0]["action"])


def test_schedule_rejects_a_cycle() -> None:
    actions = _milestones("ordinaer-henvisning")
    actions[0]["relatedAction"] = [{"actionId": "referral-assessed", "relationship": "after-end"}]
    with pytest.raises(ScheduleError, match="cycle"):
        due_dates(actions, RECEIVED)


def test_schedule_rejects_unknown_units() -> None:
    actions = _milestones("psykoselidelser")
    actions[3]["timingDuration"] = {"value": 1, "code": "mo"}
    with pytest.raises(ScheduleError, match="not days or weeks"):
        due_dates(actions, RECEIVED)


def test_schedule_counts_from_actual_completion() -> None:
    actions = _milestones("tvangslidelse-ocd")
    due = due_dates(actions, RECEIVED, {"first-attendance": date(2026, 4, 10)})
    assert due["clinical-decision"] == date(2026, 6, 5)  # 56 days after the actual first attendance


#: The general pathways: the pathway starts when the referral is assessed and the right granted (2024 revision).
STARTS_ON_ASSESSMENT = {"psykisk-helsevern-voksne", "psykisk-helsevern-barn-og-unge", "tsb"}


@pytest.mark.parametrize("name", sorted(STARTS_ON_ASSESSMENT))
def test_general_pathways_start_on_the_assessment_date(name: str) -> None:
    from fhir_server.domain.pathways.state import complete_milestone

    careplan, _ = apply(name)
    codes = [c["code"] for c in careplan["category"][0]["coding"]]
    assert codes[0] == {"psykisk-helsevern-voksne": "D11", "psykisk-helsevern-barn-og-unge": "D12", "tsb": "D01"}[name]
    assessed = date(2026, 4, 9)
    done = complete_milestone(careplan, "referral-assessed", assessed)
    start = next(a for a in done["activity"] if a.get("id") == "pathway-start")["detail"]
    assert start["status"] == "completed"
    assert start["extension"][-1]["valueDate"] == "2026-04-09"
    assert done["period"] == {"start": "2026-04-09"}
    # $apply after the assessment gives the same CarePlan
    applied, _ = apply(name, assessed=assessed)
    assert applied["period"] == {"start": "2026-04-09"}
    assert due_by_id(applied) == due_by_id(done)
    assert [a["detail"]["status"] for a in applied["activity"][1:]] == [
        a["detail"]["status"] for a in done["activity"][1:]
    ]
