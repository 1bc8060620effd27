"""A page costs what it holds, not what the search matches: the database work of a first page, a later
page and an estimated total stays flat when the matches grow tenfold (SQLite's virtual-machine steps,
counted with its progress handler: a count of work done, not a timing). The pages are also checked for
what they hold, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import event, insert

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.search.engine import PagingLimits
from fhir_server.core.storage import access, combo_index, statistics
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import (
    access_labels,
    idx_date,
    idx_reference,
    idx_token,
    resource_versions,
    resources,
)
from fhir_server.core.storage.store import Store
from tests.conftest import BACKENDS, database_url

VEST, NORD, TRIAGE = "983658725", "883658752", "999999999"
RHF = "urn:oid:2.16.578.1.12.4.1.4.101"
PULL = f"owner:Organization.identifier={RHF}|{VEST}&status=requested&_include=Task:focus"
REGION = access.Access(labels=frozenset({access.region_label(VEST)}), name="helse-vest")


def fill(service: FhirService, referrals: int, open_newest: int | None = None) -> None:
    """``referrals`` ServiceRequests with their Tasks, straight into the tables (ids in creation order), the
    combo index rows built from them as for a database of an earlier version: every tenth Task requested,
    the regions taking turns, one authored date a referral, later ones later. With ``open_newest``: only the
    newest ``open_newest`` Tasks of the regions are still requested, the older ones settled, but for every
    tenth, requested in the hub's manual triage (which no region sees)."""
    res, versions, tokens, refs, dates, labels = [], [], [], [], [], []
    for org in (VEST, NORD, TRIAGE):
        rid = f"rhf-{org}"
        res.append({"res_type": "Organization", "res_id": rid})
        tokens.append({"res_type": "Organization", "res_id": rid, "param": "identifier", "system": RHF, "code": org})
    for n in range(referrals):
        region = (VEST, NORD)[n % 2]
        sr, task = f"{n:08d}-sr", f"{n:08d}-task"
        when = f"2025-{1 + n * 12 // referrals:02d}-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
        status = "requested" if n % 10 == 0 else "accepted"
        if open_newest is not None:
            status = "requested" if n >= referrals - open_newest or n % 10 == 5 else "accepted"
            region = TRIAGE if n % 10 == 5 and n < referrals - open_newest else region
        for rtype, rid in (("ServiceRequest", sr), ("Task", task)):
            res.append({"res_type": rtype, "res_id": rid})
            if region != TRIAGE:
                labels.append({"res_type": rtype, "res_id": rid, "label": access.region_label(region)})
        tokens.append({"res_type": "Task", "res_id": task, "param": "status", "system": None, "code": status})
        refs.append(
            {
                "res_type": "Task",
                "res_id": task,
                "param": "owner",
                "target_type": "Organization",
                "target_id": f"rhf-{region}",
            }
        )
        refs.append(
            {"res_type": "Task", "res_id": task, "param": "focus", "target_type": "ServiceRequest", "target_id": sr}
        )
        dates.append({"res_type": "ServiceRequest", "res_id": sr, "param": "authored", "low": when, "high": when})
    for row in res:
        row.update(version_id=1, last_updated="2025-01-01T00:00:00Z", deleted=False, body='{"x":1}')
        versions.append({**row, "method": "POST"})
    with service.store.db.write.begin() as conn:
        for table, rows in (
            (resources, res),
            (resource_versions, versions),
            (idx_token, tokens),
            (idx_reference, refs),
            (idx_date, dates),
            (access_labels, labels),
        ):
            conn.execute(insert(table), rows)
        for combo in service.store.registry.combos("Task"):
            combo_index.build(conn, combo)


def _databases(
    backend: str, tmp_path: Path, open_newest: int | None = None
) -> Iterator[tuple[str, FhirService, FhirService]]:
    """A database and a ten times larger one of the same shape (both beyond the engine's sizing bounds)."""
    made = []
    for size in (3000, 30000):
        url = database_url(backend, tmp_path, f"db-{size}.sqlite3")
        service = FhirService(Store(open_database(url), build_search_registry()))
        service.engine.limits = PagingLimits(count_bound=100)
        fill(service, size, open_newest)
        statistics.refresh(service.store)  # as the import does after loading, and the server now and then
        made.append(service)
    yield backend, made[0], made[1]
    for service in made:
        service.store.db.dispose()


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FhirService, FhirService]]:
    yield from _databases(request.param, tmp_path)


@pytest.fixture(params=BACKENDS)
def settled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, FhirService, FhirService]]:
    """As :func:`databases`, but the newest 100 Tasks of the regions open and the others settled (in manual
    triage every tenth): the settled Tasks outnumber the open ones 27 to 1, then 270 to 1."""
    yield from _databases(request.param, tmp_path, open_newest=100)


class Steps:
    """Counts SQLite virtual-machine steps on every connection of an engine (in thousands)."""

    def __init__(self, service: FhirService) -> None:
        self.thousands = 0
        if service.store.db.is_sqlite:
            service.store.db.read.pool.dispose()
            event.listen(service.store.db.read, "connect", self._install)
            event.listen(service.store.db.write, "connect", self._install)
            service.store.db.write.pool.dispose()

    def _install(self, dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.set_progress_handler(self._step, 1000)

    def _step(self) -> int:
        self.thousands += 1
        return 0

    def measure(self, call) -> int:  # type: ignore[no-untyped-def]
        before = self.thousands
        call()
        return self.thousands - before


def first_and_next(service: FhirService, query: str, as_who: access.Access):  # type: ignore[no-untyped-def]
    with access.acting_as(as_who):
        rtype, _, params = query.partition("?")
        request, page = service.search(rtype, parse_qsl(params))
        later = service.engine.page(page.search_id, page.next.encode(), request.count, request) if page.next else None
    return page, later


QUERIES = {
    "regional pull": (f"Task?{PULL}", REGION),
    "pull, administrator": (f"Task?{PULL}", access.SYSTEM),
    "sorted by a date, newest first": ("ServiceRequest?authored=ge2025-02-01&_sort=-authored", REGION),
    "estimated total": ("Task?status=accepted&_total=estimate", access.SYSTEM),
    "_has": ("ServiceRequest?_has:Task:focus:status=accepted", REGION),
    "one match": ("Task?focus=ServiceRequest/00000010-sr&status=requested", access.SYSTEM),
}


@pytest.mark.parametrize("name", QUERIES)
def test_a_page_costs_what_it_holds(databases, name: str) -> None:  # type: ignore[no-untyped-def]
    backend, small, large = databases
    query, who = QUERIES[name]
    costs = []
    for service in (small, large):
        steps = Steps(service)
        costs.append(steps.measure(lambda service=service: first_and_next(service, query, who)))
        page, later = first_and_next(service, query, who)
        if name == "one match":
            assert [m.id for m in page.matches] == ["00000010-task"] and later is None
            continue
        assert len(page.matches) == 20 and later is not None and len(later.matches) == 20
        assert not {m.id for m in page.matches} & {m.id for m in later.matches}
        if name.startswith("regional pull"):
            assert all(int(m.id[:8]) % 10 == 0 for m in page.matches + later.matches)  # Vest's requested
            assert {i.resource_type for i in page.included} == {"ServiceRequest"}
        if name.startswith("sorted"):
            dates = [m.id for m in page.matches + later.matches]
            assert dates == sorted(dates, reverse=True)  # later referrals have later dates
    if backend == "sqlite":
        small_cost, large_cost = costs
        assert large_cost <= 2 * small_cost + 5, (name, costs)  # ten times the matches, not ten times the work


@pytest.mark.parametrize("who", [REGION, access.SYSTEM], ids=["region", "administrator"])
def test_the_regional_pull_costs_its_page_however_many_tasks_are_settled(settled, who: access.Access) -> None:  # type: ignore[no-untyped-def]
    """The open Tasks are the newest, and every walk of one filter (the region's Tasks, the requested ones)
    passes the settled or triaged ones first: the combo index of owner and status walks the open ones only."""
    backend, small, large = settled
    costs = []
    for service, size in ((small, 3000), (large, 30000)):
        steps = Steps(service)
        costs.append(steps.measure(lambda service=service: first_and_next(service, f"Task?{PULL}", who)))
        page, later = first_and_next(service, f"Task?{PULL}", who)
        assert later is not None
        ids = [m.id for m in page.matches + later.matches]
        vest_open = [f"{n:08d}-task" for n in range(size - 100, size) if n % 2 == 0]
        assert ids == vest_open[:40]
    if backend == "sqlite":
        small_cost, large_cost = costs
        assert large_cost <= 1.5 * small_cost + 5, costs  # 27 times the settled Tasks, not 27 times the work


@pytest.mark.parametrize(
    "query, who",
    [(f"Task?{PULL}", REGION), ("Task?status=accepted", access.SYSTEM)],
    ids=["regional pull (combo walk)", "one token (index walk)"],
)
def test_a_later_page_while_writes_go_on_costs_its_page(settled, query: str, who: access.Access) -> None:  # type: ignore[no-untyped-def]
    """A resource of the searched type written after the first page is left out of the walk by the walk's own
    id column: the later page costs what it did before the write (not a join with every stored resource)."""
    backend, _, large = settled
    first, _ = first_and_next(large, query, who)
    assert first.next is not None
    rtype, _, params = query.partition("?")

    def later() -> list[str]:
        with access.acting_as(who):
            request = large.parser.parse(rtype, parse_qsl(params))
            page = large.engine.page(first.search_id, first.next.encode(), request.count, request)  # type: ignore[arg-type]
        return [m.id for m in page.matches]

    steps = Steps(large)
    before = later()
    quiet = steps.measure(later)
    with large.store.db.write.begin() as conn:  # a Task created since the first page
        row = {"res_type": "Task", "res_id": "99999999-task", "version_id": 1, "last_updated": "2026-01-01T00:00:00Z"}
        conn.execute(insert(resource_versions).values(**row, method="POST", deleted=False, body='{"x":1}'))
    busy = steps.measure(later)
    assert later() == before and len(before) == 20
    if backend == "sqlite":
        assert busy <= 2 * quiet + 5, (quiet, busy)
