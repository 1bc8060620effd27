"""Lenient where the national standard is lenient: a referral that is valid base R4, with an identifiable
patient and a sender, is taken in and routed; profile deviations and identifier check digits are warnings,
kept on the routing Task and returned to the sender; ``Prefer: handling=strict`` refuses them as before.
Refusals name the sender's own element (the Bundle entry, ``ServiceRequest...``, or the XML element)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.api.fhirhttp import Fhir
from tests.api.test_referral_doors import one_task, stored_referral
from tests.api.test_referral_intake import XML_DIR, referral, task_of

HUB = "https://fhir.referral-hub.no"
REFERRAL_SYSTEM = f"{HUB}/NamingSystem/referral-id"
PATIENT_PROFILE = f"{HUB}/StructureDefinition/hub-referral-patient"
REFERRAL_PROFILE = f"{HUB}/StructureDefinition/hub-referral-servicerequest"
TASK_INPUT = f"{HUB}/CodeSystem/hub-task-input"
STRICT = {"Prefer": "handling=strict"}
#: the two official examples valid against Henvisning-v2.0.xsd (Diagnosis minOccurs=0) refused before
VIDEREHENVISNING = (
    "Viderehenvisning_v2-0_Uten_rettighetsvurdering_Ny.xml",
    "Viderehenvisning_v2-0_Rettighetsvurdert_etter_ventetid_pakkeforlop_Ny.xml",
)


def expressions(issues: list[dict]) -> set[str]:
    return {x for i in issues for x in i.get("expression", [])}


def warnings_of(task: dict) -> list[dict]:
    """The validation warnings the routing Task keeps (contained OperationOutcome named by Task.output)."""
    (output,) = [
        o
        for o in task.get("output", [])
        if o["type"]["coding"][0] == {"system": TASK_INPUT, "code": "validation-warnings"}
    ]
    reference = output["valueReference"]["reference"]
    (outcome,) = [c for c in task["contained"] if f"#{c['id']}" == reference]
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"]


def stored_count(api: Fhir, unique: str) -> int:
    return api.search(f"ServiceRequest?identifier={REFERRAL_SYSTEM}|henv-{unique}")["total"]


def test_no_address_goes_to_manual_triage_with_warnings_kept_and_returned(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][0]["resource"].pop("address")
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    result = r.json()
    assert len(result["entry"]) == 8  # one response entry per request entry
    sent = result["entry"][5]["response"]["outcome"]["issue"]
    assert "Bundle.entry[0].resource.address" in expressions([i for i in sent if i["severity"] == "warning"])
    assert not [i for i in sent if i["severity"] in ("error", "fatal")]
    assert all(not x.startswith(("Bundle.entry[8]", "Bundle.entry[9]")) for x in expressions(sent))
    task = task_of(api, unique)
    assert task["owner"]["reference"].endswith("Organization/hub-manual-triage")
    assert task["statusReason"]["coding"][0]["code"] == "no-address"
    kept = warnings_of(task)
    assert "Patient.address" in expressions(kept)  # located in the stored resource the region reads
    # a resource that breaks a profile does not claim it; the patient breaks it, so does the referral
    referral_stored = api.get(task["focus"]["reference"]).json()
    patient = api.get(referral_stored["subject"]["reference"]).json()
    assert PATIENT_PROFILE not in patient.get("meta", {}).get("profile", [])
    assert REFERRAL_PROFILE not in referral_stored.get("meta", {}).get("profile", [])
    # the received date and deadline are stamped all the same
    urls = {e["url"] for e in referral_stored["extension"]}
    assert "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-vurdering" in urls


def test_a_conforming_referral_claims_its_profiles_and_has_no_warnings(fhir, unique):
    api = Fhir(fhir)
    r = api.post("", referral(unique))
    assert r.status_code == 200, r.text
    task = task_of(api, unique)
    assert not [o for o in task.get("output", []) if o["type"]["coding"][0]["code"] == "validation-warnings"]
    referral_stored = api.get(task["focus"]["reference"]).json()
    assert REFERRAL_PROFILE in referral_stored["meta"]["profile"]
    patient = api.get(referral_stored["subject"]["reference"]).json()
    assert PATIENT_PROFILE in patient["meta"]["profile"]


def test_strict_handling_refuses_the_profile_deviation_and_stores_nothing(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][0]["resource"].pop("address")
    r = api.post("", bundle, headers=STRICT)
    assert r.status_code == 422, r.text
    found = expressions([i for i in r.json()["issue"] if i["severity"] == "error"])
    assert "Bundle.entry[0].resource.address" in found
    assert all(int(x.split("[")[1].split("]")[0]) < 8 for x in found if x.startswith("Bundle.entry["))
    assert stored_count(api, unique) == 0


def test_bad_check_digits_with_name_and_birth_date_are_a_warning(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = "12345678901"
    r = api.post("", bundle)
    assert r.status_code == 200, r.text
    sent = r.json()["entry"][5]["response"]["outcome"]["issue"]
    assert "12345678901" not in str(sent)  # the number is masked in what is said of it
    assert "Bundle.entry[0].resource.identifier[0].value" in expressions(sent)
    assert "Patient.identifier[0].value" in expressions(warnings_of(task_of(api, unique)))


def test_an_unidentifiable_patient_is_refused_at_the_patient(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    patient = bundle["entry"][0]["resource"]
    patient["identifier"][0]["value"] = "12345678901"
    patient.pop("birthDate")
    r = api.post("", bundle)
    assert r.status_code == 422, r.text
    errors = [i for i in r.json()["issue"] if i["severity"] == "error"]
    assert expressions(errors) == {"Bundle.entry[0].resource.identifier"}
    assert stored_count(api, unique) == 0


def test_a_referral_without_a_sender_is_refused_at_the_requester(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][5]["resource"].pop("requester")
    r = api.post("", bundle)
    assert r.status_code == 422, r.text
    assert expressions(r.json()["issue"]) == {"Bundle.entry[5].resource.requester"}
    assert stored_count(api, unique) == 0


def test_base_r4_errors_still_refuse(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    bundle["entry"][5]["resource"]["status"] = "bogus"
    r = api.post("", bundle)
    assert r.status_code == 422, r.text
    assert "Bundle.entry[5].resource.status" in expressions(r.json()["issue"])
    assert stored_count(api, unique) == 0


def test_rest_door_returns_the_warnings_as_operation_outcome_and_honours_strict(fhir, unique):
    api = Fhir(fhir)
    body = stored_referral(api, unique)
    body.pop("reasonCode")  # the hub profile requires a reason; base R4 does not
    body.pop("reasonReference", None)
    strict = api.post("ServiceRequest", body, headers=STRICT)
    assert strict.status_code == 422, strict.text
    assert "ServiceRequest.reasonCode" in expressions(strict.json()["issue"])
    r = api.post("ServiceRequest", body, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    warned = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert "ServiceRequest.reasonCode" in expressions(warned)
    stored = api.get(r.headers["Location"].split("/fhir/")[1].split("/_history")[0]).json()
    assert REFERRAL_PROFILE not in stored.get("meta", {}).get("profile", [])
    assert "ServiceRequest.reasonCode" in expressions(warnings_of(one_task(api, stored["id"])))


def _post_xml(fhir, path: Path, headers: dict | None = None, unique: str = "") -> requests.Response:
    """Post an official example, its referral id (DocumentId) made ``unique`` (the examples share theirs)."""
    data = re.sub(
        rb"<DocumentId>([^<]+)</DocumentId>",
        rb"<DocumentId>\1-" + unique.encode() + rb"</DocumentId>",
        path.read_bytes(),
    )
    return requests.post(
        f"{fhir.base}/$process-message",
        data=data,
        timeout=60,
        headers={"Content-Type": "application/xml", "Accept": "application/fhir+json", **fhir.auth, **(headers or {})},
    )


def _xml_example(name: str) -> Path:
    path = XML_DIR / name
    if not path.is_file():
        pytest.skip(f"the official Henvisning example {name} is not at {XML_DIR}")
    return path


def test_xml_refusal_on_strict_handling_names_the_xml_elements(fhir, unique):
    r = _post_xml(fhir, _xml_example(VIDEREHENVISNING[1]), STRICT, unique)
    assert r.status_code == 422, r.text
    found = expressions(r.json()["issue"])
    assert found and all(x.startswith("MsgHead/") for x in found), found
    assert "MsgHead/Document/RefDoc/Content/Henvisning/Diagnosis/Concept[1]" in found


@pytest.mark.parametrize("name", VIDEREHENVISNING)
def test_official_xml_examples_valid_against_the_xsd_are_taken_in_and_routed(fhir, name, unique):
    r = _post_xml(fhir, _xml_example(name), unique=unique)
    assert r.status_code == 200, r.text
    header, outcome = (e["resource"] for e in r.json()["entry"])
    assert header["response"]["code"] == "ok"
    task_ref = next(f["reference"] for f in header["focus"] if f["reference"].startswith("Task/"))
    api = Fhir(fhir)
    task = api.get(task_ref).json()
    assert task["owner"]  # routed: a region, or manual triage
    warned = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert warned and all(x.startswith("MsgHead/") for x in expressions(warned)), warned
    assert warnings_of(task)
    referral_stored = api.get(task["focus"]["reference"]).json()
    if name == VIDEREHENVISNING[1]:  # ICD-10 C61 coded with the ATC code system (7180): kept as sent, warned
        coding = referral_stored["reasonCode"][0]["coding"][0]
        assert (coding["system"], coding["code"]) == ("urn:oid:2.16.578.1.12.4.1.1.7180", "C61")
        assert "MsgHead/Document/RefDoc/Content/Henvisning/Diagnosis/Concept[1]/@S" in expressions(warned)
    else:  # no Diagnosis (minOccurs=0): the hub profile's reason is missing, a warning at the referral
        assert "reasonCode" not in referral_stored
        assert "MsgHead/Document/RefDoc/Content/Henvisning" in expressions(warned)


def test_xml_cancellation_of_an_unknown_referral_names_the_document_id(fhir, unique):
    name = "Viderehenvisning_v2-0_Uten_rettighetsvurdering_Kansellering.xml"
    r = _post_xml(fhir, _xml_example(name), unique=unique)
    assert r.status_code == 404, r.text
    assert expressions(r.json()["issue"]) == {"MsgHead/Document/RefDoc/Content/Henvisning/DocumentId"}


def test_messaging_door_returns_the_warnings(fhir, unique):
    bundle = referral(unique)
    bundle["entry"][0]["resource"].pop("address")
    header = {
        "resourceType": "MessageHeader",
        "id": f"msg-{unique}",
        "eventCoding": {"system": f"{HUB}/CodeSystem/message-event", "code": "referral-new"},
        "source": {"endpoint": "urn:test:sender"},
    }
    message = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [{"fullUrl": f"urn:uuid:{unique}", "resource": header}]
        + [{"fullUrl": e["fullUrl"], "resource": e["resource"]} for e in bundle["entry"]],
    }
    r = requests.post(
        f"{fhir.base}/$process-message",
        json=message,
        timeout=60,
        headers={"Content-Type": "application/fhir+json", **fhir.auth},
    )
    assert r.status_code == 200, r.text
    outcome = r.json()["entry"][1]["resource"]
    assert "Bundle.entry[0].resource.address" in expressions(
        [i for i in outcome["issue"] if i["severity"] == "warning"]
    )
    assert task_of(Fhir(fhir), unique)["statusReason"]["coding"][0]["code"] == "no-address"


def test_an_update_replaces_the_warnings_the_task_keeps(fhir, unique):
    api = Fhir(fhir)
    body = {**stored_referral(api, unique), "id": f"ref-{unique}"}
    reasons = body.pop("reasonCode"), body.pop("reasonReference", None)
    created = api.put(f"ServiceRequest/ref-{unique}", body)
    assert created.status_code == 201, created.text
    assert "ServiceRequest.reasonCode" in expressions(warnings_of(one_task(api, f"ref-{unique}")))
    body["reasonCode"] = reasons[0]
    updated = api.put(f"ServiceRequest/ref-{unique}", body)
    assert updated.status_code == 200, updated.text
    task = one_task(api, f"ref-{unique}")  # the same Task (routing unchanged), now without warnings
    assert not [o for o in task.get("output", []) if o["type"]["coding"][0]["code"] == "validation-warnings"]
    assert REFERRAL_PROFILE in api.get(f"ServiceRequest/ref-{unique}").json()["meta"]["profile"]


def test_xml_patient_without_ident_is_identified_by_name_and_birth_date(fhir, unique):
    from tests.unit.mapping.test_henvisning_xml import message

    data = message(ident="").replace(b"ref-42", f"ref-{unique}".encode())
    headers = {"Content-Type": "application/xml", "Accept": "application/fhir+json", **fhir.auth}
    r = requests.post(f"{fhir.base}/$process-message", data=data, timeout=60, headers=headers)
    assert r.status_code == 200, r.text
    outcome = r.json()["entry"][1]["resource"]
    warned = [i for i in outcome["issue"] if i["severity"] == "warning"]
    assert "MsgHead/MsgInfo/Patient/Ident" in expressions(warned)
    unnamed = data.replace(b"<DateOfBirth>1985-03-15</DateOfBirth>", b"").replace(
        f"ref-{unique}".encode(), f"ref2-{unique}".encode()
    )
    refused = requests.post(f"{fhir.base}/$process-message", data=unnamed, timeout=60, headers=headers)
    assert refused.status_code == 422, refused.text
    assert "MsgHead/MsgInfo/Patient/Ident" in expressions(refused.json()["issue"])
