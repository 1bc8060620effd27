"""Area ``regional``: what regional systems use — a referral as one Bundle, bulk export, topic subscriptions.

Each check SKIPs, saying why, when the CapabilityStatement does not declare what it needs.
"""

from __future__ import annotations

from conformance_tests.checks.referrals import REFERRAL_ID_SYSTEM, _corpus_referral, _need_routing
from conformance_tests.client import Client
from conformance_tests.fhirdata import declares_operation, entries, rest_of
from conformance_tests.registry import check, expect, skip

#: The extension a CapabilityStatement names its subscription topics with (Subscriptions R4 Backport).
TOPIC_EXTENSION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)


@check("regional", "referral_everything")
def referral_everything(client: Client) -> None:
    """``ServiceRequest/[id]/$everything`` returns the referral with its routing Task in one Bundle."""
    if not declares_operation(client.capabilities(), "everything", "ServiceRequest"):
        skip("the CapabilityStatement does not declare $everything on ServiceRequest")
    _need_routing(client)
    bundle, key = _corpus_referral("valid-referral-bundle.json", client.new_tag())
    r = client.post("", bundle)
    expect(r.status_code == 200, f"the corpus referral: expected 200; {client.describe(r)}")
    stored = entries(client.search("ServiceRequest", {"identifier": f"{REFERRAL_ID_SYSTEM}|{key}"}))
    expect(len(stored) == 1, f"the corpus referral: expected 1 ServiceRequest, found {len(stored)}")
    referral_id = stored[0]["id"]
    client.track(f"ServiceRequest/{referral_id}")
    r = client.get(f"ServiceRequest/{referral_id}/$everything")
    expect(r.status_code == 200, f"$everything: expected 200; {client.describe(r)}")
    found = client.json_of(r)
    expect(found.get("resourceType") == "Bundle", f"$everything: expected a Bundle; {client.describe(r)}")
    resources = [e.get("resource") or {} for e in found.get("entry", []) or []]
    kinds = {(x.get("resourceType"), x.get("id")) for x in resources}
    expect(("ServiceRequest", referral_id) in kinds, "$everything: the referral itself is missing")
    tasks = [x for x in resources if x.get("resourceType") == "Task"]
    focus = {((t.get("focus") or {}).get("reference") or "").rsplit("/_history", 1)[0] for t in tasks}
    expect(
        any(f.endswith(f"ServiceRequest/{referral_id}") for f in focus),
        f"$everything: no Task with focus ServiceRequest/{referral_id} among {len(tasks)} Task(s)",
    )


@check("regional", "bulk_export")
def bulk_export(client: Client) -> None:
    """``[base]/$export`` answers the async pattern: 202 with Content-Location, a status that answers, a cancel."""
    if not declares_operation(client.capabilities(), "export"):
        skip("the CapabilityStatement does not declare $export")
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    r = client.get("$export", params={"_type": "Organization"}, headers=headers)
    expect(r.status_code == 202, f"$export kick-off: expected 202; {client.describe(r)}")
    location = r.headers.get("Content-Location")
    expect(bool(location), "$export kick-off: no Content-Location header")
    status = client.get(location or "")
    expect(
        status.status_code in (200, 202, 429),
        f"$export status: expected 200, 202 or 429; {client.describe(status)}",
    )
    cancelled = client.request("DELETE", location or "")
    expect(
        cancelled.status_code in (200, 202, 204, 404),
        f"$export cancel: expected 202 (or 404 once finished); {client.describe(cancelled)}",
    )


@check("regional", "subscription_topics")
def subscription_topics(client: Client) -> None:
    """Topic subscriptions are declared: Subscription served, its topics named, and ``$status`` served."""
    caps = client.capabilities()
    resources = {r.get("type"): r for r in rest_of(caps).get("resource", []) or []}
    if "Subscription" not in resources:
        skip("the CapabilityStatement does not declare Subscription")
    topics = [
        ext.get("valueCanonical")
        for ext in resources["Subscription"].get("extension", []) or []
        if ext.get("url") == TOPIC_EXTENSION
    ]
    topics += [
        ext.get("valueCanonical")
        for ext in rest_of(caps).get("extension", []) or []
        if ext.get("url") == TOPIC_EXTENSION
    ]
    expect(bool(topics), "Subscription is declared but the CapabilityStatement names no subscription topic")
    expect(declares_operation(caps, "status", "Subscription"), "Subscription is declared without $status")
