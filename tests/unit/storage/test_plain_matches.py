"""The fast path of conditional matching (plain ``identifier=system|value`` and the like) against the
general search, in process on a real SQLite file: the same ids in the same order, with and without a
write transaction, for few and for many matches, and under a caller's access labels."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from fhir_server.components import build_search_registry
from fhir_server.core.bundles.transaction import BundleProcessor
from fhir_server.core.indexing.rows import IndexMatch, plain_matches
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import open_database
from fhir_server.core.storage.matches import SCAN_FROM, is_common, match_query, match_sql_text
from fhir_server.core.storage.schema import resources
from fhir_server.core.storage.store import Store

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORG = "org:974633574"


def patient(value: str, system: str = FNR) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], "active": True}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> FhirService:
    db = open_database(f"sqlite:///{Path(tmp_path_factory.mktemp('plain')) / 'db.sqlite3'}")
    service = FhirService(Store(db, build_search_registry()))
    for n in range(5):
        service.create(patient(f"single-{n}"))
    for _ in range(2):
        service.create(patient("twice"))
    for _ in range(SCAN_FROM + 6):  # one identifier many resources share: the walk in search order
        service.create(patient("shared"))
    gone = service.create(patient("deleted")).stored
    service.delete("Patient", gone.id)
    with access.acting_as(access.Access(stamps=frozenset({ORG}))):
        for _ in range(2):
            service.create(patient("labelled"))
        service.create(patient("shared"))
    service.create(patient("single-0", system=HPR))
    service.create(
        {
            "resourceType": "Endpoint",
            "status": "active",
            "managingOrganization": {"reference": "Organization/o1"},
            "connectionType": {"code": "hl7-fhir-rest"},
            "payloadType": [{"text": "x"}],
            "address": "http://a",
        }
    )
    service.create(
        {
            "resourceType": "Endpoint",
            "status": "off",
            "managingOrganization": {"reference": "Organization/o1"},
            "connectionType": {"code": "hl7-fhir-rest"},
            "payloadType": [{"text": "x"}],
            "address": "http://b",
        }
    )
    service.create(
        {"resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "complete"}
    )
    yield service
    db.dispose()


def general(service: FhirService, resource_type: str, query: str, *, unit=None, limit: int | None = 3) -> list[str]:  # type: ignore[no-untyped-def]
    """What the general search answers (the path taken before the fast one existed)."""
    request = service.parser.parse(resource_type, parse_qsl(query, keep_blank_values=True), strict=True)
    statement = service.engine._id_query(request)
    statement = statement.limit(limit) if limit is not None else statement
    if unit is not None:
        return list(unit.execute(statement).scalars())
    with service.store.reading() as conn:
        return list(conn.execute(statement).scalars())


QUERIES = [
    ("Patient", f"identifier={FNR}|single-3"),
    ("Patient", f"identifier={FNR}|twice"),
    ("Patient", f"identifier={FNR}|shared"),
    ("Patient", f"identifier={FNR}|deleted"),
    ("Patient", f"identifier={FNR}|labelled"),
    ("Patient", f"identifier={HPR}|single-0"),
    ("Patient", "identifier=single-0"),
    ("Patient", f"identifier={FNR}|nobody"),
    ("Patient", f"identifier={FNR}|shared&active=true"),
    ("Endpoint", "organization=Organization/o1&status=active"),
    ("Endpoint", "organization=Organization/o1"),
    ("CodeSystem", "url=http://example.org/cs"),
]


@pytest.mark.parametrize(("resource_type", "query"), QUERIES)
def test_the_fast_path_answers_as_the_general_search(service: FhirService, resource_type: str, query: str) -> None:
    params = parse_qsl(query)
    assert plain_matches(service.store.registry, resource_type, params) is not None
    expected = general(service, resource_type, query)
    assert service.conditional_matches(None, resource_type, query) == expected

    def inside(unit):  # type: ignore[no-untyped-def]
        return service.conditional_matches(unit, resource_type, query), general(
            service, resource_type, query, unit=unit
        )

    fast, slow = service.store.write(inside)
    assert fast == slow == expected


@pytest.mark.parametrize(("resource_type", "query"), QUERIES)
@pytest.mark.parametrize("limit", [3, None])
def test_both_sqlite_plans_select_the_same_rows_in_order(
    service: FhirService, resource_type: str, query: str, limit: int | None
) -> None:
    matches = plain_matches(service.store.registry, resource_type, parse_qsl(query))
    assert matches is not None
    shape = tuple((m.kind, tuple(column for column, _ in m.values)) for m in matches)
    params: list = [resource_type, False]
    for m in matches:
        params += [resource_type, m.param, *(value for _, value in m.values)]
    expected = general(service, resource_type, query, limit=limit)
    for scan in (False, True):
        rows = service.store.fast.rows(match_sql_text(shape, limit, scan, sqlite=True), params)
        assert [r[0] for r in rows] == expected


def test_many_matches_walk_in_search_order(service: FhirService) -> None:
    matches = plain_matches(service.store.registry, "Patient", [("identifier", f"{FNR}|shared")])
    assert matches is not None
    assert is_common(service.store.fast.rows, "Patient", matches[0])
    few = plain_matches(service.store.registry, "Patient", [("identifier", f"{FNR}|twice")])
    assert few is not None and not is_common(service.store.fast.rows, "Patient", few[0])
    assert len(service.conditional_matches(None, "Patient", f"identifier={FNR}|shared")) == 3


@pytest.mark.parametrize(("resource_type", "query"), QUERIES)
def test_a_caller_sees_only_its_labelled_matches(service: FhirService, resource_type: str, query: str) -> None:
    with access.acting_as(access.Access(labels=frozenset({ORG}))):
        expected = general(service, resource_type, query)
        assert service.conditional_matches(None, resource_type, query) == expected
        assert service.store.write(lambda unit: service.conditional_matches(unit, resource_type, query)) == expected
        visible = access.labelled_condition(resource_type, resources.c.res_id)
        matches = plain_matches(service.store.registry, resource_type, parse_qsl(query))
        assert matches is not None
        for sort_apart in (False, True) if visible is not None else ():  # both orderings SQLite may be given
            statement = match_query(resource_type, matches, 3, sort_apart=sort_apart).where(visible)
            with service.store.reading() as conn:
                assert list(conn.execute(statement).scalars()) == expected
    if resource_type == "Patient" and "labelled" in query:
        assert len(expected) == 2


@pytest.mark.parametrize(
    "params",
    [
        [("identifier:not", f"{FNR}|x")],
        [("identifier", f"{FNR}|a,{FNR}|b")],
        [("identifier", "a\\,b")],
        [("identifier", f"{FNR}|")],
        [("identifier", "|x")],
        [("identifier", "")],
        [("_id", "x")],
        [("_count", "1")],
        [("general-practitioner.identifier", "x")],
        [("general-practitioner", "123")],
        [("general-practitioner", "http://x/fhir/Practitioner/1")],
        [("general-practitioner", "Practitioner/1/_history/2")],
        [("general-practitioner:Practitioner", "1")],
        [("birthdate", "2020")],
        [("name", "x")],
        [("nonsense", "x")],
        [("identifier", f"{FNR}|x"), ("birthdate", "2020")],
    ],
)
def test_anything_but_plain_equality_takes_the_general_search(service: FhirService, params: list) -> None:
    assert plain_matches(service.store.registry, "Patient", params) is None


def test_plain_conditions_name_their_index_rows(service: FhirService) -> None:
    registry = service.store.registry
    assert plain_matches(registry, "Patient", [("identifier", f"{FNR}|1|2")]) == [
        IndexMatch("token", "identifier", (("system", FNR), ("code", "1|2")))
    ]
    assert plain_matches(registry, "Task", [("focus", "ServiceRequest/a-1")]) == [
        IndexMatch("reference", "focus", (("target_type", "ServiceRequest"), ("target_id", "a-1")))
    ]


def test_unknown_parameters_are_still_refused(service: FhirService) -> None:
    with pytest.raises(FhirError) as refused:
        service.conditional_matches(None, "Patient", "nonsense=1")
    assert refused.value.status == 400


def transaction(value: str) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b5e2a44-5d63-4e9f-a4a4-0d8e1d1a0001",
                "resource": patient(value),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={FNR}|{value}"},
            }
        ],
    }


def test_a_transaction_may_store_an_ambiguous_conditional_create_anew(service: FhirService) -> None:
    processor = BundleProcessor(service)
    with pytest.raises(FhirError) as refused:
        processor.process(transaction("twice"))
    assert refused.value.status == 412
    asked = []
    result = processor.process(transaction("twice"), store_anew=lambda entry: asked.append(entry.index) or True)
    assert asked == [0]
    assert result["entry"][0]["response"]["status"] == "201 Created"
    assert len(service.conditional_matches(None, "Patient", f"identifier={FNR}|twice")) == 3
    with pytest.raises(FhirError):
        processor.process(transaction("twice"), store_anew=lambda entry: False)
    found = processor.process(transaction("single-1"), store_anew=lambda entry: pytest.fail("asked"))
    assert found["entry"][0]["response"]["status"] == "200 OK"
