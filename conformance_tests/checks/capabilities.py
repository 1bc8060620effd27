"""Area ``capabilities``: ``/metadata`` is a valid R4 CapabilityStatement that tells the truth."""

from __future__ import annotations

from conformance_tests.client import Client
from conformance_tests.fhirdata import interactions_of, resource_of, rest_of
from conformance_tests.registry import CheckFailed, check, expect, skip

#: Types the REST checks use, and the interactions the kit expects each to declare.
KIT_TYPES = ("Patient", "Observation")
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch")
#: A harmless value per search parameter type, to prove a declared parameter is understood.
PROBE_VALUES = {
    "token": "urn:conformance-kit|none",
    "string": "zz-conformance-kit",
    "date": "ge1900-01-01",
    "reference": "conformance-kit-none",
    "number": "1",
    "quantity": "1",
    "uri": "http://example.org/conformance-kit",
}
#: Types whose every declared search parameter is probed (kept small so the run stays fast).
PROBED_TYPES = ("Patient", "Observation", "ServiceRequest", "Task")


@check("capabilities", "metadata_r4")
def metadata_is_r4(client: Client) -> None:
    """GET /metadata returns a CapabilityStatement for FHIR 4.0.1 that fhirclient's strict R4 models accept."""
    caps = client.capabilities()
    expect(caps.get("fhirVersion") == "4.0.1", f"fhirVersion: expected 4.0.1, got {caps.get('fhirVersion')!r}")
    expect(caps.get("kind") in ("instance", "capability"), f"kind: expected instance, got {caps.get('kind')!r}")
    expect(rest_of(caps), "rest: no entry with mode 'server'")
    try:
        from fhirclient.models.capabilitystatement import CapabilityStatement
    except ImportError:
        skip("the fhirclient package is not installed (pip install fhirclient) to check the strict R4 model")
    try:
        CapabilityStatement(caps, strict=True)
    except Exception as exc:
        raise CheckFailed(f"fhirclient's strict R4 CapabilityStatement model refuses /metadata: {exc}") from exc


@check("capabilities", "formats")
def declares_json(client: Client) -> None:
    """The CapabilityStatement declares JSON (``json`` or ``application/fhir+json``) and JSON Patch."""
    caps = client.capabilities()
    formats = caps.get("format", []) or []
    expect(
        {"json", "application/fhir+json"} & set(formats), f"format: expected json or application/fhir+json in {formats}"
    )
    patch_formats = caps.get("patchFormat", []) or []
    if "patch" in interactions_of(caps, "Patient"):
        expect(
            "application/json-patch+json" in patch_formats,
            f"patchFormat: patch is declared but application/json-patch+json is not in {patch_formats}",
        )


@check("capabilities", "interactions")
def declares_interactions(client: Client) -> None:
    """Patient and Observation declare the interactions the kit exercises; transaction and batch are declared."""
    caps = client.capabilities()
    problems = []
    for rtype in KIT_TYPES:
        if resource_of(caps, rtype) is None:
            problems.append(f"{rtype} is not declared in rest.resource")
            continue
        missing = [i for i in TYPE_INTERACTIONS if i not in interactions_of(caps, rtype)]
        if missing:
            problems.append(f"{rtype} does not declare {', '.join(missing)}")
    system = {i.get("code") for i in rest_of(caps).get("interaction", []) or []}
    missing = [i for i in SYSTEM_INTERACTIONS if i not in system]
    if missing:
        problems.append(f"rest.interaction does not declare {', '.join(missing)}")
    expect(not problems, "; ".join(problems))


@check("capabilities", "search_params_understood")
def declared_search_params_work(client: Client) -> None:
    """Every search parameter declared on Patient, Observation, ServiceRequest and Task is accepted in strict mode."""
    caps = client.capabilities()
    problems = []
    probed = 0
    for rtype in PROBED_TYPES:
        res = resource_of(caps, rtype)
        if res is None or "search-type" not in interactions_of(caps, rtype):
            continue
        for param in res.get("searchParam", []) or []:
            value = PROBE_VALUES.get(param.get("type", ""))
            name = param.get("name")
            if value is None or not name:
                continue
            probed += 1
            r = client.get(rtype, params={name: value, "_count": "1"}, headers={"Prefer": "handling=strict"})
            if r.status_code != 200:
                problems.append(f"{rtype}?{name}={value} -> {r.status_code}")
    expect(probed, "no declared search parameter on Patient, Observation, ServiceRequest or Task to probe")
    expect(not problems, f"declared search parameters refused under 'Prefer: handling=strict': {'; '.join(problems)}")
