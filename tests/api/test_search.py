"""Search: parameter types, modifiers, prefixes, chaining, _has, includes, sort, paging, summary."""

from __future__ import annotations

import pytest

from tests.api.fhirhttp import Fhir, ids, patient


@pytest.fixture
def referral_data(fhir, unique):
    """A Patient, two Organizations, a Practitioner and three ServiceRequests tagged with ``unique``."""
    api = Fhir(fhir)
    tag = {"system": "urn:test", "code": unique}
    pat = api.create(patient(unique, family="Østby"))
    other = api.create(patient(unique, family="Andersen", gender="female", birthDate="2010-06-01"))
    org = api.create(
        {
            "resourceType": "Organization",
            "meta": {"tag": [tag]},
            "name": f"Helse Vest {unique}",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983658725"}],
        }
    )
    prac = api.create({"resourceType": "Practitioner", "meta": {"tag": [tag]}, "name": [{"family": "Lege"}]})
    requests_ = []
    for i, (status, date, subject) in enumerate(
        [("active", "2026-04-01", pat), ("draft", "2026-05-17", pat), ("active", "2025-12-31", other)]
    ):
        requests_.append(
            api.create(
                {
                    "resourceType": "ServiceRequest",
                    "meta": {"tag": [tag]},
                    "identifier": [{"system": "urn:test:henvisning", "value": f"{unique}-{i}"}],
                    "status": status,
                    "intent": "order",
                    # not a referral (3457005), so it is stored as it is
                    "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "409063005"}]}],
                    "priority": "routine" if i else "urgent",
                    "subject": {"reference": f"Patient/{subject['id']}"},
                    "requester": {"reference": f"Practitioner/{prac['id']}"},
                    "performer": [{"reference": f"Organization/{org['id']}"}],
                    "authoredOn": date,
                    "occurrenceDateTime": date + "T10:00:00+02:00",
                }
            )
        )
    return {
        "api": api,
        "tag": f"urn:test|{unique}",
        "patient": pat,
        "other": other,
        "org": org,
        "prac": prac,
        "sr": requests_,
    }


def test_token_string_and_modifiers(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    sr_ids = [s["id"] for s in d["sr"]]
    assert sorted(ids(api.search(f"ServiceRequest?_tag={tag}&status=active"))) == sorted([sr_ids[0], sr_ids[2]])
    assert ids(api.search(f"ServiceRequest?_tag={tag}&status:not=active")) == [sr_ids[1]]
    assert len(ids(api.search(f"ServiceRequest?_tag={tag}&category=http://snomed.info/sct|409063005"))) == 3
    assert ids(api.search(f"ServiceRequest?_tag={tag}&category=http://loinc.org|409063005")) == []
    assert len(ids(api.search(f"ServiceRequest?_tag={tag}&status=active,draft"))) == 3  # OR
    # string: prefix, accent- and case-insensitive; :exact; :contains
    assert ids(api.search(f"Patient?_tag={tag}&family=ostb")) == [d["patient"]["id"]]
    assert ids(api.search(f"Patient?_tag={tag}&family:exact=Østby")) == [d["patient"]["id"]]
    assert ids(api.search(f"Patient?_tag={tag}&family:exact=østby")) == []
    assert ids(api.search(f"Patient?_tag={tag}&name:contains=dersen")) == [d["other"]["id"]]
    # AND by repetition
    assert ids(api.search(f"Patient?_tag={tag}&gender=female&gender=male")) == []


def test_date_prefixes(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    sr = [s["id"] for s in d["sr"]]
    q = f"ServiceRequest?_tag={tag}&authored="
    assert ids(api.search(q + "2026-04-01")) == [sr[0]]
    assert sorted(ids(api.search(q + "ge2026-04-01"))) == sorted(sr[:2])
    assert ids(api.search(q + "lt2026-01-01")) == [sr[2]]
    assert sorted(ids(api.search(q + "ne2026-04-01"))) == sorted([sr[1], sr[2]])
    assert ids(api.search(q + "sa2026-04-30")) == [sr[1]]
    assert ids(api.search(q + "eb2026-01-01")) == [sr[2]]
    assert sorted(ids(api.search(q + "2026"))) == sorted(sr[:2])
    # a dateTime with a zone, compared in UTC: 10:00+02:00 is 08:00Z
    occ = f"ServiceRequest?_tag={tag}&occurrence="
    assert ids(api.search(occ + "gt2026-04-01T08:30:00Z")) == [sr[1]]  # 10:00+02:00 is 08:00Z: not after
    assert sr[0] in ids(api.search(occ + "le2026-04-01T08:00:00Z"))
    bad = api.get(q + "01.04.2026")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["authored"]


def test_reference_chain_has_and_missing(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    sr = [s["id"] for s in d["sr"]]
    pid = d["patient"]["id"]
    assert sorted(ids(api.search(f"ServiceRequest?_tag={tag}&subject=Patient/{pid}"))) == sorted(sr[:2])
    assert sorted(ids(api.search(f"ServiceRequest?_tag={tag}&subject:Patient={pid}"))) == sorted(sr[:2])
    assert sorted(ids(api.search(f"ServiceRequest?_tag={tag}&patient={pid}"))) == sorted(sr[:2])
    chained = api.search(f"ServiceRequest?_tag={tag}&subject:Patient.family=Andersen")
    assert ids(chained) == [sr[2]]
    by_identifier = api.search(
        f"ServiceRequest?_tag={tag}&performer:Organization.identifier=urn:oid:2.16.578.1.12.4.1.4.101|983658725"
    )
    assert len(ids(by_identifier)) == 3
    has = api.search(f"Patient?_tag={tag}&_has:ServiceRequest:subject:status=draft")
    assert ids(has) == [pid]
    assert ids(api.search(f"ServiceRequest?_tag={tag}&specimen:missing=false")) == []
    assert len(ids(api.search(f"ServiceRequest?_tag={tag}&specimen:missing=true"))) == 3


def test_include_revinclude_iterate(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    bundle = api.search(
        f"ServiceRequest?_tag={tag}&status=draft&_include=ServiceRequest:subject&_include=ServiceRequest:requester"
    )
    assert len(ids(bundle)) == 1
    included = {e["resource"]["resourceType"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included == {"Patient", "Practitioner"}
    rev = api.search(f"Patient?_id={d['patient']['id']}&_revinclude=ServiceRequest:subject")
    assert len(ids(rev, "include")) == 2
    # iterate: from a Task to its focus ServiceRequest, then on to the subject Patient
    task = api.create(
        {
            "resourceType": "Task",
            "meta": {"tag": [{"system": "urn:test", "code": tag.split("|")[1]}]},
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": f"ServiceRequest/{d['sr'][0]['id']}"},
            "owner": {"reference": f"Organization/{d['org']['id']}"},
        }
    )
    queue = api.search(
        "Task?owner:Organization.identifier=urn:oid:2.16.578.1.12.4.1.4.101|983658725&status=requested"
        f"&_tag={tag}&_include=Task:focus&_include:iterate=ServiceRequest:subject"
    )
    assert ids(queue) == [task["id"]]
    kinds = sorted(e["resource"]["resourceType"] for e in queue["entry"] if e["search"]["mode"] == "include")
    assert kinds == ["Patient", "ServiceRequest"]


def test_sort_count_total_summary_elements(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    sr = [s["id"] for s in d["sr"]]
    asc = ids(api.search(f"ServiceRequest?_tag={tag}&_sort=authored"))
    assert asc == [sr[2], sr[0], sr[1]]
    desc = ids(api.search(f"ServiceRequest?_tag={tag}&_sort=-authored"))
    assert desc == [sr[1], sr[0], sr[2]]
    two_keys = ids(api.search(f"ServiceRequest?_tag={tag}&_sort=status,-authored"))
    assert two_keys == [sr[0], sr[2], sr[1]]
    count_only = api.search(f"ServiceRequest?_tag={tag}&_count=0")
    assert count_only["total"] == 3 and "entry" not in count_only
    assert api.search(f"ServiceRequest?_tag={tag}&_summary=count")["total"] == 3
    assert "total" not in api.search(f"ServiceRequest?_tag={tag}&_total=none")
    summary = api.search(f"Patient?_id={d['patient']['id']}&_summary=true")["entry"][0]["resource"]
    assert "name" in summary and any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    elements = api.search(f"Patient?_id={d['patient']['id']}&_elements=gender")["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "gender"}


def test_unknown_parameters_lenient_and_strict(referral_data):
    d = referral_data
    api, tag = d["api"], d["tag"]
    lenient = api.search(f"ServiceRequest?_tag={tag}&nonsense=1")
    assert len(ids(lenient)) == 3
    outcomes = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and "nonsense" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    strict = api.get(f"ServiceRequest?_tag={tag}&nonsense=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["nonsense"]


def test_post_search(referral_data):
    d = referral_data
    r = d["api"].session.post(
        d["api"].url("ServiceRequest/_search"), data={"_tag": d["tag"], "status": "draft"}, timeout=30
    )
    assert r.status_code == 200
    assert ids(r.json()) == [d["sr"][1]["id"]]


def test_paging_is_stable_while_writes_go_on(fhir, unique):
    api = Fhir(fhir)
    tag = f"urn:test|{unique}"
    created = [api.create(patient(unique, family=f"P{i:03d}"))["id"] for i in range(25)]
    first = api.search(f"Patient?_tag={tag}&_count=10&_sort=family&_total=accurate")
    assert first["total"] == 25 and len(ids(first)) == 10
    seen = list(ids(first))
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    # writes while paging: a new match and an update that would move a resource between pages
    api.create(patient(unique, family="P000a"))
    moved = api.get(f"Patient/{created[20]}").json()
    api.put(f"Patient/{created[20]}", dict(moved, name=[{"family": "A-first"}]))
    while next_url:
        page = api.search(next_url)
        seen += ids(page)
        prev = [link for link in page["link"] if link["relation"] == "previous"]
        assert prev
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == 25 and len(set(seen)) == 25 and set(seen) == set(created)


def test_uri_below_and_canonical(fhir, unique):
    api = Fhir(fhir)
    url = f"https://fhir.referral-hub.no/test/{unique}/PlanDefinition/x"
    pd = api.create({"resourceType": "PlanDefinition", "url": url, "version": "1.0.0", "status": "active"})
    assert ids(api.search(f"PlanDefinition?url={url}")) == [pd["id"]]
    assert ids(api.search(f"PlanDefinition?url:below=https://fhir.referral-hub.no/test/{unique}")) == [pd["id"]]
    cp = api.create(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "instantiatesCanonical": [f"{url}|1.0.0"],
            "subject": {"reference": "Patient/x"},
        }
    )
    assert ids(api.search(f"CarePlan?instantiates-canonical={url}")) == [cp["id"]]


def test_number_and_quantity(fhir, unique):
    api = Fhir(fhir)
    tag = {"system": "urn:test", "code": unique}
    low = api.create(
        {
            "resourceType": "Observation",
            "meta": {"tag": [tag]},
            "status": "final",
            "code": {"text": "vekt"},
            "valueQuantity": {"value": 72.5, "system": "http://unitsofmeasure.org", "code": "kg", "unit": "kg"},
        }
    )
    high = api.create(
        {
            "resourceType": "Observation",
            "meta": {"tag": [tag]},
            "status": "final",
            "code": {"text": "vekt"},
            "valueQuantity": {"value": 110, "system": "http://unitsofmeasure.org", "code": "kg", "unit": "kg"},
        }
    )
    q = f"Observation?_tag=urn:test|{unique}&value-quantity="
    assert ids(api.search(q + "72.5")) == [low["id"]]
    assert ids(api.search(q + "gt100")) == [high["id"]]
    assert ids(api.search(q + "lt100|http://unitsofmeasure.org|kg")) == [low["id"]]
    assert ids(api.search(q + "lt100|http://unitsofmeasure.org|g")) == []
    risk = api.create(
        {
            "resourceType": "RiskAssessment",
            "meta": {"tag": [tag]},
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": 0.25}],
        }
    )
    r = f"RiskAssessment?_tag=urn:test|{unique}&probability="
    assert ids(api.search(r + "0.25")) == [risk["id"]]
    assert ids(api.search(r + "ge0.3")) == []
    assert ids(api.search(r + "le0.3")) == [risk["id"]]
    assert api.get(r + "abc").status_code == 400


def test_profile_security_and_summary_modes(fhir, unique):
    api = Fhir(fhir)
    profile = f"https://fhir.referral-hub.no/test/{unique}/StructureDefinition/p"
    created = api.create(
        patient(
            unique,
            meta={
                "profile": [profile],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                "tag": [{"system": "urn:test", "code": unique}],
            },
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ola</div>'},
        )
    )
    assert ids(api.search(f"Patient?_profile={profile}")) == [created["id"]]
    assert ids(
        api.search(
            f"Patient?_tag=urn:test|{unique}&_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"
        )
    ) == [created["id"]]
    text_only = api.search(f"Patient?_id={created['id']}&_summary=text")["entry"][0]["resource"]
    assert "text" in text_only and "name" not in text_only
    data = api.search(f"Patient?_id={created['id']}&_summary=data")["entry"][0]["resource"]
    assert "text" not in data and "name" in data
    assert api.get(f"Patient/{created['id']}?_summary=true").json()["name"]


def test_previous_links_walk_back_through_the_same_pages(fhir, unique):
    """Keyset cursors both ways: following ``previous`` from the last page gives the pages seen going
    forward, in reverse; a resource deleted meanwhile is left out, one created meanwhile is not shown."""
    api = Fhir(fhir)
    tag = f"urn:test|{unique}"
    created = [api.create(patient(unique, family=f"Q{i:03d}"))["id"] for i in range(9)]
    page = api.search(f"Patient?_tag={tag}&_count=4&_sort=-family")
    forward = [ids(page)]
    relation = {link["relation"]: link["url"] for link in page["link"]}
    assert "previous" not in relation
    api.create(patient(unique, family="Q000b"))  # after the first page: not shown in later pages
    while "next" in relation:
        page = api.search(relation["next"])
        forward.append(ids(page))
        relation = {link["relation"]: link["url"] for link in page["link"]}
    assert [len(p) for p in forward] == [4, 4, 1]
    assert [i for p in forward for i in p] == list(reversed(created))
    assert api.delete(f"Patient/{created[8]}").status_code in (200, 204)  # on the first page
    backward = []
    while "previous" in relation:
        page = api.search(relation["previous"])
        backward.append(ids(page))
        relation = {link["relation"]: link["url"] for link in page["link"]}
    assert backward == [forward[1], forward[0][1:]]


def test_a_forged_cursor_is_refused_naming_it(fhir, unique):
    api = Fhir(fhir)
    for i in range(3):
        api.create(patient(unique, family=f"R{i}"))
    first = api.search(f"Patient?_tag=urn:test|{unique}&_count=1")
    link = next(link["url"] for link in first["link"] if link["relation"] == "next")
    r = api.get(link.split("_cursor=")[0] + "_cursor=%5B%22sideways%22%5D")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_cursor"]
