"""Delivery of topic-subscription notifications over rest-hooks (a thread in every server process).

Per Subscription, one process at a time holds a lease on its ``subscription_state`` row (claimed with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, under the write lock on SQLite) and, in event order:

* ``requested``: sends the handshake; a 2xx makes the Subscription ``active``, anything else ``error``;
* ``active`` with undelivered events: sends the next ones (at most the channel's max count) in one
  notification Bundle, and moves the delivery cursor past them on a 2xx; a failure is retried with
  doubling delays up to a maximum, for ``subscription_retry_days``, then the Subscription goes to
  ``error`` (its events stay readable with ``$events``; writing it back as ``requested`` resumes it);
* ``active`` with nothing to send for its ``heartbeatPeriod``: sends a heartbeat.

A process that dies mid-delivery leaves its lease to expire; the next holder sends the same events
again (at least once: receivers deduplicate by event number). Every state change is fenced by the
lease the sender holds, so a late process never moves another's cursor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select, update

from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.polling import PollingWorker
from fhir_server.core.storage import access
from fhir_server.core.storage.schema import subscription_state
from fhir_server.core.storage.store import WriteUnit
from fhir_server.domain.delivery.subscriptions import (
    channel_of,
    event_resources,
    notification_bundle,
    read_events,
)

log = logging.getLogger(__name__)


@dataclass
class SubscriptionSettings:
    base_url: str = ""
    poll_seconds: float = 0.5
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 300.0
    retry_days: float = 3.0
    lease_seconds: float = 30.0
    timeout_seconds: float = 10.0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class SubscriptionWorker(PollingWorker):
    """Sends handshakes, notifications and heartbeats; safe to run in many processes at once."""

    thread_name = "subscription-delivery"

    def __init__(self, service: FhirService, settings: SubscriptionSettings) -> None:
        self.service = service
        self.store = service.store
        self.settings = settings
        super().__init__(settings.poll_seconds)
        self.http = requests.Session()

    def run_once(self, limit: int = 10) -> int:
        """Claim due Subscriptions and serve each once; returns how many were served."""
        with access.acting_as(access.SYSTEM):
            claimed = self._claim(limit)
            for row, lease in claimed:
                self._serve(row, lease)
        return len(claimed)

    # -- claiming ---------------------------------------------------------------------------

    @staticmethod
    def _due(now: datetime) -> Any:
        t = subscription_state.c
        waiting = (t.events_since_start > t.delivered_through) | (t.heartbeat_at <= _iso(now))
        return (
            (t.next_attempt_at <= _iso(now))
            & (t.lease_until.is_(None) | (t.lease_until < _iso(now)))
            & ((t.status == "requested") | ((t.status == "active") & waiting))
        )

    def _claim(self, limit: int) -> list[tuple[Any, str]]:
        now = datetime.now(UTC)
        with self.store.reading() as conn:  # a plain read first: the write transaction only when there is work
            if (
                conn.execute(select(subscription_state.c.subscription_id).where(self._due(now)).limit(1)).first()
                is None
            ):
                return []
        lease = _iso(now + timedelta(seconds=self.settings.lease_seconds))

        def work(unit: WriteUnit) -> list:
            query = (
                select(subscription_state)
                .where(self._due(now))
                .order_by(subscription_state.c.subscription_id)
                .limit(limit)
            )
            if not self.store.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = unit.execute(query).all()
            if rows:
                ids = [r.subscription_id for r in rows]
                unit.execute(
                    update(subscription_state)
                    .where(subscription_state.c.subscription_id.in_(ids))
                    .values(lease_until=lease)
                )
            return rows

        return [(row, lease) for row in self.store.write(work)]

    def _subscription(self, subscription_id: str) -> dict | None:
        try:
            return jsonio.loads(self.service.read("Subscription", subscription_id).body or b"{}")
        except FhirError:
            return None

    # -- serving ----------------------------------------------------------------------------

    def _serve(self, row, lease: str) -> None:  # type: ignore[no-untyped-def]
        sid = row.subscription_id
        subscription = self._subscription(sid)
        if subscription is None:  # deleted: nothing more to deliver
            self._set(sid, lease, status="off", lease_until=None)
            return
        channel = channel_of(subscription)
        base = self.settings.base_url
        if row.status == "requested":
            bundle = notification_bundle(base, row, "handshake", [], channel.content, [])
            events = []
        else:
            events = read_events(self.store, sid, row.delivered_through + 1, None, channel.max_count)
            kind = "event-notification" if events else "heartbeat"
            resources = event_resources(self.store, row, events) if channel.content == "full-resource" else []
            bundle = notification_bundle(base, row, kind, events, channel.content, resources)
        error = self._post(channel, bundle)
        now = datetime.now(UTC)
        if error is None:
            cursor = events[-1].event_number if events else row.delivered_through
            if row.status == "requested":
                self._mark_subscription(sid, "active", None)
            self._set(
                sid,
                lease,
                status="active",
                delivered_through=cursor,
                attempts=0,
                first_failure_at=None,
                last_error=None,
                last_sent_at=_iso(now),
                lease_until=None,
                heartbeat_at=self._heartbeat_at(channel, now),
            )
            log.info("subscription %s: delivered events through %s", sid, cursor)
            return
        first = datetime.fromisoformat(row.first_failure_at) if row.first_failure_at else now
        if now - first >= timedelta(days=self.settings.retry_days):
            self._set(sid, lease, status="error", last_error=error, lease_until=None)
            self._mark_subscription(sid, "error", error)
            log.warning("subscription %s: gave up after %s; events stay readable with $events", sid, now - first)
            return
        delay = min(self.settings.backoff_seconds * 2 ** min(row.attempts, 30), self.settings.max_backoff_seconds)
        self._set(
            sid,
            lease,
            attempts=row.attempts + 1,
            first_failure_at=_iso(first),
            last_error=error,
            next_attempt_at=_iso(now + timedelta(seconds=delay)),
            lease_until=None,
        )
        log.info(
            "subscription %s: delivery failed (attempt %s), next in %.1fs: %s", sid, row.attempts + 1, delay, error
        )

    @staticmethod
    def _heartbeat_at(channel, now: datetime) -> str | None:  # type: ignore[no-untyped-def]
        return _iso(now + timedelta(seconds=channel.heartbeat_seconds)) if channel.heartbeat_seconds else None

    def _post(self, channel, bundle: dict) -> str | None:  # type: ignore[no-untyped-def]
        """POST the Bundle to the channel's endpoint with its headers; the error, or None on a 2xx."""
        try:
            response = self.http.post(
                channel.endpoint,
                data=jsonio.dumps(bundle),
                headers={**channel.headers, "Content-Type": "application/fhir+json"},
                timeout=self.settings.timeout_seconds,
            )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {str(exc)[:300]}"
        if not 200 <= response.status_code < 300:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        return None

    def _set(self, subscription_id: str, lease: str, **values: object) -> None:
        """Update the state row, fenced by the lease this process holds (a late process changes nothing)."""
        t = subscription_state.c
        self.store.write(
            lambda unit: unit.execute(
                update(subscription_state)
                .where(t.subscription_id == subscription_id, t.lease_until == lease)
                .values(**values)
            )
        )

    def _mark_subscription(self, subscription_id: str, status: str, error: str | None) -> None:
        """``Subscription.status`` (and ``error``) follow the delivery state."""
        for _ in range(5):
            try:
                stored = self.service.read("Subscription", subscription_id)
                subscription = jsonio.loads(stored.body or b"{}")
                subscription["status"] = status
                if error:
                    subscription["error"] = error[:500]
                else:
                    subscription.pop("error", None)
                self.service.update("Subscription", subscription_id, subscription, if_match=stored.version_id)
                return
            except FhirError as exc:
                if exc.status != 412:
                    log.warning("could not set Subscription/%s to %s: %s", subscription_id, status, exc)
                    return
