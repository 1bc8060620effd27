"""The combo index of Task owner and status (``mappings/SearchParameter-task-owner-status.json``): searches it
serves give exactly what the same searches give without it (every page forward and back, totals, counts),
and what a filter over every Task in Python gives; it is written with every write (create, update, delete)
and built for the Tasks of a database from before it. On SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import event, select, text

from fhir_server.components import build_search_registry
from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.interactions import FhirService
from fhir_server.core.search.engine import SearchEngine, SearchPage
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import idx_combo, schema_info
from fhir_server.core.storage.store import Store
from tests.conftest import BACKENDS, database_url

ENH = "urn:oid:2.16.578.1.12.4.1.4.101"
REGIONS = {"vest": "983658725", "nord": "883658752"}
STATUSES = ("requested", "received", "accepted", "completed")
REGION = access.Access(labels=frozenset({access.region_label(REGIONS["vest"])}), name="helse-vest")


def _owner(choice: str) -> dict | None:
    """A Task.owner: a region's Organization, one by identifier only, an absolute URL, or none."""
    if choice in REGIONS:
        return {"reference": f"Organization/{choice}"}
    if choice == "identifier-only":
        return {"identifier": {"system": ENH, "value": REGIONS["vest"]}}
    if choice == "absolute":
        return {"reference": "http://elsewhere.example/fhir/Organization/vest"}
    return None


def _task(owner: str, status: str, intent: str) -> dict:
    task = {"resourceType": "Task", "status": status, "intent": intent}
    if (reference := _owner(owner)) is not None:
        task["owner"] = reference
    return task


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirService]:
    """Tasks of every kind of owner and status, written through the write path (some updated, some
    deleted), each labelled for the region of its owner's choice: as a region's routing Tasks are."""
    svc = FhirService(
        Store(open_database(database_url(request.param, tmp_path, "db.sqlite3")), build_search_registry())
    )
    rng = random.Random(16)
    with access.acting_as(access.SYSTEM):
        for rid in REGIONS:
            svc.update(
                "Organization",
                rid,
                {"resourceType": "Organization", "id": rid, "identifier": [{"system": ENH, "value": REGIONS[rid]}]},
            )
    owners = [*REGIONS, "identifier-only", "absolute", "none"]
    for n in range(150):
        owner = rng.choice(owners)
        region = owner if owner in REGIONS else rng.choice(list(REGIONS))
        writer = access.Access(unrestricted=True, stamps=frozenset({access.region_label(REGIONS[region])}))
        with access.acting_as(writer):
            stored = svc.create(_task(owner, rng.choice(STATUSES), rng.choice(["order", "plan"]))).stored
            body = jsonio.loads(svc.read("Task", stored.id).body)
            if n % 4 == 0:  # settled or moved on later
                body["status"] = rng.choice(STATUSES)
                svc.update("Task", stored.id, body)
            if n % 13 == 0:
                svc.delete("Task", stored.id)
    yield svc
    svc.store.db.dispose()


def _without_combos(service: FhirService) -> SearchEngine:
    """The service's engine as it would be if no combo index were defined."""
    registry = copy.copy(service.store.registry)
    registry.combos_by_type = {}
    engine = SearchEngine(service.store, service.engine.limits)
    engine.registry = registry
    return engine


def _all_pages(service: FhirService, engine: SearchEngine, query: str) -> tuple[list[str], list[str], int | None]:
    """Every page's ids forward (by ``next`` links), every page's back from the last (by ``previous``),
    and the first page's total."""
    rtype, _, params = query.partition("?")
    request = service.parser.parse(rtype, parse_qsl(params))
    first = engine.search(request)
    pages, page = [first], first
    while page.next is not None:
        request = service.parser.parse(rtype, parse_qsl(params))
        page = engine.page(page.search_id, page.next.encode(), request.count, request)  # type: ignore[arg-type]
        pages.append(page)
    backward: list[SearchPage] = []
    while page.previous is not None:
        request = service.parser.parse(rtype, parse_qsl(params))
        page = engine.page(page.search_id, page.previous.encode(), request.count, request)  # type: ignore[arg-type]
        backward.insert(0, page)
    forward_ids = [m.id for p in pages for m in p.matches]
    backward_ids = [m.id for p in [*backward, pages[-1]] for m in p.matches] if len(pages) > 1 else forward_ids
    return forward_ids, backward_ids, first.total


def _count(service: FhirService, engine: SearchEngine, query: str) -> int | None:
    rtype, _, params = query.partition("?")
    return engine.search(service.parser.parse(rtype, parse_qsl(params + "&_summary=count"))).total


def _expected(service: FhirService, who: access.Access, owners: set[str], statuses: set[str], intent=None) -> list[str]:  # type: ignore[no-untyped-def]
    """The ids a filter over every Task the caller may see keeps, in id order."""
    with access.acting_as(who):
        request = service.parser.parse("Task", [("_count", "1000")])
        tasks = [jsonio.loads(m.body) for m in service.engine.search(request).matches]
    return sorted(
        t["id"]
        for t in tasks
        if "/".join(map(str, parse_reference(t.get("owner", {}).get("reference", ""))[:2])) in owners
        and t["status"] in statuses
        and (intent is None or t["intent"] == intent)
    )


VEST_REQUESTED = f"owner:Organization.identifier={ENH}|{REGIONS['vest']}&status=requested"
CASES = {
    "regional pull": (f"Task?{VEST_REQUESTED}&_count=4", {"Organization/vest"}, {"requested"}, None),
    "pull, total": (f"Task?{VEST_REQUESTED}&_count=4&_total=accurate", {"Organization/vest"}, {"requested"}, None),
    "newest first": (f"Task?{VEST_REQUESTED}&_count=3&_sort=-_id", {"Organization/vest"}, {"requested"}, None),
    "plain reference": (
        "Task?owner=Organization/vest&status=received&_count=5",
        {"Organization/vest"},
        {"received"},
        None,
    ),
    "two owners, two statuses, one more filter": (
        "Task?owner=Organization/vest,Organization/nord&status=requested,received&intent=order&_count=4",
        {"Organization/vest", "Organization/nord"},
        {"requested", "received"},
        "order",
    ),
}


@pytest.mark.parametrize("who", [REGION, access.SYSTEM], ids=["region", "administrator"])
@pytest.mark.parametrize("case", CASES)
def test_a_search_the_combo_serves_gives_what_it_gives_without_it(service: FhirService, case: str, who) -> None:  # type: ignore[no-untyped-def]
    query, owners, statuses, intent = CASES[case]
    expected = _expected(service, who, owners, statuses, intent)
    if query.endswith("_sort=-_id"):
        expected.reverse()
    assert len(expected) >= 5  # several pages
    statements: list[str] = []
    event.listen(service.store.db.read, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with access.acting_as(who):
        with_combo = _all_pages(service, service.engine, query), _count(service, service.engine, query)
        used = any("idx_combo" in s for s in statements)
        statements.clear()
        plain = _without_combos(service)
        without = _all_pages(service, plain, query), _count(service, plain, query)
        assert not any("idx_combo" in s for s in statements)
    assert used  # the combo served the search
    (forward, backward, total), count = with_combo
    assert forward == backward == expected
    assert count == len(expected) and total in (None, len(expected))
    if "_total=accurate" in query:
        assert total == len(expected)
    assert with_combo == without


def test_the_combo_follows_every_write(service: FhirService) -> None:
    """A Task's combo rows are those of its current owner and status; a deleted Task has none."""
    with service.store.db.read.connect() as conn:
        rows = conn.execute(select(idx_combo.c.res_id, idx_combo.c.value).where(idx_combo.c.param == "owner-status"))
        stored = sorted(rows.all())
    with access.acting_as(access.SYSTEM):
        request = service.parser.parse("Task", [("_count", "1000")])
        tasks = [jsonio.loads(m.body) for m in service.engine.search(request).matches]
    expected = sorted(
        (t["id"], f"Organization/{t['owner']['reference'].rpartition('/')[2]}${t['status']}")
        for t in tasks
        if "Organization/" in t.get("owner", {}).get("reference", "")  # an absolute URL's too: its Type/id
    )
    assert stored == expected and len(stored) > 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_from_before_the_combo_gets_its_rows(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tasks stored at schema version 3 (no combo table, no combo) get their combo rows when the server opens
    the database, with progress in the log; the pull then finds them through the combo."""
    url = database_url(backend, tmp_path, "db.sqlite3")
    registry = build_search_registry()
    old = copy.copy(registry)
    old.combos_by_type = {}  # the server before the combo
    service = FhirService(Store(open_database(url), old))
    with access.acting_as(access.SYSTEM):
        ids = [
            service.create(_task(owner, status, "order")).stored.id
            for owner in ("vest", "nord")
            for status in ("requested", "accepted")
            for _ in range(3)
        ]
    with service.store.db.write.begin() as conn:  # make it a version 3 database
        conn.execute(text("DROP TABLE idx_combo"))
        conn.execute(schema_info.update().where(schema_info.c.key == "schema_version").values(value="3"))
        conn.execute(schema_info.delete().where(schema_info.c.key.startswith("combo:")))
    service.store.db.dispose()
    caplog.set_level(logging.INFO, logger="fhir_server.core.storage.combo_index")
    upgraded = FhirService(Store(open_database(url), registry))
    assert "combo index owner-status of Task: 12 of 12 resources" in caplog.text
    try:
        with upgraded.store.db.read.connect() as conn:
            assert (
                int(conn.execute(select(schema_info.c.value).where(schema_info.c.key == "schema_version")).scalar())
                == 4
            )
            rows = conn.execute(select(idx_combo.c.res_id, idx_combo.c.value)).all()
        assert sorted(rows) == sorted(
            (i, f"Organization/{o}${s}")
            for i, (o, s) in zip(
                ids,
                [(o, s) for o in ("vest", "nord") for s in ("requested", "accepted") for _ in range(3)],
                strict=True,
            )
        )
        with access.acting_as(access.SYSTEM):
            _, page = upgraded.search("Task", [("owner", "Organization/vest"), ("status", "requested")])
        assert sorted(m.id for m in page.matches) == sorted(ids[:3])
        Store(upgraded.store.db, registry)  # opened again: built already, nothing to do
        with upgraded.store.db.read.connect() as conn:
            assert len(conn.execute(select(idx_combo.c.res_id)).all()) == 12
    finally:
        upgraded.store.db.dispose()
