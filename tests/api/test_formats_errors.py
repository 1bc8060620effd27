"""Formats (JSON, XML, _format, _pretty, 406/415), errors as OperationOutcomes, base validation, metadata."""

from __future__ import annotations

import requests

from tests.api.fhirhttp import JSON, Fhir, patient

XML = "application/fhir+xml"


def test_xml_in_and_out(fhir, unique):
    api = Fhir(fhir)
    xml = (
        '<Patient xmlns="http://hl7.org/fhir"><meta><tag><system value="urn:test"/>'
        f'<code value="{unique}"/></tag></meta><name><family value="Hansen"/></name>'
        '<gender value="female"/></Patient>'
    )
    r = requests.post(
        f"{fhir.base}/Patient", data=xml.encode(), timeout=30, headers={"Content-Type": XML, "Accept": XML, **fhir.auth}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith(XML)
    assert b'<family value="Hansen"/>' in r.content
    pid = r.headers["Location"].split("/")[-3]
    as_json = api.get(f"Patient/{pid}").json()
    assert as_json["name"][0]["family"] == "Hansen"
    via_format = requests.get(f"{fhir.base}/Patient/{pid}?_format=xml", timeout=30, headers=fhir.auth)
    assert via_format.headers["Content-Type"].startswith(XML) and via_format.content.lstrip().startswith(b"<")
    bundle_xml = requests.get(
        f"{fhir.base}/Patient?_id={pid}&_format=application/fhir+xml", timeout=30, headers=fhir.auth
    )
    assert bundle_xml.status_code == 200 and b"<Bundle" in bundle_xml.content


def test_pretty_and_decimal_precision(fhir, unique):
    api = Fhir(fhir)
    body = (
        '{"resourceType":"Observation","meta":{"tag":[{"system":"urn:test","code":"' + unique + '"}]},'
        '"status":"final","code":{"text":"vekt"},"valueQuantity":{"value":72.50,"unit":"kg"}}'
    )
    r = requests.post(
        f"{fhir.base}/Observation", data=body.encode(), headers={"Content-Type": JSON, **fhir.auth}, timeout=30
    )
    assert r.status_code == 201, r.text
    assert b'"value":72.50' in r.content
    oid = r.json()["id"]
    assert b'"value":72.50' in api.get(f"Observation/{oid}").content
    pretty = api.get(f"Observation/{oid}?_pretty=true")
    assert b'\n  "resourceType"' in pretty.content and b"72.50" in pretty.content


def test_406_and_415(fhir):
    assert requests.get(f"{fhir.base}/metadata", headers={"Accept": "application/pdf"}, timeout=30).status_code == 406
    assert requests.get(f"{fhir.base}/metadata?_format=pdf", timeout=30).status_code == 406
    r = requests.post(
        f"{fhir.base}/Patient", data=b"x", headers={"Content-Type": "text/plain", **fhir.auth}, timeout=30
    )
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"


def test_bad_input_never_500(fhir):
    post = lambda data, path="Patient": requests.post(  # noqa: E731
        f"{fhir.base}/{path}", data=data, headers={"Content-Type": JSON, **fhir.auth}, timeout=30
    )
    cases = [
        b"{not json",
        b"[]",
        b'"text"',
        b'{"resourceType":"Observation"}',
        b'{"resourceType":"Patient","id":"' + b"x" * 70 + b'"}',
        b'{"resourceType":"Patient","name":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"resourceType":"Patient","birthDate":null}',
        b'{"resourceType":"Patient","identifier":[]}',
        b"\xff\xfe",
        b'{"resourceType":"Patient","active":NaN}',
        # an empty key in a resource that claims a profile (the profile engine once crashed on it)
        b'{"resourceType":"Patient","meta":{"profile":["https://fhir.referral-hub.no/StructureDefinition/'
        b'hub-referral-patient"]},"name":[{"":"x"}]}',
    ]
    for data in cases:
        r = post(data)
        assert 400 <= r.status_code < 500, (data[:60], r.status_code, r.text[:300])
        assert r.json()["resourceType"] == "OperationOutcome"
    assert requests.get(f"{fhir.base}/Patient/bad%20id", timeout=30, headers=fhir.auth).status_code == 400
    assert requests.get(f"{fhir.base}/NotAType/1", timeout=30, headers=fhir.auth).status_code == 404
    assert requests.get(f"{fhir.base}/Patient/does-not-exist", timeout=30, headers=fhir.auth).status_code == 404
    assert requests.delete(f"{fhir.base}/metadata", timeout=30).status_code == 405
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"a" * (11 * 1024 * 1024) + b'"}}'
    assert post(big).status_code == 413


def test_base_validation_reports_every_problem_with_paths(fhir, unique):
    api = Fhir(fhir)
    body = patient(unique, active="true", gender="mann", birthDate="1985-13-45")
    body["managingOrganization"] = {"reference": "Patient/123"}
    body["contact"] = [{}]
    r = api.post("Patient", body)
    assert r.status_code in (400, 422)
    expressions = {x for issue in r.json()["issue"] for x in issue.get("expression", [])}
    assert {
        "Patient.active",
        "Patient.gender",
        "Patient.birthDate",
        "Patient.managingOrganization.reference",
    } <= expressions, expressions
    assert any(e.startswith("Patient.contact[0]") for e in expressions)


def test_norwegian_messages(fhir, unique):
    r = requests.get(f"{fhir.base}/Patient/ukjent-{unique}", headers={"Accept-Language": "nb", **fhir.auth}, timeout=30)
    assert r.status_code == 404
    assert "finnes ikke" in r.json()["issue"][0]["diagnostics"]


def test_capability_statement_parses_in_strict_r4_models(fhir):
    from fhirclient.models.capabilitystatement import CapabilityStatement

    body = requests.get(f"{fhir.base}/metadata", timeout=30).json()
    statement = CapabilityStatement(body, strict=True)
    assert statement.fhirVersion == "4.0.1"
    resources = {r.type: r for r in statement.rest[0].resource}
    assert "ServiceRequest" in resources and "MedicinalProduct" not in resources
    params = {p.name for p in resources["ServiceRequest"].searchParam}
    assert {"subject", "status", "authored", "category", "requester", "_id", "_lastUpdated"} <= params
    assert {i.code for i in statement.rest[0].interaction} >= {"transaction", "batch"}
    assert (
        requests.get(f"{fhir.base}/metadata", headers={"Accept": XML}, timeout=30).content.find(b"<CapabilityStatement")
        >= 0
    )
