"""The web app's work on the core, in-process on a real SQLite database: a region sees and changes only its
own referrals, a stale form is refused, and the deadline arithmetic counts Norwegian working days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.access import Access, org_label, region_label
from fhir_server.web.worklist import Person, Worklist, task_status, task_warnings, working_days_left
from tests.browser.referrals import referral_bundle

HELSE_VEST = "983658725"
HELSE_NORD = "883658752"


def region_access(orgnr: str) -> Access:
    labels = frozenset({org_label(orgnr), region_label(orgnr)})
    return Access(labels, labels, name=f"person of {orgnr}")


@pytest.fixture(scope="module")
def worklist(tmp_path_factory: pytest.TempPathFactory) -> Worklist:
    from fhir_server.components import build_server
    from fhir_server.config import load_settings
    from fhir_server.core.conformance.seed import seed

    folder: Path = tmp_path_factory.mktemp("worklist")
    settings = load_settings(
        database_url=f"sqlite:///{folder / 'db.sqlite3'}",
        auth_mode="development",
        dev_key_path=str(folder / "key.json"),
        delivery_worker=False,
    )
    components = build_server(settings)
    with access.acting_as(access.SYSTEM):
        seed(components.service)
        for n, (family, municipality) in enumerate([("Vest", "4601"), ("Nord", "5501"), ("Ukjent", None)]):
            components.intake.submit(referral_bundle(n, family, municipality))
    return Worklist(components.service, components.intake.tables, components.pathways)


def test_a_region_sees_its_own_queue_only(worklist: Worklist) -> None:
    vest = worklist.tables.organizations[HELSE_VEST]
    with access.acting_as(region_access(HELSE_VEST)):
        rows = worklist.queue(vest).rows
        assert [r.patient for r in rows] == ["Ola Vest"]
        assert rows[0].health_trust == "Helse Bergen HF" and rows[0].deadline is not None
        assert worklist.triage().rows == []  # unroutable referrals belong to no region yet
    with access.acting_as(region_access(HELSE_NORD)):
        assert worklist.queue(vest).rows == []  # asking for another region's queue shows nothing


def test_a_region_cannot_act_on_another_regions_referral(worklist: Worklist) -> None:
    vest = worklist.tables.organizations[HELSE_VEST]
    with access.acting_as(access.SYSTEM):
        row = worklist.queue(vest).rows[0]
    nord = Person("Nora Nord", "nord", HELSE_NORD)
    with access.acting_as(region_access(HELSE_NORD)), pytest.raises(FhirError) as refused:
        worklist.accept(row.task_id, row.task_version, nord, "2")
    assert refused.value.status == 404


def test_a_stale_form_is_refused_and_the_first_action_stands(worklist: Worklist) -> None:
    vest = worklist.tables.organizations[HELSE_VEST]
    kari = Person("Kari", "kari", HELSE_VEST)
    with access.acting_as(region_access(HELSE_VEST)):
        row = worklist.queue(vest).rows[0]
        worklist.reject(row.task_id, row.task_version, kari, "Ikke rett til helsehjelp")
        with pytest.raises(FhirError) as stale:
            worklist.accept(row.task_id, row.task_version, kari, "2")
        assert stale.value.status == 412
        rejected = worklist.queue(vest, status="rejected").rows
    assert [r.task_id for r in rejected] == [row.task_id] and rejected[0].status == "rejected"


def test_routing_by_hand_refuses_a_health_trust_of_another_region(worklist: Worklist) -> None:
    admin = Person("Ada Admin", "ada", HELSE_VEST, admin=True)
    with access.acting_as(access.SYSTEM):
        (row,) = worklist.triage().rows
        with pytest.raises(FhirError):
            worklist.route(row.task_id, row.task_version, admin, HELSE_NORD, "983974724")  # Helse Bergen HF
        worklist.route(row.task_id, row.task_version, admin, HELSE_NORD, None)
        assert worklist.triage().rows == []
    with access.acting_as(region_access(HELSE_NORD)):
        assert {r.patient for r in worklist.queue(worklist.tables.organizations[HELSE_NORD]).rows} == {
            "Ola Nord",
            "Ola Ukjent",
        }


def test_working_days_left_skip_weekends_and_holidays() -> None:
    assert working_days_left(date(2026, 12, 24), date(2026, 12, 28)) == 1  # 25th, 26th holidays; weekend
    assert working_days_left(date(2026, 12, 28), date(2026, 12, 24)) == -1
    assert working_days_left(date(2026, 12, 28), date(2026, 12, 28)) == 0
    assert working_days_left(date(2026, 12, 28), None) is None


def test_a_forwarded_task_reads_as_forwarded() -> None:
    forwarded = {"status": "requested", "businessStatus": {"coding": [{"code": "3"}]}}
    assert task_status(forwarded) == "forwarded"
    assert task_status({"status": "accepted"}) == "accepted"


def test_the_intakes_warnings_kept_on_the_task_are_listed() -> None:
    task = {
        "contained": [
            {"resourceType": "OperationOutcome", "id": "validation-warnings", "issue": [{"diagnostics": "HPR check"}]}
        ]
    }
    assert task_warnings(task) == ["HPR check"]
    assert task_warnings({}) == []


def test_the_queue_puts_the_earliest_deadline_first_and_pages(
    own_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Received 2, 40 and 25 days ago (in that order of creation): the queue shows the one past its deadline
    longest first, then the other past it, then the one still in time; two a page, the next page known
    without counting (both databases)."""
    from fhir_server.components import build_server
    from fhir_server.config import load_settings
    from fhir_server.core.conformance.seed import seed
    from fhir_server.web import worklist as module

    settings = load_settings(
        database_url=own_database,
        auth_mode="development",
        dev_key_path=str(tmp_path / "key.json"),
        delivery_worker=False,
    )
    components = build_server(settings)
    now = datetime.now(UTC)
    with access.acting_as(access.SYSTEM):
        seed(components.service)
        for n, (family, days_ago) in enumerate([("Nylund", 2), ("Gammelstad", 40), ("Midtre", 25)]):
            received = now - timedelta(days=days_ago)
            assert components.intake.submit(referral_bundle(20 + n, family, "4601"), received=received).status == 201
    worklist = Worklist(components.service, components.intake.tables, components.pathways)
    vest = worklist.tables.organizations[HELSE_VEST]
    monkeypatch.setattr(module, "PAGE_SIZE", 2)
    with access.acting_as(region_access(HELSE_VEST)):
        first = worklist.queue(vest)
        second = worklist.queue(vest, page=2)
        overdue = worklist.queue(vest, overdue=True)
    assert [r.patient for r in first.rows + second.rows] == ["Ola Gammelstad", "Ola Midtre", "Ola Nylund"]
    assert (first.has_next, second.has_next) == (True, False)
    assert first.rows[0].overdue and first.rows[0].days_left is not None and first.rows[0].days_left < 0
    assert [r.patient for r in overdue.rows] == ["Ola Gammelstad", "Ola Midtre"]
    assert not second.rows[0].overdue
