"""The transaction-response of a referral: one entry per request entry, what the intake added named on the
referral's entry."""

from __future__ import annotations

from fhir_server.core.issues import Issue, operation_outcome


def one_response_per_request(
    response: dict, request_count: int, index: int, related: list[str], notes: list[Issue]
) -> None:
    """Cut a transaction-response to one entry per request entry, in place: what the intake added (the
    routing Task and Provenance) is named on the referral's entry instead, as ``link`` (relation
    ``related``) and in its ``response.outcome``."""
    added = [
        (e.get("response") or {}).get("location", "").split("/_history")[0] for e in response["entry"][request_count:]
    ]
    named = list(dict.fromkeys([*related, *(a for a in added if a)]))
    issues = [
        Issue(
            "information",
            "informational",
            f"stored with the referral: {location}",
            None,
            f"lagret sammen med henvisningen: {location}",
        )
        for location in named
    ]
    response["entry"] = response["entry"][:request_count]
    referral_entry = response["entry"][index]
    referral_entry["response"]["outcome"] = operation_outcome([*issues, *notes])
    if named:  # Bundle.entry.link: where a client finds them without reading the outcome's text
        referral_entry["link"] = [{"relation": "related", "url": location} for location in named]


def response_location(response: dict, rtype: str) -> str:
    for entry in response.get("entry", []):
        location = (entry.get("response") or {}).get("location", "")
        if location.startswith(rtype + "/"):
            return location.split("/_history")[0]
    return ""


def stored_anew_note(index: int, resource_type: str) -> Issue:
    """What the sender is told of a party whose identifier several stored resources carry."""
    return Issue(
        "information",
        "informational",
        f"several {resource_type} resources carry this identifier; the referral's copy was stored as a new one",
        f"Bundle.entry[{index}].resource.identifier",
    )
