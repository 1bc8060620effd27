"""Topic subscriptions (R4 Backport) at the edge: ``Subscription/[id]/$status`` and ``$events``.

Both read the Subscription with the caller's access first (404 for what the caller may not see); the
events are those recorded for the subscriber when they happened (``domain/delivery/subscriptions.py``).
"""

from __future__ import annotations

from flask import Response

from fhir_server.api.ops.common import resource_response
from fhir_server.api.ops.registry import OperationCall, operation
from fhir_server.api.rest import base_url, server
from fhir_server.core.issues import FhirError
from fhir_server.domain.delivery.subscription_topics import TOPIC_CANONICAL_EXTENSION
from fhir_server.domain.delivery.subscriptions import (
    CONTENTS,
    SubscriptionRules,
    channel_of,
    event_resources,
    notification_bundle,
    read_events,
    read_state,
    status_parameters,
)
from fhir_server.security.policy import Need

#: At most this many events in one ``$events`` answer (page on with ``eventsSinceNumber``).
MAX_EVENTS = 500


def _state(subscription_id: str) -> tuple[dict, object]:
    from fhir_server.core import jsonio

    subscription = jsonio.loads(server().service.read("Subscription", subscription_id).body or b"{}")
    row = read_state(server().store, subscription_id)
    if row is None:
        raise FhirError.single(404, "not-found", f"Subscription/{subscription_id} is not a topic subscription")
    return subscription, row


@operation(
    "status",
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    ("Subscription",),
    ("instance",),
    requires=(Need("Subscription", "r"),),
)
def subscription_status(call: OperationCall) -> Response:
    """The SubscriptionStatus (a ``Parameters``) in a searchset Bundle, as the IG's ``$status`` returns it."""
    assert call.resource_id
    _, row = _state(call.resource_id)
    status = status_parameters(base_url(), row, "query-status", [], "empty", row.last_error)  # type: ignore[attr-defined]
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status, "search": {"mode": "match"}}],
    }
    return resource_response(bundle)


def _number(call: OperationCall, name: str) -> int | None:
    text = call.text(name)
    if text is None:
        return None
    if not text.isdigit():
        raise FhirError.single(400, "value", f"the parameter '{name}' must be an event number", name)
    return int(text)


@operation(
    "events",
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
    ("Subscription",),
    ("instance",),
    requires=(Need("Subscription", "r"),),
)
def subscription_events(call: OperationCall) -> Response:
    """Stored events from ``eventsSinceNumber`` to ``eventsUntilNumber`` as a notification Bundle (history)."""
    assert call.resource_id
    subscription, row = _state(call.resource_id)
    content = call.text("content") or channel_of(subscription).content
    if content not in CONTENTS:
        raise FhirError.single(400, "value", f"content is one of {', '.join(CONTENTS)}", "content")
    since = _number(call, "eventsSinceNumber") or 1
    events = read_events(server().store, call.resource_id, since, _number(call, "eventsUntilNumber"), MAX_EVENTS)
    resources = event_resources(server().store, row, events) if content == "full-resource" else []
    return resource_response(notification_bundle(base_url(), row, "query-event", events, content, resources))


def subscription_capabilities(profiles: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[dict]]]:
    """The CapabilityStatement's Subscription entry: one extension per topic served."""
    rules = next((h for h in server().store.write_hooks if isinstance(h, SubscriptionRules)), None)
    topics = [
        {"url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": url} for url in sorted(rules.topics if rules else {})
    ]
    # the backport-subscription profile is not loaded (not served as a StructureDefinition), so it is not
    # declared as a supportedProfile: /metadata names only what the server serves
    return profiles, {"Subscription": topics}
