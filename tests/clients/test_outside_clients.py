"""Real FHIR clients that nobody here wrote, driving a running server unchanged: fhirpy and fhirclient."""

from __future__ import annotations

import uuid

from fhirpy import SyncFHIRClient


def _patient(client: SyncFHIRClient, tag: str, family: str):  # type: ignore[no-untyped-def]
    return client.resource(
        "Patient",
        meta={"tag": [{"system": "urn:test:clients", "code": tag}]},
        name=[{"family": family}],
        gender="female",
    )


def test_fhirpy_crud_conditional_create_count_include_paging(fhir):
    client = SyncFHIRClient(fhir.base, authorization=fhir.auth["Authorization"])
    tag = uuid.uuid4().hex[:12]
    created = []
    for i in range(7):
        patient = _patient(client, tag, f"Client{i}")
        patient.save()
        created.append(patient.id)
    search = client.resources("Patient").search(_tag=f"urn:test:clients|{tag}")
    assert search.count() == 7  # fhirpy sends _count=0&_totalMethod=count
    everyone = search.limit(3).fetch_all()  # follows next links
    assert sorted(p.id for p in everyone) == sorted(created)
    # conditional create in the query string (POST [type]?params), as fhirpy sends it
    identifier = f"urn:test:clients|{tag}"
    body = _patient(client, tag, "Conditional")
    body["identifier"] = [{"system": "urn:test:clients", "value": tag}]
    first, was_created = client.resources("Patient").search(identifier=identifier).get_or_create(body)
    again, created_again = client.resources("Patient").search(identifier=identifier).get_or_create(body)
    assert was_created is True and created_again is False and first.id == again.id
    # update, read back, delete
    first["gender"] = "other"
    first.save()
    assert client.resources("Patient").search(_id=first.id).first()["gender"] == "other"
    # include: a ServiceRequest with its subject
    request = client.resource(
        "ServiceRequest",
        status="active",
        intent="order",
        subject={"reference": f"Patient/{first.id}"},
        meta={"tag": [{"system": "urn:test:clients", "code": tag}]},
    )
    request.save()
    bundle = (
        client.resources("ServiceRequest")
        .search(_tag=f"urn:test:clients|{tag}")
        .include("ServiceRequest", "subject")
        .fetch_raw()
    )
    kinds = sorted(e["resource"]["resourceType"] for e in bundle["entry"])
    assert kinds == ["Patient", "ServiceRequest"]
    first.delete()
    assert client.resources("Patient").search(_id=first.id).count() == 0


def test_fhirclient_strict_models_metadata_and_paging(fhir):
    from fhirclient import client as smart_client
    from fhirclient.models.capabilitystatement import CapabilityStatement
    from fhirclient.models.patient import Patient

    smart = smart_client.FHIRClient(settings={"app_id": "referral-hub-tests", "api_base": fhir.base + "/"})
    statement = CapabilityStatement.read_from("metadata", smart.server)  # strict R4 model (public)
    smart.server.session.headers.update(fhir.auth)  # a backend client's bearer token on every request
    assert statement.fhirVersion == "4.0.1"
    tag = uuid.uuid4().hex[:12]
    fhirpy_client = SyncFHIRClient(fhir.base, authorization=fhir.auth["Authorization"])
    ids = set()
    for i in range(5):
        patient = _patient(fhirpy_client, tag, f"Smart{i}")
        patient.save()
        ids.add(patient.id)
    search = Patient.where(struct={"_tag": f"urn:test:clients|{tag}", "_count": "2"})
    found = {p.id for p in search.perform_resources_iter(smart.server)}  # follows next links
    assert found == ids
