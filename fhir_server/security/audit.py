"""The audit trail: one AuditEvent for every interaction, stored as FHIR resources.

Who (client id and name, organisation numbers), what (resource type and id, or the search's query),
when, the outcome, and from where (the client's network address). Request threads only queue an
event; one writer thread per process stores the queue in batches (one database transaction for
many events), so auditing a read costs the read almost nothing. The events' search index rows are
built later (:mod:`fhir_server.core.index_backlog`): a few after each stored batch, more when the
process is idle, and all that remain before anyone searches them. Events are written with the
server's own access, and nobody can change or delete them (the security edge refuses writes).

The event's structure follows FHIR R4 AuditEvent with the restful-interaction subtypes, as IHE
BALP does: action C/R/U/D/E, outcome 0 (success), 4 (refused: client error), 8 (server error).
An operation's entity is named ``$name`` and carries its query string as a ``detail`` (R4 sev-1 allows
a name or a query, not both); a search's entity carries its query.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import uuid
from dataclasses import dataclass

from fhir_server.core.indexing.values import now_instant
from fhir_server.core.interactions import is_fhir_id
from fhir_server.core.storage import access, index_backlog
from fhir_server.core.storage.store import Store, WriteUnit
from fhir_server.naming import ORGNR_SYSTEM, naming_system
from fhir_server.security.policy import RequestInfo
from fhir_server.security.tokens import Caller

log = logging.getLogger(__name__)

#: The project's own identifier system for OAuth client ids (HelseID has no national one).
CLIENT_ID_SYSTEM = naming_system("oauth-client-id")
_EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_SOURCE_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}
_ORGANISATION_ROLE = {"text": "the organisation the client acts for"}
_APPLICATION = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}


#: Events indexed after each stored batch while busy: ~50 x 0.4 ms every 0.2 s, a tenth of a core at most.
BUSY_INDEX_BATCH = 50


@dataclass(frozen=True)
class AuditRecord:
    """What the edge knows of one finished request."""

    info: RequestInfo
    caller: Caller | None
    status: int
    address: str | None
    query: str | None = None
    detail: str | None = None


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (refused, 4xx), 8 serious failure (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(record: AuditRecord, recorded: str, observer: str) -> dict:
    """The AuditEvent resource of one request."""
    info = record.info
    caller = record.caller
    who: dict = {"identifier": {"system": CLIENT_ID_SYSTEM, "value": caller.client_id if caller else "unknown"}}
    if caller and caller.client_name:
        who["display"] = caller.client_name
    elif not caller:
        who["display"] = "unauthenticated client"
    agent: dict = {"type": {"coding": [_APPLICATION]}, "who": who, "requestor": True}
    if record.address:
        agent["network"] = {"address": record.address, "type": "2"}
    agents = [agent]
    for orgnr in caller.organisations if caller else ():
        agents.append(
            {
                "type": _ORGANISATION_ROLE,
                "who": {"identifier": {"system": ORGNR_SYSTEM, "value": orgnr}},
                "requestor": False,
            }
        )
    event: dict = {
        "resourceType": "AuditEvent",
        "type": _EVENT_TYPE,
        "subtype": [{"system": _INTERACTION_SYSTEM, "code": info.interaction}],
        "action": info.action,
        "recorded": recorded,
        "outcome": outcome_code(record.status),
        "agent": agents,
        "source": {"observer": {"display": observer}, "type": [_SOURCE_TYPE]},
    }
    description = f"HTTP {record.status}"
    if record.detail:
        description += f": {record.detail}"
    event["outcomeDesc"] = description
    entity: dict = {}
    if info.resource_type and info.resource_id and is_fhir_id(info.resource_id):
        entity["what"] = {"reference": f"{info.resource_type}/{info.resource_id}"}
    elif info.resource_type and info.resource_id:  # not a FHIR id: named as asked, not as a reference
        entity["what"] = {"display": f"{info.resource_type}/{info.resource_id}"[:200]}
    elif info.resource_type:
        entity["what"] = {"display": info.resource_type}
    query = base64.b64encode(record.query.encode()).decode() if record.query else None
    if info.operation:  # R4 sev-1: a name or a query, not both; an operation's query is its parameters
        entity["name"] = f"${info.operation}"
        if query:
            entity["detail"] = [{"type": "query", "valueBase64Binary": query}]
    elif query:
        entity["query"] = query
    if entity:
        event["entity"] = [entity]
    return event


class AuditTrail:
    """Queues audit records and stores them in batches from a background thread."""

    def __init__(self, store: Store, observer: str, *, batch_size: int = 500, interval_seconds: float = 0.2) -> None:
        self.store = store
        self.observer = observer
        self.batch_size = batch_size
        self.interval = interval_seconds
        self._queue: queue.Queue[tuple[AuditRecord, str]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()

    def record(self, record: AuditRecord) -> None:
        """Queue one request's audit record (stamped with the time now)."""
        self._queue.put((record, now_instant()))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._stopping.wait(self.interval)
            busy = self.flush() > 0
            self._index_some(BUSY_INDEX_BATCH if busy else index_backlog.BATCH)

    def _index_some(self, batch: int) -> None:
        """Work off up to ``batch`` events of the index backlog (a small batch while requests come in)."""
        try:
            with access.acting_as(access.SYSTEM):
                if index_backlog.has_backlog(self.store, "AuditEvent"):  # a read; writing only if there is work
                    index_backlog.catch_up(self.store, "AuditEvent", limit=batch, batch=batch)
        except Exception:  # the backlog stays; a search or a later moment indexes it
            log.exception("indexing stored audit events failed; will retry")

    def flush(self) -> int:
        """Store what is queued now; returns how many events were stored."""
        batch: list[tuple[AuditRecord, str]] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return 0
        events = [audit_event(record, recorded, self.observer) for record, recorded in batch]

        def work(unit: WriteUnit) -> None:
            for event in events:
                event["id"] = str(uuid.uuid4())
                unit.put(event, fresh_id=True, defer_index=True)

        try:
            with access.acting_as(access.SYSTEM):
                self.store.write(work)
        except Exception:  # keep the events: a later flush tries again
            log.exception("storing %s audit events failed; will retry", len(events))
            for item in batch:
                self._queue.put(item)
            return 0
        if len(batch) == self.batch_size:
            return len(events) + self.flush()
        return len(events)

    def close(self) -> None:
        """Stop the writer and store everything still queued."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        while self.flush():
            pass
