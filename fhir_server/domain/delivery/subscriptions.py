"""Topic subscriptions (hl7.fhir.uv.subscriptions-backport 1.1.0, R4): accepting Subscriptions, recording
their events in the write's own transaction, and the notification Bundles.

* A ``Subscription`` written by a client (any door) passes :meth:`SubscriptionRules.hook`: its topic
  (``Subscription.criteria``) must be one of :func:`~.subscription_topics.load_topics`, its filters
  (``backport-filter-criteria``) parameters the topic offers, its channel a ``rest-hook``; a filter that
  names an organisation or region beyond the writer's own access is refused (403). Its delivery state
  (``subscription_state``) keeps the writer's access labels: the subscriber receives only what its
  token may see, the same labels every search filters by.
* A Task or ServiceRequest write matching a topic and a Subscription's filters adds, at the end of
  the write's transaction (when its access labels are all written), one numbered row to
  ``subscription_events`` per Subscription that may see it: stored with the write or not at all.
* :mod:`.subscription_worker` delivers them; ``$status`` and ``$events`` read them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import parse_qsl, urlparse
from uuid import uuid4

from sqlalchemy import insert, select, update

from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.reads import fetch_all
from fhir_server.core.storage.schema import access_labels, resource_versions, subscription_events, subscription_state
from fhir_server.core.storage.store import WriteUnit
from fhir_server.domain.delivery.subscription_topics import Topic, filter_values, load_topics, trigger_of

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT_PERIOD = BACKPORT + "backport-heartbeat-period"
MAX_COUNT = BACKPORT + "backport-max-count"
STATUS_PROFILE = BACKPORT + "backport-subscription-status-r4"
SUBSCRIPTION_PROFILE = BACKPORT + "backport-subscription"
CONTENTS = ("empty", "id-only", "full-resource")

Filter = tuple[str, str, str]  # resource type, parameter, value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _extensions(element: object, url: str) -> list[object]:
    if not isinstance(element, dict):
        return []
    return [
        next((v for k, v in e.items() if k.startswith("value")), None)
        for e in element.get("extension", [])
        if isinstance(e, dict) and e.get("url") == url
    ]


@dataclass(frozen=True)
class Channel:
    """What a Subscription's rest-hook channel says."""

    endpoint: str
    headers: dict[str, str]
    content: str
    heartbeat_seconds: int | None
    max_count: int


def channel_of(subscription: dict) -> Channel:
    channel = subscription.get("channel") or {}
    headers = {}
    for line in channel.get("header") or []:
        name, sep, value = str(line).partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    content = next(iter(_extensions(channel.get("_payload"), PAYLOAD_CONTENT)), None) or "id-only"
    heartbeat = next(iter(_extensions(channel, HEARTBEAT_PERIOD)), None)
    max_count = next(iter(_extensions(channel, MAX_COUNT)), None)
    return Channel(
        str(channel.get("endpoint", "")),
        headers,
        str(content),
        int(heartbeat) if isinstance(heartbeat, int) and heartbeat > 0 else None,
        int(max_count) if isinstance(max_count, int) and max_count > 0 else 20,
    )


def filters_of(subscription: dict, topic: Topic) -> list[Filter]:
    """The Subscription's filters (``Type?param=value&...``), checked against what the topic offers."""
    found: list[Filter] = []
    for i, text in enumerate(_extensions(subscription.get("_criteria"), FILTER_CRITERIA)):
        where = f"Subscription.criteria.extension[{i}]"
        rtype, sep, query = str(text).partition("?")
        if not sep or rtype != topic.resource_type:
            raise FhirError.single(
                422, "invalid", f"a filter of {topic.url} reads '{topic.resource_type}?parameter=value'", where
            )
        for name, value in parse_qsl(query, keep_blank_values=True):
            name = name.partition(":")[0]
            value = value.rpartition("|")[2]
            if name not in topic.filters or not value:
                offered = ", ".join(sorted(topic.filters))
                raise FhirError.single(422, "invalid", f"{topic.url} filters by {offered}, not '{name}'", where)
            found.append((rtype, name, value))
    return found


class _Active(NamedTuple):
    """What a write's event check needs of a subscription that may get events."""

    subscription_id: str
    topic: str
    filters: str
    labels: str
    unrestricted: bool


#: Every write of a topic's type asks: plain SQL text (SQLAlchemy's statement handling cost more than the query).
_ACTIVE = f"SELECT {', '.join(_Active._fields)} FROM {subscription_state.name} WHERE status <> 'off'"


class SubscriptionRules:
    """The store write hook of topic subscriptions (registered by the composition root)."""

    def __init__(self, region_of: dict[str, str], topics: dict[str, Topic] | None = None) -> None:
        #: organisation number of an RHF or HF → organisation number of its RHF
        self.region_of = region_of
        self.topics = topics if topics is not None else load_topics()
        self._types = {t.resource_type for t in self.topics.values()}

    def __call__(self, unit: WriteUnit, resource: dict) -> None:
        rtype = resource.get("resourceType")
        if rtype == "Subscription":
            self._accept(unit, resource)
        elif rtype in self._types:
            self._on_write(unit, resource)

    # -- Subscriptions ----------------------------------------------------------------------

    def _accept(self, unit: WriteUnit, subscription: dict) -> None:
        writer = access.current()
        if writer is access.SYSTEM:  # the worker's own status updates
            return
        topic = self.topics.get(str(subscription.get("criteria", "")))
        if topic is None:
            known = ", ".join(sorted(self.topics))
            raise FhirError.single(422, "not-supported", f"the topics served are {known}", "Subscription.criteria")
        channel = subscription.get("channel") or {}
        if channel.get("type") != "rest-hook":
            raise FhirError.single(
                422, "not-supported", "only rest-hook channels are served", "Subscription.channel.type"
            )
        if urlparse(str(channel.get("endpoint", ""))).scheme not in ("http", "https"):
            raise FhirError.single(
                422, "invalid", "a rest-hook needs an http(s) endpoint", "Subscription.channel.endpoint"
            )
        if channel_of(subscription).content not in CONTENTS:
            raise FhirError.single(
                422, "invalid", f"payload content is one of {', '.join(CONTENTS)}", "Subscription.channel.payload"
            )
        filters = filters_of(subscription, topic)
        if not writer.unrestricted:
            self._within_access(filters, writer)
        status = "off" if subscription.get("status") == "off" else "requested"
        values = {
            "topic": topic.url,
            "filters": jsonio.dumps(filters).decode(),
            "labels": jsonio.dumps(sorted(writer.labels)).decode(),
            "unrestricted": writer.unrestricted,
            "status": status,
            "attempts": 0,
            "next_attempt_at": now_iso(),
            "first_failure_at": None,
            "heartbeat_at": None,
            "last_error": None,
        }
        sid = str(subscription["id"])
        found = unit.execute(
            select(subscription_state.c.subscription_id).where(subscription_state.c.subscription_id == sid)
        ).first()
        if found is None:
            unit.execute(
                insert(subscription_state).values(
                    subscription_id=sid, events_since_start=0, delivered_through=0, **values
                )
            )
        else:
            unit.execute(update(subscription_state).where(subscription_state.c.subscription_id == sid).values(**values))

    def _within_access(self, filters: list[Filter], writer: access.Access) -> None:
        for i, (_, name, value) in enumerate(filters):
            region = self.region_of.get(value)
            if region is None or access.region_label(region) not in writer.labels:
                raise FhirError.single(
                    403,
                    "forbidden",
                    f"the filter {name}={value} reaches beyond what this client may see",
                    f"Subscription.criteria.extension[{i}]",
                )

    # -- events -----------------------------------------------------------------------------

    def _on_write(self, unit: WriteUnit, resource: dict) -> None:
        # a table the unit's pending inserts do not touch: read without flushing them
        rows = [_Active(*row) for row in fetch_all(unit.conn, _ACTIVE, ())]
        rows = [
            r
            for r in rows
            if self.topics.get(r.topic) and self.topics[r.topic].resource_type == resource["resourceType"]
        ]
        if not rows:
            return
        version = int((resource.get("meta") or {}).get("versionId", "1"))
        previous = self._previous(unit, resource, version)
        matching = [r for r in rows if trigger_of(self.topics[r.topic])(previous, resource)]
        if matching:
            snapshot = jsonio.loads(jsonio.dumps(resource))
            unit.at_end(lambda: self._record(unit, snapshot, version, matching))

    @staticmethod
    def _previous(unit: WriteUnit, resource: dict, version: int) -> dict | None:
        if version <= 1:
            return None
        row = unit.execute(
            select(resource_versions.c.body).where(
                resource_versions.c.res_type == resource["resourceType"],
                resource_versions.c.res_id == resource["id"],
                resource_versions.c.version_id == version - 1,
            )
        ).first()
        return jsonio.loads(row[0]) if row is not None and row[0] else None

    def _record(self, unit: WriteUnit, resource: dict, version: int, rows: list) -> None:
        """Number and store one event per Subscription whose filters match and that may see the resource."""
        rtype, rid = resource["resourceType"], str(resource["id"])
        labels = {
            r[0]
            for r in unit.execute(
                select(access_labels.c.label).where(access_labels.c.res_type == rtype, access_labels.c.res_id == rid)
            )
        }
        created = now_iso()
        for row in sorted(rows, key=lambda r: r.subscription_id):  # one lock order: no deadlocks
            filters = jsonio.loads(row.filters)
            if not all(value in filter_values(resource, name, self.region_of, labels) for _, name, value in filters):
                continue
            if not row.unrestricted and not labels & set(jsonio.loads(row.labels)):
                continue  # the subscriber's token may not see it
            sid = row.subscription_id
            unit.execute(
                update(subscription_state)
                .where(subscription_state.c.subscription_id == sid)
                .values(events_since_start=subscription_state.c.events_since_start + 1)
            )
            number = unit.execute(
                select(subscription_state.c.events_since_start).where(subscription_state.c.subscription_id == sid)
            ).scalar_one()
            unit.execute(
                insert(subscription_events).values(
                    subscription_id=sid,
                    event_number=number,
                    topic=row.topic,
                    focus_type=rtype,
                    focus_id=rid,
                    focus_version=version,
                    created=created,
                )
            )


# -- notification Bundles -----------------------------------------------------------------------


def subscriber_access(row: object) -> access.Access:
    """The access of a Subscription's subscriber (its token's labels when it subscribed)."""
    labels = frozenset(jsonio.loads(row.labels))  # type: ignore[attr-defined]
    return access.Access(labels, frozenset(), unrestricted=bool(row.unrestricted), name="subscription")  # type: ignore[attr-defined]


def url(base: str, path: str) -> str:
    """An absolute URL on the server when its base URL is known, else the relative ``Type/id``."""
    return f"{base.rstrip('/')}/{path}" if base else path


def status_parameters(base: str, row: object, kind: str, events: list, content: str, error: str | None = None) -> dict:
    """The SubscriptionStatus of R4 (a ``Parameters``): first entry of every notification Bundle."""
    sid = row.subscription_id  # type: ignore[attr-defined]
    parameters: list[dict] = [
        {"name": "subscription", "valueReference": {"reference": url(base, f"Subscription/{sid}")}},
        {"name": "topic", "valueCanonical": row.topic},  # type: ignore[attr-defined]
        {"name": "status", "valueCode": row.status},  # type: ignore[attr-defined]
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(row.events_since_start)},  # type: ignore[attr-defined]
    ]
    for event in events:
        parts: list[dict] = [
            {"name": "event-number", "valueString": str(event.event_number)},
            {"name": "timestamp", "valueInstant": event.created},
        ]
        if content != "empty":
            parts.append(
                {"name": "focus", "valueReference": {"reference": url(base, f"{event.focus_type}/{event.focus_id}")}}
            )
        parameters.append({"name": "notification-event", "part": parts})
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(base: str, row: object, kind: str, events: list, content: str, resources: list[dict]) -> dict:
    """A notification Bundle (type ``history``): the status, then the focus resources (by content)."""
    status = status_parameters(base, row, kind, events, content)
    sid = row.subscription_id  # type: ignore[attr-defined]
    entries: list[dict] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": url(base, f"Subscription/{sid}/$status")},
            "response": {"status": "200"},
        }
    ]
    if content == "id-only":
        for event in events:
            path = f"{event.focus_type}/{event.focus_id}"
            entries.append(
                {"fullUrl": url(base, path), "request": {"method": "PUT", "url": path}, "response": {"status": "200"}}
            )
    elif content == "full-resource":
        for resource in resources:
            path = f"{resource['resourceType']}/{resource['id']}"
            entries.append(
                {
                    "fullUrl": url(base, path),
                    "resource": resource,
                    "request": {"method": "PUT", "url": path},
                    "response": {"status": "200"},
                }
            )
    return {"resourceType": "Bundle", "id": str(uuid4()), "type": "history", "timestamp": now_iso(), "entry": entries}


def event_resources(store: object, row: object, events: list) -> list[dict]:
    """The focus of each event as it was then (and a Task's referral), as the subscriber may see them."""
    from fhir_server.core.storage.store import Store

    assert isinstance(store, Store)
    found: dict[tuple[str, str], dict] = {}
    with access.acting_as(subscriber_access(row)):
        for event in events:
            try:
                body = jsonio.loads(
                    store.vread(event.focus_type, event.focus_id, str(event.focus_version)).body or b"{}"
                )
            except FhirError:
                continue
            found[(event.focus_type, event.focus_id)] = body
            focus = str((body.get("focus") or {}).get("reference", "")) if event.focus_type == "Task" else ""
            rtype, _, rid = focus.partition("/")
            if rtype == "ServiceRequest" and rid and ("ServiceRequest", rid) not in found:
                with contextlib.suppress(FhirError):
                    found[(rtype, rid)] = jsonio.loads(store.read(rtype, rid).body or b"{}")
    return list(found.values())


def read_state(store: object, subscription_id: str) -> object | None:
    """A Subscription's delivery state row (None when it has none)."""
    from fhir_server.core.storage.store import Store

    assert isinstance(store, Store)
    with store.reading() as conn:
        return conn.execute(
            select(subscription_state).where(subscription_state.c.subscription_id == subscription_id)
        ).first()


def read_events(store: object, subscription_id: str, since: int, until: int | None, limit: int) -> list:
    """Stored events of a Subscription, numbers ``since``..``until``, in order."""
    from fhir_server.core.storage.store import Store

    assert isinstance(store, Store)
    query = (
        select(subscription_events)
        .where(subscription_events.c.subscription_id == subscription_id, subscription_events.c.event_number >= since)
        .order_by(subscription_events.c.event_number)
        .limit(limit)
    )
    if until is not None:
        query = query.where(subscription_events.c.event_number <= until)
    with store.reading() as conn:
        return list(conn.execute(query).all())
