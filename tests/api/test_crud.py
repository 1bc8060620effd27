"""create, read, vread, update (and update-as-create), patch, delete, history, conditional headers."""

from __future__ import annotations

import time

from tests.api.fhirhttp import Fhir, patient


def test_create_read_vread(fhir, unique):
    api = Fhir(fhir)
    r = api.post("Patient", patient(unique))
    assert r.status_code == 201
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"].startswith(fhir.base + "/Patient/")
    assert r.headers["Location"].endswith("/_history/1")
    assert "GMT" in r.headers["Last-Modified"]
    created = r.json()
    assert created["meta"]["versionId"] == "1"
    read = api.get(f"Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["Content-Type"].startswith("application/fhir+json")
    v1 = api.get(f"Patient/{created['id']}/_history/1")
    assert v1.status_code == 200 and v1.json()["id"] == created["id"]
    assert api.get(f"Patient/{created['id']}/_history/2").status_code == 404


def test_update_versions_and_if_match(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    pid = created["id"]
    changed = dict(created, gender="female")
    r = api.put(f"Patient/{pid}", changed)
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"2"'
    stale = api.put(f"Patient/{pid}", changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    ok = api.put(f"Patient/{pid}", changed, headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "3"
    assert api.get(f"Patient/{pid}/_history/1").json()["gender"] == "male"


def test_update_as_create_with_client_id(fhir, unique):
    api = Fhir(fhir)
    pid = f"client-{unique}"
    body = dict(patient(unique), id=pid)
    r = api.put(f"Patient/{pid}", body)
    assert r.status_code == 201
    assert r.headers["Location"].endswith(f"/Patient/{pid}/_history/1")
    assert api.put(f"Patient/{pid}", body).status_code == 200


def test_update_id_mismatch_is_400(fhir, unique):
    api = Fhir(fhir)
    r = api.put(f"Patient/a-{unique}", dict(patient(unique), id=f"b-{unique}"))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]


def test_patch_json_patch(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    r = api.patch(f"Patient/{created['id']}", [{"op": "replace", "path": "/gender", "value": "female"}])
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "female" and r.json()["meta"]["versionId"] == "2"
    bad = api.patch(f"Patient/{created['id']}", [{"op": "replace", "path": "/gender", "value": "mann"}])
    assert bad.status_code in (400, 422)
    assert bad.json()["issue"][0]["expression"] == ["Patient.gender"]
    wrong_type = api.session.patch(api.url(f"Patient/{created['id']}"), json=[], headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_delete_then_gone(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    assert api.delete(f"Patient/{created['id']}").status_code == 204
    gone = api.get(f"Patient/{created['id']}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert api.get(f"Patient?_id={created['id']}").json()["total"] == 0
    # re-creating through update brings it back as a new version
    again = api.put(f"Patient/{created['id']}", dict(patient(unique), id=created["id"]))
    assert again.status_code == 201 and again.json()["meta"]["versionId"] == "3"


def test_history_instance_type_system_since(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    pid = created["id"]
    api.put(f"Patient/{pid}", dict(created, gender="female"))
    api.delete(f"Patient/{pid}")
    hist = api.search(f"Patient/{pid}/_history")
    assert hist["type"] == "history" and hist["total"] == 3
    methods = [e["request"]["method"] for e in hist["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]
    since = hist["entry"][1]["response"]["lastModified"]
    time.sleep(0.01)
    later = api.search(f"Patient/_history?_since={since}&_count=50")
    assert all(e["response"]["lastModified"] >= since for e in later["entry"])
    limited = api.search("_history?_count=1")
    assert len(limited["entry"]) == 1 and any(link["relation"] == "next" for link in limited["link"])


def test_conditional_read_headers(fhir, unique):
    api = Fhir(fhir)
    created = api.create(patient(unique))
    r = api.get(f"Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    r = api.get(f"Patient/{created['id']}", headers={"If-None-Match": 'W/"9"'})
    assert r.status_code == 200
    last_modified = api.get(f"Patient/{created['id']}").headers["Last-Modified"]
    assert api.get(f"Patient/{created['id']}", headers={"If-Modified-Since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert api.get(f"Patient/{created['id']}", headers={"If-Modified-Since": old}).status_code == 200


def test_prefer_return(fhir, unique):
    api = Fhir(fhir)
    minimal = api.post("Patient", patient(unique), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b"" and minimal.headers["Location"]
    outcome = api.post("Patient", patient(unique), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_header_and_query_form(fhir, unique):
    api = Fhir(fhir)
    body = patient(unique, identifier=[{"system": "urn:test:mrn", "value": unique}])
    first = api.post("Patient", body, headers={"If-None-Exist": f"identifier=urn:test:mrn|{unique}"})
    assert first.status_code == 201
    second = api.post("Patient", body, headers={"If-None-Exist": f"identifier=urn:test:mrn|{unique}"})
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    third = api.post(f"Patient?identifier=urn:test:mrn|{unique}", body)  # the form fhirpy sends
    assert third.status_code == 200 and third.json()["id"] == first.json()["id"]
    assert api.search(f"Patient?identifier=urn:test:mrn|{unique}")["total"] == 1


def test_conditional_update_and_delete(fhir, unique):
    api = Fhir(fhir)
    body = patient(unique, identifier=[{"system": "urn:test:mrn", "value": unique}])
    created = api.put(f"Patient?identifier=urn:test:mrn|{unique}", body)
    assert created.status_code == 201
    updated = api.put(f"Patient?identifier=urn:test:mrn|{unique}", dict(body, gender="female"))
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    removed = api.delete(f"Patient?identifier=urn:test:mrn|{unique}")
    assert removed.status_code == 200
    assert api.get(f"Patient/{created.json()['id']}").status_code == 410


def test_plain_read_and_application_read_agree(fhir, unique):
    """The WSGI fast path (plain GET by id) answers exactly as the application route does."""
    api = Fhir(fhir)
    created = api.create(patient(unique))
    fast = api.get(f"Patient/{created['id']}")
    routed = api.get(f"Patient/{created['id']}?_pretty=false")  # a query string takes the Flask route
    assert fast.content == routed.content
    skip = {"date", "server", "connection"}
    assert {k.lower(): v for k, v in fast.headers.items() if k.lower() not in skip} == {
        k.lower(): v for k, v in routed.headers.items() if k.lower() not in skip
    }
    api.delete(f"Patient/{created['id']}")
    assert api.get(f"Patient/{created['id']}").status_code == 410  # not the fast path's to answer
