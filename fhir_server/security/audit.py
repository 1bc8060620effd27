"""The audit trail: one AuditEvent for every interaction, stored as FHIR resources.

Who (client id and name, organisation numbers), what (resource type and id, or the search's query),
when, the outcome, and from where (the client's network address). Request threads write the event
to the process's journal (fsynced: durable before the answer, see :mod:`.audit_journal`) and queue
it; one writer thread per process stores the queue in batches (one database transaction for many
events), so auditing a read costs the read one small appended line and an fsync. The events' search index rows are
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
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.interactions import is_fhir_id
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage import access, index_backlog
from fhir_server.core.storage.store import Store, WriteUnit
from fhir_server.core.text import clean_json
from fhir_server.naming import ORGNR_SYSTEM, naming_system
from fhir_server.security.audit_journal import AuditJournal
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
    if info.resource_type in STORABLE_TYPES and info.resource_id and is_fhir_id(info.resource_id):
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
    return clean_json(event)  # type: ignore[return-value]  # ids and names from the URL may hold control characters


class AuditTrail:
    """Queues audit events and stores them in batches from a background thread.

    With a :class:`~fhir_server.security.audit_journal.AuditJournal`, each event is on disk (fsynced)
    before :meth:`record` returns, that is before its request is answered; events a killed process
    left in its journal are stored when the next process starts."""

    def __init__(
        self,
        store: Store,
        observer: str,
        *,
        journal: AuditJournal | None = None,
        batch_size: int = 500,
        interval_seconds: float = 0.2,
    ) -> None:
        self.store = store
        self.observer = observer
        self.journal = journal
        self.batch_size = batch_size
        self.interval = interval_seconds
        self._queue: queue.Queue[dict] = queue.Queue()
        self._unstored: list[Path] = []  # sealed journal segments whose events are not all stored yet
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        if journal is not None:
            self._start()  # stores what a killed process left in its journal

    def record(self, record: AuditRecord) -> None:
        """Queue one request's audit event (stamped with the time now); durable when this returns."""
        event = audit_event(record, now_instant(), self.observer)
        event["id"] = str(uuid.uuid4())
        if self.journal is not None:
            self.journal.append(event, then=lambda: self._queue.put(event))
        else:
            self._queue.put(event)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        self.replay()
        while not self._stopping.is_set():
            self._stopping.wait(self.interval)
            busy = self.flush() > 0
            self._index_some(BUSY_INDEX_BATCH if busy else index_backlog.BATCH)

    def replay(self) -> int:
        """Store the events of journals left by processes that are gone; returns how many were new."""
        if self.journal is None:
            return 0
        stored = 0
        for path, events in self.journal.orphans():
            try:
                stored += self._store(events, skip_known=True)
            except Exception:
                log.exception("storing %s audit events of the journal %s failed; will retry", len(events), path)
                for event in events:
                    self._queue.put(event)
                self._unstored.append(path)
                continue
            path.unlink(missing_ok=True)
        if stored:
            log.info("stored %s audit events a stopped process had journalled", stored)
        return stored

    def _index_some(self, batch: int) -> None:
        """Work off up to ``batch`` events of the index backlog (a small batch while requests come in)."""
        try:
            with access.acting_as(access.SYSTEM):
                if index_backlog.has_backlog(self.store, "AuditEvent"):  # a read; writing only if there is work
                    index_backlog.catch_up(self.store, "AuditEvent", limit=batch, batch=batch)
        except Exception:  # the backlog stays; a search or a later moment indexes it
            log.exception("indexing stored audit events failed; will retry")

    def _drain(self, into: list[dict], limit: int | None = None) -> None:
        while limit is None or len(into) < limit:
            try:
                into.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _store(self, events: list[dict], *, skip_known: bool = False) -> int:
        """Store ``events`` in one transaction (those already stored skipped when ``skip_known``)."""

        def work(unit: WriteUnit) -> int:
            count = 0
            for event in events:
                if skip_known and unit.current("AuditEvent", event["id"], for_update=False) is not None:
                    continue
                unit.put(jsonio.copy_json(event), fresh_id=True, defer_index=True)
                count += 1
            return count

        with access.acting_as(access.SYSTEM):
            return self.store.write(work)

    def flush(self) -> int:
        """Store what is queued now; returns how many events were stored."""
        batch: list[dict] = []
        if self.journal is not None:  # exactly the events of the sealed segment (and of failed ones before)
            self._unstored.append(self.journal.seal(drain=lambda: self._drain(batch)))
        else:
            self._drain(batch, self.batch_size)
        stored = 0
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            try:
                stored += self._store(chunk)
            except Exception:  # keep the events (and their journal): a later flush tries again
                log.exception("storing %s audit events failed; will retry", len(batch) - start)
                for event in batch[start:]:
                    self._queue.put(event)
                return stored
        while self._unstored:
            self._unstored.pop().unlink(missing_ok=True)
        if self.journal is None and len(batch) == self.batch_size:
            return stored + self.flush()
        return stored

    def close(self) -> None:
        """Stop the writer and store everything still queued."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        while self.flush():
            pass
        if self.journal is not None and not self._unstored:
            self.journal.close()
