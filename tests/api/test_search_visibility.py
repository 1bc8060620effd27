"""Searches tell nothing of what the caller may not see (issue 15, findings 3, 4 and 5), over HTTP.

Helse Vest attacks Helse Nord's referral (and an EHR its neighbours') with an ordinary token:
``_has`` and chains at any depth, conditional creates, updates, deletes and references, counts,
another caller's paging links, and includes of types its scopes do not grant. Each attack must
find nothing; the same question from the party entitled to the answer still gets it (the control).
Reuses the ``world`` of ``test_security.py``: referral A routed to Helse Vest, B to Helse Nord.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

from tests.api.fhirhttp import Fhir, ids
from tests.api.test_referral_intake import HN, HV
from tests.api.test_security import EHR_A, REGION_SCOPES, world  # noqa: F401 (a fixture)

ICD10 = "urn:oid:2.16.578.1.12.4.1.1.7110"
#: Helse Vest's system, also writing clinical resources of its own (to point at what it cannot see)
WRITER_SCOPES = [
    *REGION_SCOPES,
    "system/Condition.cruds",
    "system/Encounter.crs",
    "system/Patient.crs",
    "system/Organization.rs",
]


def vest_writer(fhir, region: str = HV) -> Fhir:  # type: ignore[no-untyped-def]
    """Helse Vest's (or another region's) system with scopes for clinical resources and the directory."""
    return Fhir(fhir, fhir.token(WRITER_SCOPES, region, client_id="helse-vest" if region == HV else "helse-nord"))


def identity(admin: Fhir, patient: str) -> str:
    """``system|value`` of a patient's national identity number."""
    identifier = admin.get(patient).json()["identifier"][0]
    return f"{identifier['system']}|{identifier['value']}"


def condition(subject: str, code: str, **extra: object) -> dict:
    return {
        "resourceType": "Condition",
        "subject": {"reference": subject},
        "code": {"coding": [{"system": ICD10, "code": code}]},
        **extra,
    }


def total(api: Fhir, query: str) -> int:
    return api.search(query + "&_total=accurate")["total"]


def test_has_reveals_no_other_regions_referral(world, fhir):  # noqa: F811
    clients, a, b = world
    vest, nord = vest_writer(fhir), vest_writer(fhir, HN)
    fnr_b = identity(clients["admin"], b.patient)
    owners = f"Organization?_has:Task:owner:patient.identifier={fnr_b}"
    assert total(nord, owners) >= 1  # Helse Nord's own referral: its owner organisation is found
    assert total(vest, owners) == 0
    assert vest.search(owners + "&_summary=count")["total"] == 0
    assert total(vest, f"Organization?_has:Task:owner:patient.identifier={identity(clients['admin'], a.patient)}") >= 1
    # the example chain: referrals of a patient Helse Vest cannot see
    referrals = f"ServiceRequest?subject:Patient.identifier={fnr_b}"
    assert ids(nord.search(referrals)) == [b.service_request.split("/")[1]]
    assert total(vest, referrals) == 0


def test_has_reveals_no_diagnosis_held_elsewhere_at_any_depth(world, fhir):  # noqa: F811
    clients, a, _ = world
    admin, writer = clients["admin"], vest_writer(fhir)
    patient_a = a.patient.split("/")[1]
    encounter = writer.create({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                               "subject": {"reference": a.patient}})  # fmt: skip
    code = f"F20.{uuid.uuid4().int % 10**6}"  # a diagnosis only the administrator's organisation holds
    admin.create(condition(a.patient, code, encounter={"reference": f"Encounter/{encounter['id']}"}))
    queries = [
        f"Patient?_id={patient_a}&_has:Condition:subject:code={code}",
        f"Patient?_id={patient_a}&_has:Encounter:subject:_has:Condition:encounter:code={code}",
        f"Encounter?_id={encounter['id']}&_has:Condition:encounter:code={code}",
    ]
    for query in queries:
        assert total(admin, query) == 1, query  # the administrator sees the diagnosis: the query works
        assert total(writer, query) == 0, query  # Helse Vest sees the patient and encounter, not the diagnosis
        assert writer.search(query + "&_summary=count")["total"] == 0
    # its own referral's diagnosis is found through the same _has
    assert total(writer, f"Patient?_id={patient_a}&_has:Condition:subject:code=F32.1") == 1
    # a token without Condition scopes cannot reach Conditions through _has at all
    refused = clients["vest"].get(queries[0])
    assert refused.status_code == 403 and "system/Condition.rs" in refused.text


def test_chains_join_only_through_visible_resources_at_any_depth(world, fhir):  # noqa: F811
    clients, a, b = world
    admin, writer = clients["admin"], vest_writer(fhir)
    fnr_b = identity(admin, b.patient)
    code = f"Z{uuid.uuid4().int % 10**6}"
    # Helse Vest's own resources that point at Helse Nord's patient (visible to it; the patient is not)
    direct = writer.create(condition(b.patient, code))
    encounter = writer.create({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                               "subject": {"reference": b.patient}})  # fmt: skip
    nested = writer.create(condition(a.patient, code, encounter={"reference": f"Encounter/{encounter['id']}"}))
    one = f"Condition?code={code}&subject:Patient.identifier={fnr_b}"
    two = f"Condition?code={code}&encounter.subject:Patient.identifier={fnr_b}"
    assert ids(admin.search(one)) == [direct["id"]]
    assert ids(admin.search(two)) == [nested["id"]]
    for query in (one, two):
        assert total(writer, query) == 0, query
    assert total(writer, f"Condition?code={code}") == 2  # its own Conditions, found without the chain


def test_conditional_interactions_match_only_what_the_caller_sees(world, fhir):  # noqa: F811
    """Something the caller cannot see is no match, also when a condition only joins through it: a
    conditional create makes the caller's own (201), a conditional update creates, a conditional
    delete deletes nothing, a conditional reference resolves to nothing, exactly as when no such
    resource exists (HAPI's answers without a match; never 412, which would tell it exists)."""
    clients, a, b = world
    admin, writer = clients["admin"], vest_writer(fhir)
    fnr_b = identity(admin, b.patient)
    hidden_code, own_code = f"F20.{uuid.uuid4().int % 10**6}", f"Z{uuid.uuid4().int % 10**6}"
    unknown = f"F99.{uuid.uuid4().int % 10**6}"  # held by nobody
    hidden = admin.create(condition(a.patient, hidden_code))  # a diagnosis of Helse Vest's patient held elsewhere
    own = writer.create(condition(b.patient, own_code))  # Helse Vest's Condition pointing at Helse Nord's patient
    patient_a = a.patient.split("/")[1]
    # If-None-Exist through _has and through a chain
    has = f"_id={patient_a}&_has:Condition:subject:code={hidden_code}"
    assert admin.post("Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": has}).status_code == 200
    created = writer.post("Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": has})
    assert created.status_code == 201 and created.json()["id"] != patient_a
    chained = f"code={own_code}&subject:Patient.identifier={fnr_b}"
    assert (
        admin.post("Condition", condition(a.patient, own_code), headers={"If-None-Exist": chained}).status_code == 200
    )
    created = writer.post("Condition", condition(a.patient, own_code), headers={"If-None-Exist": chained})
    assert created.status_code == 201 and created.json()["id"] != own["id"]
    # plain If-None-Exist on a resource the caller cannot see: no match
    plain = writer.post("Condition", condition(a.patient, "F32.1"), headers={"If-None-Exist": f"code={hidden_code}"})
    assert plain.status_code == 201 and plain.json()["id"] != hidden["id"]
    # conditional update and delete through the chain: its own Condition is not matched, nothing is changed
    update = writer.put(f"Condition?{chained}", condition(a.patient, "F32.1"))
    assert update.status_code == 201 and update.json()["id"] != own["id"], update.text
    deleted = writer.delete(f"Condition?{chained}")
    assert deleted.status_code == 200 and "deleted 0" in deleted.text
    assert writer.get(f"Condition/{own['id']}").json()["code"] == own["code"]
    assert admin.get(f"Condition/{hidden['id']}").status_code == 200
    # conditional references in a transaction: the same answer as for a patient nobody holds
    answers = []
    for reference in (
        f"Patient?identifier={fnr_b}",
        "Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|01010000000",
        f"Patient?_has:Condition:subject:code={hidden_code}",
        f"Patient?_has:Condition:subject:code={unknown}",
    ):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": condition(reference, "F32.1"), "request": {"method": "POST", "url": "Condition"}}],
        }
        r = writer.post("", bundle)
        answers.append((r.status_code, r.json()["issue"][0]["code"] if r.status_code != 200 else ""))
    assert answers == [(404, "not-found")] * 4, answers


def next_link(bundle: dict) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == "next")


def test_paging_links_belong_to_the_caller_who_searched(world, fhir):  # noqa: F811
    clients, _, b = world
    admin, writer = clients["admin"], vest_writer(fhir)
    tag = uuid.uuid4().hex[:10]
    for _ in range(3):
        writer.create({"resourceType": "Patient", "name": [{"family": f"Paging{tag}"}]})
    fnr_b = identity(admin, b.patient).split("|")[1]
    first = clients["vest"].search(f"Patient?family=Paging{tag}&identifier:not={fnr_b}&_count=1&_total=accurate")
    assert first["total"] == 3
    link = next_link(first)
    path = link[link.index("?") :]
    snapshot = parse_qs(urlparse(link).query)["_getpages"][0]
    others = {
        "helse-nord": clients["nord"],
        "ehr-a": clients["ehr_a"],
        "administrator": admin,
        "helse-bergen (same region, another client)": clients["bergen"],
        "its client id, another organisation": Fhir(fhir, fhir.token(REGION_SCOPES, HN, client_id="helse-vest")),
    }
    unknown = clients["vest"].get(path.replace(snapshot, str(uuid.uuid4())))
    for who, api in others.items():
        r = api.get(path)
        assert r.status_code == unknown.status_code == 410, (who, r.status_code)
        for secret in (fnr_b, tag, '"total"'):
            assert secret not in r.text, (who, secret)
    # the caller who searched pages on, with a fresh token of the same client
    again = Fhir(fhir, fhir.token(REGION_SCOPES, HV, client_id="helse-vest")).search(path)
    assert again["total"] == 3 and len(ids(again)) == 1


def test_includes_are_limited_to_the_types_the_token_reads(world, fhir):  # noqa: F811
    clients, a, _ = world
    patient_a = a.patient.split("/")[1]
    query = (
        f"Patient?_id={patient_a}&_include=*&_revinclude=ServiceRequest:subject&_revinclude=Task:patient"
        "&_include:iterate=ServiceRequest:requester"
    )
    # the EHR's own token reading every type includes its referral, its Task and the GP (the control)
    full = Fhir(fhir, fhir.token(["system/*.rs"], EHR_A, client_id="ehr-a")).search(query)
    assert {"ServiceRequest", "Practitioner", "Task"} <= {e["resource"]["resourceType"] for e in full["entry"]}
    patients_only = Fhir(fhir, fhir.token(["system/Patient.rs"], EHR_A, client_id="ehr-a"))
    narrow = patients_only.search(query)
    kinds = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in narrow["entry"]}
    assert kinds == {("Patient", "match"), ("OperationOutcome", "outcome")}, kinds
    outcome = next(e["resource"] for e in narrow["entry"] if e["search"]["mode"] == "outcome")
    note = next(i for i in outcome["issue"] if i["code"] == "suppressed")
    assert all(t in note["diagnostics"] for t in ("Practitioner", "ServiceRequest", "Task")), note
    # a region's directory token: organisations, never the Tasks they own
    owner = clients["admin"].search(f"Organization?_has:Task:owner:_id={a.task.split('/')[1]}")
    assert owner["total"] >= 1
    org_query = f"Organization?_id={ids(owner)[0]}&_revinclude=Task:owner"
    assert "Task" in {e["resource"]["resourceType"] for e in clients["admin"].search(org_query)["entry"]}
    directory = Fhir(fhir, fhir.token(["system/Organization.rs"], HV, client_id="helse-vest"))
    found = directory.search(org_query)
    assert {e["resource"]["resourceType"] for e in found["entry"]} == {"Organization", "OperationOutcome"}
    assert "Task" in str(next(e for e in found["entry"] if e["search"]["mode"] == "outcome"))
