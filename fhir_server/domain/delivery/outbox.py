"""Push delivery of referrals to regional Endpoints through a durable outbox.

* :func:`enqueue_deliveries` runs inside the referral's own database transaction: one outbox row
  per active Endpoint of the receiving RHF (``Endpoint.managingOrganization``), so a referral is
  never stored without its deliveries, nor delivered without being stored. The push carries the
  stored resources of the types listed in ``mappings/ValueSet-region-push-resource-types.json``
  (:data:`PUSHED_TYPES`, read once).
* :class:`DeliveryWorker` (a thread in every server process) claims due rows with a lease, sends
  each as a FHIR transaction of ``PUT [type]/[id]`` entries (idempotent: a repeated delivery changes
  nothing at the receiver, which can also deduplicate on the referral's identifier), retries with
  exponential backoff, and moves a row to ``dead`` after a bounded number of attempts. The lease
  (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on SQLite), renewed while the
  receiver works and fenced by the attempt number, keeps several server processes from sending the
  same row at once; rows survive restarts, and a dead worker's rows are taken over within one lease.
* An Endpoint that is no longer ``active`` (off, suspended, error) gets nothing more: its queued rows
  become ``stopped``. An administrator re-sends a Task's dead or stopped deliveries with :func:`resend`
  (the operation ``Task/[id]/$resend``).
* The delivery state is written on the routing Task (``Task.output``, type ``delivery-state``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import insert, select, update

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import plain_matches
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.polling import PollingWorker
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import outbox
from fhir_server.core.storage.store import Store, WriteUnit
from fhir_server.data import data_folder
from fhir_server.naming import code_system

log = logging.getLogger(__name__)

DELIVERY_STATE = {"coding": [{"system": code_system("hub-task-input"), "code": "delivery-state"}]}
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"


def pushed_resource_types(path: Path | None = None) -> frozenset[str]:
    """The resource types a region's push carries: the codes of the ValueSet ``region-push-resource-types``."""
    value_set = jsonio.loads(
        (path or data_folder("mappings") / "ValueSet-region-push-resource-types.json").read_bytes()
    )
    types: set[str] = set()
    for include in value_set.get("compose", {}).get("include", []):
        if include.get("system") != RESOURCE_TYPES_SYSTEM or include.get("filter") or not include.get("concept"):
            raise ValueError(f"{value_set.get('url')}: only concepts of {RESOURCE_TYPES_SYSTEM} are read")
        types.update(concept["code"] for concept in include["concept"])
    return frozenset(types)


#: The resource types a region's push carries (data in mappings/).
PUSHED_TYPES = pushed_resource_types()


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def enqueue_deliveries(
    unit: WriteUnit,
    service: FhirService,
    owner: str | None,
    stored: list,
    event: str,
    identifier: tuple[str, str],
) -> int:
    """Add one outbox row per active Endpoint of the owner (``Organization/[id]``); returns how many."""
    if not owner or not owner.startswith("Organization/"):
        return 0
    endpoints = _ids(unit, service, "Endpoint", [("organization", owner), ("status", "active")])
    if not endpoints:
        return 0
    entries = [
        {"resource": jsonio.loads(s.body), "request": {"method": "PUT", "url": f"{s.resource_type}/{s.id}"}}
        for s in stored
        if s is not None and s.body and s.resource_type in PUSHED_TYPES
    ]
    task = next((s for s in stored if s is not None and s.resource_type == "Task"), None)
    referral = next((s for s in stored if s is not None and s.resource_type == "ServiceRequest"), None)
    payload = jsonio.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).decode()
    now = _iso(_now())
    for endpoint_id in endpoints:
        endpoint = jsonio.loads(unit.read("Endpoint", endpoint_id).body or b"{}")
        unit.execute(
            insert(outbox).values(
                endpoint_id=endpoint_id,
                address=endpoint.get("address", ""),
                task_id=task.id if task else "",
                event=event,
                dedupe_key=f"{event}:{identifier[0]}|{identifier[1]}:{referral.version_id if referral else 0}",
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created=now,
            )
        )
    return len(endpoints)


def _ids(unit: WriteUnit, service: FhirService, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    plain = plain_matches(service.store.registry, rtype, params)
    if plain is not None:
        return unit.match_ids(rtype, plain)
    request = service.parser.parse(rtype, params)
    return list(unit.execute(service.engine._id_query(request)).scalars())


@dataclass
class DeliverySettings:
    poll_seconds: float = 1.0
    backoff_seconds: float = 2.0
    max_attempts: int = 8
    #: A claim holds a row this long; the worker sending it renews the lease every third of it, so a
    #: worker that died (``kill -9``, a lost machine) lets its rows go after at most this long.
    lease_seconds: float = 15.0
    timeout_seconds: float = 10.0


#: Endpoint.status values that receive pushes; any other (off, suspended, error, entered-in-error) stops them.
RECEIVING = "active"


class DeliveryWorker(PollingWorker):
    """Delivers due outbox rows; one per server process, safe to run in many processes at once.

    Each claim takes one row and counts an attempt; the attempt number is the claim's fencing token.
    The worker renews its lease before it sends and while the receiver works, and records the outcome
    only while the row still carries its token: a row whose lease ran out and was taken over by another
    worker is neither sent again by the first nor marked by it. The receiver can also deduplicate:
    ``X-Delivery-Id`` is the same for every attempt of a delivery, ``X-Delivery-Attempt`` is the token.
    """

    thread_name = "outbox-delivery"

    def __init__(self, service: FhirService, settings: DeliverySettings | None = None) -> None:
        self.service = service
        self.store: Store = service.store
        self.settings = settings or DeliverySettings()
        super().__init__(self.settings.poll_seconds)
        self.http = requests.Session()

    def run_once(self, limit: int = 10) -> int:
        """Claim and deliver up to ``limit`` due rows, one at a time; returns how many were attempted.

        The server's own work (:data:`access.SYSTEM`): it reads Endpoints and updates Tasks of any owner."""
        attempted = 0
        with access.acting_as(access.SYSTEM):
            while attempted < limit:
                rows = self._claim(1)  # a lease only on what is being sent: no row waits out its lease here
                if not rows:
                    break
                self._deliver(rows[0])
                attempted += 1
        return attempted

    def _claim(self, limit: int) -> list:
        now = _now()
        if not self._anything_due(now):  # a plain read: the write transaction only when there is work
            return []

        def work(unit: WriteUnit) -> list:
            query = (
                select(outbox)
                .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= _iso(now))
                .where((outbox.c.lease_until.is_(None)) | (outbox.c.lease_until < _iso(now)))
                .order_by(outbox.c.id)
                .limit(limit)
            )
            if not self.store.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = unit.execute(query).all()
            if rows:
                unit.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([r.id for r in rows]))
                    .values(
                        lease_until=_iso(now + timedelta(seconds=self.settings.lease_seconds)),
                        attempts=outbox.c.attempts + 1,
                    )
                )
            return rows

        return self.store.write(work)

    def _anything_due(self, now: datetime) -> bool:
        """True when some pending delivery is due (its lease, if any, may still run: the claim decides)."""
        mark = "?" if self.store.db.is_sqlite else "%s"
        sql = f"SELECT 1 FROM {outbox.name} WHERE status = {mark} AND next_attempt_at <= {mark} LIMIT 1"
        return bool(self.store.fast.rows(sql, ("pending", _iso(now))))

    def _fenced(self, row_id: int, token: int, **values: object) -> bool:
        """Update the row only while it is pending under this claim's token; False when the claim was lost."""

        def work(unit: WriteUnit) -> int:
            fenced = (outbox.c.id == row_id) & (outbox.c.attempts == token) & (outbox.c.status == "pending")
            return unit.execute(update(outbox).where(fenced).values(**values)).rowcount

        return self.store.write(work) == 1

    def _renew(self, row_id: int, token: int) -> bool:
        lease = _iso(_now() + timedelta(seconds=self.settings.lease_seconds))
        return self._fenced(row_id, token, lease_until=lease)

    def _heartbeat(self, row_id: int, token: int, done: threading.Event) -> None:
        """Renew the lease while the receiver works (a third of the lease apart)."""
        while not done.wait(self.settings.lease_seconds / 3):
            try:
                if not self._renew(row_id, token):
                    return
            except Exception:
                log.exception("renewing the lease of delivery %s failed", row_id)

    def _endpoint(self, endpoint_id: str) -> dict | None:
        """The Endpoint as it is now (None when it is gone)."""
        try:
            return jsonio.loads(self.service.read("Endpoint", endpoint_id).body or b"{}")
        except FhirError:
            return None

    @staticmethod
    def _headers(endpoint: dict) -> dict[str, str]:
        """``Endpoint.header`` ("Name: value", e.g. the receiver's Authorization), read at each attempt."""
        headers = {}
        for line in endpoint.get("header") or []:
            name, sep, value = str(line).partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
        return headers

    def _deliver(self, row) -> None:  # type: ignore[no-untyped-def]
        token = attempt = row.attempts + 1
        endpoint = self._endpoint(row.endpoint_id)
        if endpoint is None or endpoint.get("status") != RECEIVING:
            status = endpoint.get("status") if endpoint else "deleted"
            stopped = f"Endpoint/{row.endpoint_id} is {status}: not sent"
            if self._fenced(row.id, token, status="stopped", lease_until=None, last_error=stopped):
                log.info("delivery %s to endpoint %s: stopped (%s)", row.id, row.endpoint_id, status)
                self._mark_task(row.task_id, "stopped", row.address, attempt, stopped)
            return
        if not self._renew(row.id, token):  # taken over by another worker: it sends, not this one
            log.info("delivery %s: lease lost before sending; left to the worker that holds it", row.id)
            return
        address = str(endpoint.get("address") or row.address)
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(row.id, token, done), daemon=True)
        beat.start()
        error: str | None = None
        try:
            response = self.http.post(
                address.rstrip("/"),
                data=row.payload.encode(),
                headers={
                    **self._headers(endpoint),
                    "Content-Type": "application/fhir+json",
                    "Accept": "application/fhir+json",
                    "X-Delivery-Id": f"{row.id}:{row.dedupe_key}",
                    "X-Delivery-Attempt": str(token),
                },
                timeout=self.settings.timeout_seconds,
            )
            if response.status_code >= 300:
                error = f"HTTP {response.status_code}: {response.text[:300]}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            done.set()
            beat.join()
        now = _now()
        if error is None:
            values = {"status": "delivered", "delivered_at": _iso(now), "lease_until": None, "last_error": None}
            state = "delivered"
        elif attempt >= self.settings.max_attempts:
            values = {"status": "dead", "lease_until": None, "last_error": error}
            state = "dead-letter"
        else:
            delay = self.settings.backoff_seconds * (2 ** (attempt - 1))
            values = {
                "status": "pending",
                "lease_until": None,
                "last_error": error,
                "next_attempt_at": _iso(now + timedelta(seconds=delay)),
            }
            state = "pending"
        if not self._fenced(row.id, token, **values):
            log.warning("delivery %s: the lease was taken over while sending; its outcome is not recorded", row.id)
            return
        log.info(
            "delivery %s to endpoint %s: %s (attempt %s)%s",
            row.id,
            row.endpoint_id,
            state,
            attempt,
            f": {error}" if error else "",
        )
        self._mark_task(row.task_id, state, address, attempt, error)

    def _mark_task(self, task_id: str, state: str, address: str, attempt: int, error: str | None) -> None:
        if not task_id:
            return
        for _ in range(5):  # the region may update the Task at the same moment: re-read and retry
            try:
                stored = self.service.read("Task", task_id)
                task = jsonio.loads(stored.body or b"{}")
                outputs = [o for o in task.get("output", []) if o.get("type") != DELIVERY_STATE]
                text = f"{state} to {address} (attempt {attempt})" + (f": {error[:120]}" if error else "")
                task["output"] = [*outputs, {"type": DELIVERY_STATE, "valueString": text}]
                self.service.update("Task", task_id, task, if_match=stored.version_id)
                return
            except FhirError as exc:
                if exc.status != 412:
                    log.warning("could not record the delivery state on Task/%s: %s", task_id, exc)
                    return
                time.sleep(0.05)


def resend(store: Store, task_id: str) -> int:
    """Queue again the dead-lettered or stopped deliveries of a routing Task (an administrator's decision).

    Each becomes a new outbox row (a fresh delivery id, a fresh attempt budget); the old row is kept,
    marked ``resent``. Returns how many were queued."""
    now = _iso(_now())

    def work(unit: WriteUnit) -> int:
        rows = unit.execute(
            select(outbox).where(outbox.c.task_id == task_id, outbox.c.status.in_(("dead", "stopped")))
        ).all()
        for row in rows:
            base = row.dedupe_key.split("|resend-")[0]
            unit.execute(update(outbox).where(outbox.c.id == row.id).values(status="resent"))
            unit.execute(
                insert(outbox).values(
                    endpoint_id=row.endpoint_id,
                    address=row.address,
                    task_id=row.task_id,
                    event=row.event,
                    dedupe_key=f"{base}|resend-{row.id}",
                    payload=row.payload,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created=now,
                )
            )
        return len(rows)

    return store.write(work)
