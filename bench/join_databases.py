"""Join hub databases built apart into one: the national-scale database built in parts at once.

A 1 000 000-referral database takes ~2 hours of one core to import; ``bench/bench_scale.py --slices 1-5``
and ``--slices 6-10`` build its halves into two SQLite files on two cores at once, each half through the
import with its own status mix. This puts them into one new database (PostgreSQL or SQLite) with
``fhir-server copy-database``'s own table copy (``COPY``, indexes built after the rows, sequences continued,
statistics refreshed): every source's rows in turn, a later source's rows of a resource an earlier one
holds left out (the seeded conformance resources and the GP offices and GPs both halves import), the
history's order (``resource_versions.seq``) of a later source continued after the earlier ones'.

Run:  python bench/join_databases.py SOURCE_URL [SOURCE_URL ...] TARGET_URL
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import Connection, Table, func, select
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.components import database_schemas  # noqa: E402
from fhir_server.core.storage.copy_database import (  # noqa: E402
    CannotCopy,
    copy_table,
    open_copy_end,
    refresh_statistics,
    refuse_occupied,
    snapshot,
    table_rows,
)
from fhir_server.core.storage.schema import resources  # noqa: E402

Key = tuple[object, ...]


def join_databases(source_urls: list[str], target_url: str) -> dict[str, int]:
    """Copy the sources' rows into the empty database at ``target_url``; returns the rows per table."""
    schemas = database_schemas()
    tables = [table for schema in schemas for table in schema.sorted_tables]
    with ExitStack() as stack:
        sources = [open_copy_end(url, schemas) for url in source_urls]
        for db in sources:
            stack.callback(db.dispose)
        target = open_copy_end(target_url, schemas)
        stack.callback(target.dispose)
        refuse_occupied(target, tables)
        readers = [stack.enter_context(snapshot(db)) for db in sources]
        held = _resources_held_before(readers)
        copied = {}
        for table in tables:
            total = sum(reader.execute(select(func.count()).select_from(table)).scalar_one() for reader in readers)
            with tqdm(total=total, desc=table.name, unit="row", unit_scale=True, file=sys.stderr) as bar:
                copied[table.name] = copy_table(target, table, _joined_rows(readers, table, held, bar), bar)
        refresh_statistics(target)
    return copied


def _resources_held_before(readers: list[Connection]) -> list[set[Key]]:
    """For each source, the resources (type, id) an earlier source holds too."""
    seen: set[Key] = set()
    held = []
    for reader in readers:
        keys = {tuple(row) for row in reader.execute(select(resources.c.res_type, resources.c.res_id))}
        held.append(keys & seen)
        seen |= keys
    return held


def _joined_rows(readers: list[Connection], table: Table, held: list[set[Key]], bar: tqdm) -> Iterator[list[tuple]]:
    """Every source's rows of ``table``: a later source's rows of resources held before left out, its
    serial values (history order, outbox ids) after the earlier sources', rows whose primary key an earlier
    source gave left out."""
    names = [column.name for column in table.columns]
    by_resource = [names.index("res_type"), names.index("res_id")] if "res_id" in names else None
    serial = table.autoincrement_column
    at_serial = names.index(serial.name) if serial is not None else None
    key_at = [names.index(column.name) for column in table.primary_key.columns]
    keys_seen: set[Key] = set()
    offset = 0
    for number, reader in enumerate(readers):
        largest = 0
        for chunk in table_rows(reader, table):
            rows = chunk
            if number and by_resource is not None:
                rows = [row for row in rows if (row[by_resource[0]], row[by_resource[1]]) not in held[number]]
            if at_serial is not None:
                largest = max([largest, *(row[at_serial] for row in rows)])
                rows = [(*row[:at_serial], row[at_serial] + offset, *row[at_serial + 1 :]) for row in rows]
            elif by_resource is None and key_at:  # e.g. jobs, the schema's version: the first source's row
                rows = [row for row in rows if tuple(row[i] for i in key_at) not in keys_seen]
                keys_seen.update(tuple(row[i] for i in key_at) for row in rows)
            bar.update(len(chunk) - len(rows))  # left out: counted as done
            if rows:
                yield rows
        offset += largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("urls", nargs="+", metavar="URL", help="the source databases, then the target")
    args = parser.parse_args()
    if len(args.urls) < 2:
        parser.error("give one or more sources and a target")
    started = time.monotonic()
    try:
        copied = join_databases(args.urls[:-1], args.urls[-1])
    except CannotCopy as refusal:
        raise SystemExit(str(refusal)) from None
    rows = ", ".join(f"{name} {count}" for name, count in copied.items() if count)
    print(f"joined {sum(copied.values())} rows in {time.monotonic() - started:.0f} s ({rows})")


if __name__ == "__main__":
    main()
