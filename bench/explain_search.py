"""The database's plan of each statement a FHIR search sends, as an administrator or as a region sees it.

    python bench/explain_search.py --database-url sqlite:////tmp/scale1m/scale-1000000.sqlite3 \\
        --region 983658725 'Task?status=requested&_count=20' 'ServiceRequest?status=active&_summary=count'

The search runs in process, as the HTTP API runs it (the same service and access rules). SQLite: every
statement with its values (the connection's trace) and ``EXPLAIN QUERY PLAN`` of each read; PostgreSQL:
``auto_explain`` with ``ANALYZE`` and ``BUFFERS`` sends each statement's executed plan (actual rows and
times) to this client as a notice. What a region may see comes from its labels, as for a region's token.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fhir_server.components import build_server  # noqa: E402
from fhir_server.config import load_settings  # noqa: E402
from fhir_server.core.storage import access  # noqa: E402


def caller(region: str | None) -> access.Access:
    if region is None:
        return access.Access(unrestricted=True, name="explain-admin")
    labels = frozenset({access.org_label(region), access.region_label(region)})
    return access.Access(labels, labels, name="explain-region")


def record_statements(components, out: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Every connection opened from now on reports its statements (SQLite) or plans (PostgreSQL) to ``out``."""
    db = components.db
    for engine in {db.read, db.write}:
        if db.is_sqlite:

            @event.listens_for(engine, "connect")
            def trace(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_connection.set_trace_callback(out.append)

        else:

            @event.listens_for(engine, "connect")
            def explain(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_connection.add_notice_handler(lambda diag: out.append(diag.message_primary or ""))
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("LOAD 'auto_explain'")
                    for setting in ("log_min_duration = 0", "log_analyze = on", "log_buffers = on"):
                        cursor.execute(f"SET auto_explain.{setting}")
                    cursor.execute("SET auto_explain.log_level = notice")
                dbapi_connection.commit()

        engine.dispose()  # pooled connections are opened again, with the recording


def sqlite_plans(components, statements: list[str]) -> None:  # type: ignore[no-untyped-def]
    with components.db.read.connect() as conn:
        raw = conn.connection.driver_connection
        raw.set_trace_callback(None)
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            print(f"\n-- {sql}")
            for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}"):
                print(f"   {'  ' * (row[1] > 0)}{row[3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--region", help="the organisation number of the RHF whose view to explain (default: admin)")
    parser.add_argument("searches", nargs="+", help="e.g. 'Task?status=requested&_count=20'")
    args = parser.parse_args()
    components = build_server(load_settings(None, database_url=args.database_url))
    for search in args.searches:
        resource_type, _, query = search.partition("?")
        out: list[str] = []
        record_statements(components, out)
        with access.acting_as(caller(args.region)):
            started = time.perf_counter()
            _, page = components.service.search(resource_type, parse_qsl(query, keep_blank_values=True))
            elapsed = (time.perf_counter() - started) * 1000
        print(
            f"\n=== {search} ({'region ' + args.region if args.region else 'admin'}): "
            f"{len(page.matches)} on the page, total {page.total}, {elapsed:.1f} ms (recording on)"
        )
        if components.db.is_sqlite:
            sqlite_plans(components, list(out))
        else:
            for plan in out:
                print(f"\n{plan}")
    components.db.dispose()


if __name__ == "__main__":
    main()
