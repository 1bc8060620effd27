"""Subscription topics (R4 Backport): read from the ``Basic`` resources in ``mappings/`` (code
``SubscriptionTopic``), and the trigger each topic's canonical URL names.

The topics' URLs, titles, resources and filter parameters are data; what makes a write an event of a
topic (:data:`TRIGGERS`) and how a filter parameter reads a resource (:func:`filter_values`) are here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fhir_server.core import jsonio
from fhir_server.data import data_folder
from fhir_server.naming import ORGNR_SYSTEM

TOPIC_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC_CODE = ("http://hl7.org/fhir/fhir-types", "SubscriptionTopic")
#: The CapabilityStatement extension naming a supported topic (R4 Backport).
TOPIC_CANONICAL_EXTENSION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)


@dataclass(frozen=True)
class Topic:
    """A subscription topic: its canonical URL, what it is about and what a Subscription may filter by."""

    url: str
    title: str
    resource_type: str
    filters: frozenset[str]
    #: the topic's Basic resource, as published
    resource: dict


def _ext(resource: dict, name: str) -> list[dict]:
    return [e for e in resource.get("extension", []) if e.get("url") == TOPIC_EXTENSION + name]


def _part(extension: dict, name: str) -> list[object]:
    parts = [p for p in extension.get("extension", []) if p.get("url") == name]
    return [next((v for k, v in p.items() if k.startswith("value")), None) for p in parts]


def read_topic(basic: dict) -> Topic:
    """A topic from its ``Basic`` resource."""
    url = _ext(basic, "url")[0]["valueUri"]
    trigger = _ext(basic, "resourceTrigger")[0]
    resource_type = str(_part(trigger, "resource")[0]).rsplit("/", 1)[-1]
    filters = frozenset(str(v) for f in _ext(basic, "canFilterBy") for v in _part(f, "filterParameter"))
    title = (_ext(basic, "title") or [{}])[0].get("valueString", url)
    return Topic(url, title, resource_type, filters, basic)


def load_topics(folder: Path | None = None) -> dict[str, Topic]:
    """The topics in the mappings folder, by canonical URL."""
    topics: dict[str, Topic] = {}
    for path in sorted((folder or data_folder("mappings")).glob("Basic-*.json")):
        basic = jsonio.loads(path.read_bytes())
        codes = [(c.get("system"), c.get("code")) for c in (basic.get("code") or {}).get("coding", [])]
        if TOPIC_CODE in codes:
            topic = read_topic(basic)
            topics[topic.url] = topic
    return topics


# -- triggers ---------------------------------------------------------------------------------


def _owner(task: dict) -> object:
    return (task.get("owner") or {}).get("identifier", {}).get("value") or (task.get("owner") or {}).get("reference")


def _routed(previous: dict | None, current: dict) -> bool:
    return previous is None or _owner(previous) != _owner(current)


def _status_changed(previous: dict | None, current: dict) -> bool:
    return previous is None or any(previous.get(k) != current.get(k) for k in ("status", "businessStatus"))


def _referral_changed(previous: dict | None, current: dict) -> bool:
    return previous is not None


#: What makes a write an event of the topic (by the topic URL's last segment): (previous, current) → bool.
TRIGGERS: dict[str, Callable[[dict | None, dict], bool]] = {
    "referral-routed": _routed,
    "routing-task-status": _status_changed,
    "referral-changed": _referral_changed,
}


def trigger_of(topic: Topic) -> Callable[[dict | None, dict], bool]:
    return TRIGGERS[topic.url.rsplit("/", 1)[-1]]


def filter_values(resource: dict, parameter: str, region_of: dict[str, str], labels: set[str]) -> set[str]:
    """The values a filter parameter has on ``resource`` (organisation numbers).

    ``owner``: the Task's owner; ``health-trust``: the health trust the routing chose; ``region``: the RHF of
    the owner (Tasks), or every region whose label the resource carries (``labels``)."""
    if parameter == "owner":
        value = (resource.get("owner") or {}).get("identifier") or {}
        return {str(value["value"])} if value.get("system") == ORGNR_SYSTEM and value.get("value") else set()
    if parameter == "health-trust":
        return {
            str(ident.get("value"))
            for i in resource.get("input") or []
            for ident in [((i.get("valueReference") or {}).get("identifier") or {})]
            if ident.get("system") == ORGNR_SYSTEM and ident.get("value")
        }
    if parameter == "region":
        if resource.get("resourceType") == "Task":  # the owner's region: labels stay when a Task is re-routed
            return {region_of[o] for o in filter_values(resource, "owner", region_of, labels) if o in region_of}
        return {label.partition(":")[2] for label in labels if label.startswith("region:")}
    return set()
