"""``bench/join_databases.py``: a referral set built in two parts (two databases at once) and joined holds what
the same set built in one database holds, and a server on the join answers as on the whole (the
benchmark's 1 000 000-referral database on PostgreSQL is made this way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bench.bench_import import build_database
from bench.join_databases import join_databases
from tests.api.fhirhttp import Fhir
from tests.api.test_referral_intake import HN, HV
from tests.api.test_security import REGION_SCOPES
from tests.conftest import POSTGRES_URL, fresh_postgres_database, start_server, stop_server

REFERRALS = 40

#: What the databases are compared by: resources per type, history and index rows, measure facts.
COUNTS = {
    "resources": "SELECT res_type, count(*) FROM resources GROUP BY res_type",
    "versions": "SELECT res_type, count(*) FROM resource_versions GROUP BY res_type",
    "token rows": "SELECT param, count(*) FROM idx_token WHERE res_type = 'Task' GROUP BY param",
    "combo rows": "SELECT param, count(*) FROM idx_combo GROUP BY param",
    "labels": "SELECT label, count(*) FROM access_labels GROUP BY label",
    "facts": "SELECT region, count(*) FROM referral_facts GROUP BY region",
}


def counts(url: str) -> dict[str, dict[str, int]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            seen = {name: {str(k): int(n) for k, n in conn.execute(text(sql))} for name, sql in COUNTS.items()}
            seqs = conn.execute(text("SELECT count(*), count(DISTINCT seq) FROM resource_versions")).one()
    finally:
        engine.dispose()
    seen["resources"].pop("AuditEvent")  # one per import run: the parts ran one more (their GPs first)
    seen["versions"].pop("AuditEvent")
    assert seqs[0] == seqs[1], "every history row keeps its own place in the order"
    return seen


@dataclass
class Built:
    """The same referrals built in one database and in two (slices 1-5 and 6-10); what the one holds, and
    what a server on it answers (taken before: a server stores its data folders at start)."""

    first: str
    second: str
    whole_counts: dict[str, dict[str, int]]
    whole_queues: dict[str, int]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("join")
    urls = {name: f"sqlite:///{folder / f'{name}.sqlite3'}" for name in ("whole", "first", "second")}
    build_database(urls["whole"], REFERRALS)
    build_database(urls["first"], REFERRALS, numbers=range(1, 6))
    build_database(urls["second"], REFERRALS, numbers=range(6, 11))
    whole_counts = counts(urls["whole"])
    return Built(urls["first"], urls["second"], whole_counts, region_queues(urls["whole"], folder))


def region_queues(url: str, tmp_path: Path) -> dict[str, int]:
    server = start_server(url, tmp_path, workers=1)
    try:
        queues = {}
        for region in (HV, HN):
            api = Fhir(server, server.token(REGION_SCOPES, region, client_id=f"region-{region}"))
            queues[region] = api.search("Task?status=requested&_summary=count")["total"]
        return queues
    finally:
        stop_server(server)


def test_the_parts_hold_half_the_referrals_each(built: Built):
    assert built.whole_counts["resources"]["ServiceRequest"] == REFERRALS
    assert sum(built.whole_queues.values()) > 0, "the regions have referrals in their queues"
    assert counts(built.first)["resources"]["ServiceRequest"] == REFERRALS // 2
    assert counts(built.second)["resources"]["ServiceRequest"] == REFERRALS // 2


@pytest.mark.parametrize("target", ["sqlite", "postgresql"])
def test_joined_parts_hold_what_the_whole_holds(built: Built, target: str, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'joined.sqlite3'}"
    if target == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("joins into PostgreSQL: set FHIR_TEST_POSTGRES_URL (scripts/test.sh does)")
        url = fresh_postgres_database(POSTGRES_URL)
    join_databases([built.first, built.second], url)
    assert counts(url) == built.whole_counts
    assert region_queues(url, tmp_path) == built.whole_queues
