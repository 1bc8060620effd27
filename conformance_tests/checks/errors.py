"""Areas ``errors`` and ``formats``: refusals are OperationOutcomes naming the element; XML by ``_format``."""

from __future__ import annotations

import requests
from lxml import etree

from conformance_tests.client import Client
from conformance_tests.fhirdata import patient
from conformance_tests.registry import CheckFailed, check, expect

FHIR_NS = "http://hl7.org/fhir"


def expect_outcome(client: Client, r: requests.Response, statuses: tuple[int, ...], what: str) -> dict:
    """The response has one of ``statuses`` and an OperationOutcome with an error or fatal issue."""
    expect(r.status_code in statuses, f"{what}: expected HTTP {' or '.join(map(str, statuses))}; {client.describe(r)}")
    try:
        body = r.json()
    except ValueError:
        body = None
    expect(
        isinstance(body, dict) and body.get("resourceType") == "OperationOutcome",
        f"{what}: expected an OperationOutcome body; {client.describe(r)}",
    )
    severities = [i.get("severity") for i in body.get("issue", [])]
    expect(
        {"error", "fatal"} & set(severities), f"{what}: the OperationOutcome has no error or fatal issue: {severities}"
    )
    return body


def expressions(outcome: dict) -> list[str]:
    return [x for issue in outcome.get("issue", []) for x in issue.get("expression", []) or []]


@check("errors", "malformed_json")
def malformed_json(client: Client) -> None:
    """A body that is not JSON gives 400 with an OperationOutcome."""
    r = client.request(
        "POST",
        "Patient",
        data=b'{"resourceType": "Patient", "gender": ',
        headers={"Content-Type": "application/fhir+json"},
    )
    expect_outcome(client, r, (400,), "POST Patient with malformed JSON")


@check("errors", "wrong_resource_type")
def wrong_resource_type(client: Client) -> None:
    """POST [type] with a body of another resourceType gives 400 with an OperationOutcome."""
    tag = client.new_tag()
    body = patient(tag)
    r = client.post("Observation", body)
    if r.status_code == 201:
        client.track(r.headers.get("Location"))
    expect_outcome(client, r, (400,), "POST Observation with a Patient body")


@check("errors", "unknown_type")
def unknown_type(client: Client) -> None:
    """A resource type the server does not know gives 404 with an OperationOutcome."""
    expect_outcome(client, client.get("NotAResourceType/1"), (404,), "GET NotAResourceType/1")


@check("errors", "unsupported_media_type")
def unsupported_media_type(client: Client) -> None:
    """A body sent as text/plain gives 415 Unsupported Media Type with an OperationOutcome."""
    r = client.request("POST", "Patient", data=b'{"resourceType": "Patient"}', headers={"Content-Type": "text/plain"})
    expect_outcome(client, r, (415,), "POST Patient with Content-Type text/plain")


@check("errors", "expression")
def expression(client: Client) -> None:
    """An invalid resource is refused (400/422) with issues naming each bad element as a FHIRPath expression."""
    tag = client.new_tag()
    bad = patient(tag)
    bad["birthDate"] = "15.03.1985"
    bad["gender"] = "mann"
    r = client.post("Patient", bad)
    if r.status_code == 201:
        client.track(r.headers.get("Location"))
    outcome = expect_outcome(client, r, (400, 422), "POST Patient with birthDate 15.03.1985 and gender mann")
    found = expressions(outcome)
    for wanted in ("Patient.birthDate", "Patient.gender"):
        expect(
            any(x == wanted or x.startswith(wanted + ".") or x.startswith(wanted + "[") for x in found),
            f"OperationOutcome: expected an issue with expression {wanted}; got expressions {found}",
        )


@check("formats", "xml")
def xml(client: Client) -> None:
    """``_format=xml`` returns the resource as FHIR XML (application/fhir+xml) with the same id."""
    tag = client.new_tag()
    created = client.create(patient(tag, family="Xmlsen"))
    r = client.get(f"Patient/{created['id']}", params={"_format": "xml"})
    expect(r.status_code == 200, f"GET Patient/id?_format=xml: expected 200; {client.describe(r)}")
    ctype = r.headers.get("Content-Type", "")
    expect(
        ctype.startswith("application/fhir+xml"),
        f"_format=xml: expected Content-Type application/fhir+xml, got {ctype!r}",
    )
    try:
        root = etree.fromstring(r.content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise CheckFailed(f"_format=xml: the body is not XML ({exc}); {client.describe(r, 200)}") from exc
    expect(
        root.tag == f"{{{FHIR_NS}}}Patient", f"_format=xml: expected root element Patient in {FHIR_NS}, got {root.tag}"
    )
    ids = root.findall(f"{{{FHIR_NS}}}id")
    got = ids[0].get("value") if ids else None
    expect(got == created["id"], f'_format=xml: expected <id value="{created["id"]}"/>, got {got!r}')
    family = root.find(f"{{{FHIR_NS}}}name/{{{FHIR_NS}}}family")
    expect(family is not None and family.get("value") == "Xmlsen", "_format=xml: name.family is missing or changed")
