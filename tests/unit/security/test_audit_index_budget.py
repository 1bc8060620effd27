"""The audit writer's share of index work, in process on a real SQLite file: while requests come in it
indexes a small batch after each stored batch (so a moderate load never builds a backlog), when idle a
large one; what is left is indexed before an AuditEvent search."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select

from fhir_server.components import build_search_registry
from fhir_server.core.interactions import FhirService
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.schema import index_backlog as backlog_table
from fhir_server.core.storage.store import Store
from fhir_server.security import audit
from fhir_server.security.audit import AuditRecord, AuditTrail
from fhir_server.security.policy import RequestInfo


def waiting(store: Store) -> int:
    with store.reading() as conn:
        return conn.execute(select(func.count()).select_from(backlog_table)).scalar_one()


def test_busy_ticks_index_a_little_idle_ticks_more_and_a_search_the_rest(tmp_path: Path) -> None:
    store = Store(open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}"), build_search_registry())
    trail = AuditTrail(store, "test")
    record = AuditRecord(RequestInfo("read", "Patient", "p1"), None, 200, "127.0.0.1")
    for _ in range(700):
        event = audit.audit_event(record, "2026-11-23T10:00:00+00:00", "test")
        trail._queue.put({**event, "id": str(uuid.uuid4())})  # what a request thread queues
    assert trail.flush() == 700 and waiting(store) == 700
    trail._index_some(audit.BUSY_INDEX_BATCH)  # what the writer does after storing a batch
    assert waiting(store) == 700 - audit.BUSY_INDEX_BATCH
    trail._index_some(500)  # an idle tick
    assert waiting(store) == 700 - audit.BUSY_INDEX_BATCH - 500
    _, page = FhirService(store).search("AuditEvent", [("entity", "Patient/p1"), ("_count", "1000")])
    assert len(page.matches) == 700 and waiting(store) == 0
