"""The legal assessment deadline (pbrl. § 2-2) the intake stamps on a referral, in process on a real store
(a temporary SQLite file, the server's own composition): counted in working days from the Norwegian date
of receipt, ending 23:59:59 Oslo time with that date's offset, and as many working days as the pathway
data says."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from fhir_server.components import Components, build_server
from fhir_server.config import Settings
from fhir_server.core import jsonio
from fhir_server.data import data_folder
from fhir_server.domain.pathways import PathwayCatalog, PathwayCatalogError
from fhir_server.domain.referral.intake import IntakePipeline
from fhir_server.domain.routing.tables import default_tables
from tests.api.test_referral_intake import referral

RECEIVED = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
DEADLINE = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-vurdering"
WORKING_DAYS = "https://fhir.referral-hub.no/StructureDefinition/deadline-working-days"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Components:
    database = tmp_path_factory.mktemp("deadline") / "db.sqlite3"
    return build_server(Settings(database_url=f"sqlite:///{database}", test_mode=True, delivery_worker=False))


def stamps(intake: IntakePipeline, received: str, reason: str | None = None) -> dict[str, str]:
    """Submit a new referral (an adult, ICD-10 F32.1 unless ``reason``) received at ``received``; the
    stored referral's received and deadline stamps."""
    bundle = referral(uuid.uuid4().hex[:12])
    if reason:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] not in ("ServiceRequest", "Condition"):
                continue
            for concept in [*resource.get("reasonCode", []), resource.get("code", {})]:
                for coding in concept.get("coding", []):
                    if coding.get("system") == "urn:oid:2.16.578.1.12.4.1.1.7110":
                        coding.update(code=reason, display=reason)
    result = intake.submit(bundle, received=datetime.fromisoformat(received))
    assert result.status == 201, result.response_bundle
    rtype, _, rid = result.service_request.partition("/")
    stored = jsonio.loads(intake.service.read(rtype, rid).body or b"{}")
    return {e["url"]: e["valueDateTime"] for e in stored["extension"] if e["url"] in (RECEIVED, DEADLINE)}


@pytest.mark.parametrize(
    ("received", "deadline"),
    [
        # Tue 16 June in Norway, still the 15th in UTC: counted from the 16th
        ("2026-06-16T00:30:00+02:00", "2026-06-30T23:59:59+02:00"),
        ("2026-06-15T21:59:59+00:00", "2026-06-29T23:59:59+02:00"),
        # Sunday 29 March 2026, summer time begins at 01:00 UTC: Sunday all night (Easter: 2, 3, 6 April)
        ("2026-03-29T00:59:00+00:00", "2026-04-15T23:59:59+02:00"),
        ("2026-03-29T01:00:00+00:00", "2026-04-15T23:59:59+02:00"),
        ("2026-03-29T02:30:00+00:00", "2026-04-15T23:59:59+02:00"),
        ("2026-03-29T22:00:00+00:00", "2026-04-16T23:59:59+02:00"),  # Monday 00:00 in Norway
        # Sunday 25 October 2026, summer time ends at 01:00 UTC
        ("2026-10-25T00:00:00+00:00", "2026-11-06T23:59:59+01:00"),
        ("2026-10-25T01:30:00+00:00", "2026-11-06T23:59:59+01:00"),
        ("2026-10-25T02:00:00+00:00", "2026-11-06T23:59:59+01:00"),
        ("2026-10-25T23:00:00+00:00", "2026-11-09T23:59:59+01:00"),  # Monday 00:00 in Norway
        # winter: Fri 16 January 00:30 in Norway
        ("2026-01-15T23:30:00+00:00", "2026-01-30T23:59:59+01:00"),
    ],
)
def test_deadline_counts_from_the_norwegian_date(server: Components, received: str, deadline: str) -> None:
    stamped = stamps(server.intake, received)
    assert stamped[DEADLINE] == deadline
    assert datetime.fromisoformat(stamped[RECEIVED]) == datetime.fromisoformat(received)  # the instant, as is


def pathways_copy(tmp_path: Path, working_days: dict[str, int]) -> PathwayCatalog:
    """A catalog from a copy of pathways/ whose plans' referral-assessed deadlines are changed."""
    folder = tmp_path / "pathways"
    shutil.copytree(data_folder("pathways"), folder)
    for plan_id, days in working_days.items():
        path = folder / f"PlanDefinition-{plan_id}.json"
        plan = json.loads(path.read_text(encoding="utf-8"))
        for action in plan["action"][0]["action"]:
            for ext in action.get("extension", []):
                if action["id"] == "referral-assessed" and ext["url"] == WORKING_DAYS:
                    ext["valueInteger"] = days
        path.write_text(json.dumps(plan), encoding="utf-8")
    return PathwayCatalog.load(folder)


def test_the_working_days_come_from_the_suggested_pathways_data(server: Components, tmp_path: Path) -> None:
    received = "2026-06-16T00:30:00+02:00"  # Tuesday; 10 working days: 30 June
    catalog = pathways_copy(tmp_path, {"psykisk-helsevern-voksne": 5, "ordinaer-henvisning": 3})
    intake = IntakePipeline(server.service, catalog, default_tables())
    assert stamps(intake, received)[DEADLINE] == "2026-06-23T23:59:59+02:00"  # F32.1, adult: D11, 5 days
    assert stamps(intake, received, "J45")[DEADLINE] == "2026-06-19T23:59:59+02:00"  # ordinary referral: 3
    assert stamps(server.intake, received)[DEADLINE] == "2026-06-30T23:59:59+02:00"  # the shipped data: 10


def test_the_shortest_deadline_of_several_suggested_pathways(server: Components, tmp_path: Path) -> None:
    catalog = pathways_copy(tmp_path, {"tvangslidelse-ocd": 4, "psykisk-helsevern-voksne": 7})
    intake = IntakePipeline(server.service, catalog, default_tables())
    # F42 suggests OCD and the adult general pathway: the OCD plan's 4 days
    assert stamps(intake, "2026-06-16T00:30:00+02:00", "F42")[DEADLINE] == "2026-06-22T23:59:59+02:00"


def test_without_a_suggestion_the_ordinary_referrals_deadline(tmp_path: Path) -> None:
    assert PathwayCatalog.load().assessment_working_days(None) == 10
    catalog = pathways_copy(tmp_path, {"ordinaer-henvisning": 6})
    assert catalog.assessment_working_days(None) == 6
    assert catalog.assessment_working_days("https://fhir.referral-hub.no/PlanDefinition/tsb") == 10


def test_an_update_is_claimed_and_keeps_its_first_receipt(server: Components) -> None:
    """An update is claimed and stamped again, but the legal clock runs from the first receipt."""
    unique = uuid.uuid4().hex[:12]
    intake = server.intake
    first = intake.submit(referral(unique), received=datetime.fromisoformat("2026-06-16T00:30:00+02:00"))
    again = intake.submit(
        referral(unique), action="update", received=datetime.fromisoformat("2026-10-25T23:00:00+00:00")
    )
    assert (first.status, again.status, again.service_request) == (201, 200, first.service_request)
    rtype, _, rid = again.service_request.partition("/")
    stored = jsonio.loads(intake.service.read(rtype, rid).body or b"{}")
    assert stored["meta"]["profile"] == ["https://fhir.referral-hub.no/StructureDefinition/hub-referral-servicerequest"]
    deadlines = [e["valueDateTime"] for e in stored["extension"] if e["url"] == DEADLINE]
    assert deadlines == ["2026-06-30T23:59:59+02:00"]


def test_a_catalog_without_the_deadline_data_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pathways"
    shutil.copytree(data_folder("pathways"), folder)
    path = folder / "PlanDefinition-tsb.json"
    plan = json.loads(path.read_text(encoding="utf-8"))
    for action in plan["action"][0]["action"]:
        action["extension"] = [e for e in action.get("extension", []) if e["url"] != WORKING_DAYS]
    path.write_text(json.dumps(plan), encoding="utf-8")
    with pytest.raises(PathwayCatalogError, match="tsb: needs a referral-assessed milestone"):
        PathwayCatalog.load(folder)
    (folder / "PlanDefinition-tsb.json").unlink()
    (folder / "PlanDefinition-ordinaer-henvisning.json").unlink()
    with pytest.raises(PathwayCatalogError, match="ordinaer-henvisning is missing"):
        PathwayCatalog.load(folder)


def task_of(intake: IntakePipeline, task_ref: str | None) -> dict:
    assert task_ref is not None
    rtype, _, rid = task_ref.partition("/")
    return jsonio.loads(intake.service.read(rtype, rid).body or b"{}")


def test_the_routing_task_carries_the_referrals_deadline(server: Components) -> None:
    """The same computed instant on the referral and on its routing Task (``Task.restriction.period.end``),
    so a queue of Tasks sorts and filters by it (search parameter ``assessment-deadline`` on Task)."""
    result = server.intake.submit(
        referral(uuid.uuid4().hex[:12]), received=datetime.fromisoformat("2026-06-16T00:30:00+02:00")
    )
    task = task_of(server.intake, result.task)
    assert task["restriction"]["period"]["end"] == "2026-06-30T23:59:59+02:00"
    found = server.service.search_window(
        "Task", [("_id", task["id"]), ("assessment-deadline", "2026-06-30")], with_total=False
    ).matches
    assert [t.id for t in found] == [task["id"]]
    later = server.service.search_window(
        "Task", [("_id", task["id"]), ("assessment-deadline", "lt2026-06-30")], with_total=False
    ).matches
    assert later == []


def test_an_update_that_changes_the_deadline_moves_the_tasks_deadline(server: Components, tmp_path: Path) -> None:
    """The routing stays (same region, same Task), the pathway data gives another deadline: the Task follows."""
    unique = uuid.uuid4().hex[:12]
    received = datetime.fromisoformat("2026-06-16T00:30:00+02:00")
    first = server.intake.submit(referral(unique), received=received)
    assert task_of(server.intake, first.task)["restriction"]["period"]["end"] == "2026-06-30T23:59:59+02:00"
    shorter = IntakePipeline(server.service, pathways_copy(tmp_path, {"psykisk-helsevern-voksne": 5}), default_tables())
    again = shorter.submit(referral(unique), action="update", received=received)
    assert again.task == first.task  # routing unchanged: the region's Task stays, with the new deadline
    task = task_of(server.intake, again.task)
    assert task["restriction"]["period"]["end"] == "2026-06-23T23:59:59+02:00"
    rtype, _, rid = again.service_request.partition("/")
    stored = jsonio.loads(server.service.read(rtype, rid).body or b"{}")
    assert [e["valueDateTime"] for e in stored["extension"] if e["url"] == DEADLINE] == ["2026-06-23T23:59:59+02:00"]
