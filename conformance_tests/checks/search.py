"""Area ``search``: token, string, date, reference, chained, _include, _revinclude, _sort, paging, counts."""

from __future__ import annotations

import uuid

from conformance_tests.client import KIT_IDENTIFIER_SYSTEM, Client
from conformance_tests.fhirdata import entries, link, observation, patient, refs
from conformance_tests.registry import check, expect


def ids(bundle: dict, mode: str | None = "match") -> list[str]:
    return [r.get("id", "") for r in entries(bundle, mode)]


def expect_ids(client: Client, query: str, params: dict[str, str], wanted: list[str], rtype: str = "Patient") -> dict:
    """Search and require exactly the ``wanted`` ids (in any order) as matches."""
    bundle = client.search(rtype, params)
    got = ids(bundle)
    shown = "&".join(f"{k}={v}" for k, v in params.items() if k != "_tag")
    expect(
        sorted(got) == sorted(wanted),
        f"{rtype}?{shown} ({query}): expected {sorted(wanted)}, got {sorted(got)}",
    )
    return bundle


def three_patients(client: Client, tag: str) -> list[dict]:
    """Patients born 1980-01-01, 1990-06-15 and 2000-12-31 with distinct names and kit identifiers."""
    return [
        client.create(patient(tag, family=family, birth_date=born, key=uuid.uuid4().hex))
        for family, born in (("Aasen", "1980-01-01"), ("Berg", "1990-06-15"), ("Carlsen", "2000-12-31"))
    ]


@check("search", "token")
def token(client: Client) -> None:
    """Token search by system|value, by value alone, and by a code (gender) within the tagged set."""
    tag = client.new_tag()
    a, b, _ = three_patients(client, tag)
    key = a["identifier"][0]["value"]
    t = client.tag_param(tag)
    expect_ids(client, "system|value", {"_tag": t, "identifier": f"{KIT_IDENTIFIER_SYSTEM}|{key}"}, [a["id"]])
    expect_ids(client, "value only", {"_tag": t, "identifier": key}, [a["id"]])
    expect_ids(client, "other system", {"_tag": t, "identifier": f"urn:other|{key}"}, [])
    expect_ids(
        client, "OR by comma", {"_tag": t, "identifier": f"{key},{b['identifier'][0]['value']}"}, [a["id"], b["id"]]
    )
    expect_ids(client, "code", {"_tag": t, "gender": "female"}, [])


@check("search", "string")
def string(client: Client) -> None:
    """String search matches a case-insensitive prefix; ``:exact`` matches case and whole value only."""
    tag = client.new_tag()
    a, b, c = three_patients(client, tag)
    t = client.tag_param(tag)
    expect_ids(client, "prefix", {"_tag": t, "family": "aas"}, [a["id"]])
    expect_ids(client, "prefix on name", {"_tag": t, "name": "CARL"}, [c["id"]])
    expect_ids(client, "no match", {"_tag": t, "family": "sen"}, [])
    expect_ids(client, ":exact", {"_tag": t, "family:exact": "Berg"}, [b["id"]])
    expect_ids(client, ":exact, other case", {"_tag": t, "family:exact": "berg"}, [])


@check("search", "date")
def date(client: Client) -> None:
    """Date search with eq (by day, month and year), gt, ge, lt, le and a range by repetition."""
    tag = client.new_tag()
    a, b, c = three_patients(client, tag)
    t = client.tag_param(tag)
    expect_ids(client, "eq day", {"_tag": t, "birthdate": "1990-06-15"}, [b["id"]])
    expect_ids(client, "eq month", {"_tag": t, "birthdate": "eq1990-06"}, [b["id"]])
    expect_ids(client, "eq year", {"_tag": t, "birthdate": "2000"}, [c["id"]])
    expect_ids(client, "gt", {"_tag": t, "birthdate": "gt1990-06-15"}, [c["id"]])
    expect_ids(client, "ge", {"_tag": t, "birthdate": "ge1990-06-15"}, [b["id"], c["id"]])
    expect_ids(client, "lt", {"_tag": t, "birthdate": "lt1990-06-15"}, [a["id"]])
    expect_ids(client, "le", {"_tag": t, "birthdate": "le1990-06-15"}, [a["id"], b["id"]])
    bundle = client.search("Patient", [("_tag", t), ("birthdate", "gt1985"), ("birthdate", "lt1995")])
    expect(
        ids(bundle) == [b["id"]], f"Patient?birthdate=gt1985&birthdate=lt1995: expected [{b['id']}], got {ids(bundle)}"
    )


def patients_with_observations(client: Client, tag: str) -> tuple[dict, dict, dict, dict]:
    """Two Patients, each with one Observation."""
    p1 = client.create(patient(tag, family="Refsen", key=uuid.uuid4().hex))
    p2 = client.create(patient(tag, family="Refsen", key=uuid.uuid4().hex))
    o1 = client.create(observation(tag, f"Patient/{p1['id']}", "170"))
    o2 = client.create(observation(tag, f"Patient/{p2['id']}", "180"))
    return p1, p2, o1, o2


@check("search", "reference")
def reference(client: Client) -> None:
    """Reference search by Type/id, by bare id, and through the ``patient`` parameter."""
    tag = client.new_tag()
    p1, _, o1, _ = patients_with_observations(client, tag)
    t = client.tag_param(tag)
    expect_ids(client, "Type/id", {"_tag": t, "subject": f"Patient/{p1['id']}"}, [o1["id"]], "Observation")
    expect_ids(client, "bare id", {"_tag": t, "subject": p1["id"]}, [o1["id"]], "Observation")
    expect_ids(client, "patient param", {"_tag": t, "patient": p1["id"]}, [o1["id"]], "Observation")
    expect_ids(client, "no such target", {"_tag": t, "subject": "Patient/ck-none"}, [], "Observation")


@check("search", "chained")
def chained(client: Client) -> None:
    """Chained search ``subject:Patient.identifier=system|value`` finds the Observation of that Patient only."""
    tag = client.new_tag()
    p1, _, o1, _ = patients_with_observations(client, tag)
    key = p1["identifier"][0]["value"]
    t = client.tag_param(tag)
    expect_ids(
        client,
        "chain",
        {"_tag": t, "subject:Patient.identifier": f"{KIT_IDENTIFIER_SYSTEM}|{key}"},
        [o1["id"]],
        "Observation",
    )
    expect_ids(
        client,
        "chain, no match",
        {"_tag": t, "subject:Patient.identifier": f"{KIT_IDENTIFIER_SYSTEM}|x"},
        [],
        "Observation",
    )


@check("search", "include")
def include(client: Client) -> None:
    """``_include=Observation:subject`` adds each subject Patient once, with search.mode include."""
    tag = client.new_tag()
    p1, p2, o1, o2 = patients_with_observations(client, tag)
    bundle = client.search("Observation", {"_tag": client.tag_param(tag), "_include": "Observation:subject"})
    expect(sorted(ids(bundle)) == sorted([o1["id"], o2["id"]]), f"_include: matches {refs(entries(bundle))}")
    included = sorted(refs(entries(bundle, "include")))
    wanted = sorted([f"Patient/{p1['id']}", f"Patient/{p2['id']}"])
    expect(included == wanted, f"Observation?_include=Observation:subject: expected included {wanted}, got {included}")


@check("search", "revinclude")
def revinclude(client: Client) -> None:
    """``_revinclude=Observation:subject`` adds the Observations that point at the matched Patients."""
    tag = client.new_tag()
    p1, _, o1, _ = patients_with_observations(client, tag)
    bundle = client.search(
        "Patient", {"_tag": client.tag_param(tag), "_id": p1["id"], "_revinclude": "Observation:subject"}
    )
    expect(ids(bundle) == [p1["id"]], f"_revinclude: expected match [{p1['id']}], got {ids(bundle)}")
    included = refs(entries(bundle, "include"))
    expect(
        included == [f"Observation/{o1['id']}"],
        f"Patient?_id={p1['id']}&_revinclude=Observation:subject: expected included [Observation/{o1['id']}], "
        f"got {included}",
    )


@check("search", "sort")
def sort(client: Client) -> None:
    """``_sort=birthdate`` ascending and ``_sort=-birthdate`` descending; ``_sort=-family`` by name."""
    tag = client.new_tag()
    a, b, c = three_patients(client, tag)
    t = client.tag_param(tag)
    for key, wanted in (
        ("birthdate", [a, b, c]),
        ("-birthdate", [c, b, a]),
        ("-family", [c, b, a]),
    ):
        got = ids(client.search("Patient", {"_tag": t, "_sort": key}))
        expect(
            got == [p["id"] for p in wanted], f"Patient?_sort={key}: expected {[p['id'] for p in wanted]}, got {got}"
        )


def five_patients(client: Client, tag: str) -> list[str]:
    return [client.create(patient(tag, family=f"Side{n}", birth_date=f"198{n}-01-01"))["id"] for n in range(5)]


@check("search", "paging")
def paging(client: Client) -> None:
    """``_count=2`` over 5 resources: following ``next`` gives pages 2, 2, 1, every resource once, total 5."""
    tag = client.new_tag()
    created = five_patients(client, tag)
    bundle = client.search("Patient", {"_tag": client.tag_param(tag), "_count": "2", "_sort": "birthdate"})
    total = bundle.get("total")
    if total is None:
        total = client.search("Patient", {"_tag": client.tag_param(tag), "_total": "accurate"}).get("total")
    expect(total == 5, f"Patient?_tag=…&_count=2: expected total 5, got {total!r}")
    seen: list[str] = []
    sizes = []
    for _ in range(10):
        page = ids(bundle)
        sizes.append(len(page))
        seen.extend(page)
        nxt = link(bundle, "next")
        if not nxt:
            break
        r = client.get(nxt)
        bundle = client.expect_status(r, 200, what="following the next link")
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    missing = sorted(set(created) - set(seen))
    expect(not duplicates, f"paging with _count=2: resources seen on more than one page: {duplicates}")
    expect(not missing, f"paging with _count=2: resources omitted from every page: {missing} (pages {sizes})")
    expect(sizes == [2, 2, 1], f"paging with _count=2 over 5: expected page sizes [2, 2, 1], got {sizes}")
    expect(seen == created, f"paging with _sort=birthdate: expected the order {created}, got {seen}")


@check("search", "count_zero")
def count_zero(client: Client) -> None:
    """``_count=0`` returns the total and no entries."""
    tag = client.new_tag()
    five_patients(client, tag)
    bundle = client.search("Patient", {"_tag": client.tag_param(tag), "_count": "0"})
    expect(bundle.get("total") == 5, f"Patient?_count=0: expected total 5, got {bundle.get('total')!r}")
    expect(not entries(bundle), f"Patient?_count=0: expected no entries, got {len(entries(bundle))}")


@check("search", "summary_count")
def summary_count(client: Client) -> None:
    """``_summary=count`` returns the total and no entries."""
    tag = client.new_tag()
    five_patients(client, tag)
    bundle = client.search("Patient", {"_tag": client.tag_param(tag), "_summary": "count"})
    expect(bundle.get("total") == 5, f"Patient?_summary=count: expected total 5, got {bundle.get('total')!r}")
    expect(not entries(bundle, None), f"Patient?_summary=count: expected no entries, got {len(entries(bundle, None))}")


@check("search", "post_search")
def post_search(client: Client) -> None:
    """``POST [type]/_search`` with form-encoded parameters finds what GET finds."""
    tag = client.new_tag()
    a, _, _ = three_patients(client, tag)
    r = client.request(
        "POST",
        "Patient/_search",
        data={"_tag": client.tag_param(tag), "family": "Aasen"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    bundle = client.expect_status(r, 200, what="POST Patient/_search")
    expect(
        ids(bundle or {}) == [a["id"]],
        f"POST Patient/_search family=Aasen: expected [{a['id']}], got {ids(bundle or {})}",
    )
