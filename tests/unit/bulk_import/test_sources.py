"""The files of an import and their order: NDJSON by the type of its first line (what others refer to first,
referrals after, what names a referral last), a folder's Bulk Data manifest in its own order, Bundle files
after; lines read from a byte offset, blank ones counted but skipped."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_server.bulk_import.sources import count_lines, import_files, read_lines


def ndjson(path: Path, *resources: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


def test_a_folder_is_imported_in_dependency_order(tmp_path: Path) -> None:
    ndjson(tmp_path / "a.ndjson", {"resourceType": "ServiceRequest"})
    ndjson(tmp_path / "b.ndjson", {"resourceType": "Task"})
    ndjson(tmp_path / "c.ndjson", {"resourceType": "Patient"})
    ndjson(tmp_path / "d.ndjson", {"resourceType": "Organization"})
    ndjson(tmp_path / "e.ndjson", {"resourceType": "Flag"})  # a type the order does not name: in between
    ndjson(tmp_path / "f.ndjson", {"resourceType": "Condition"})
    (tmp_path / "bundle.json").write_text('{"resourceType": "Bundle", "type": "transaction"}')
    files = import_files([tmp_path])
    assert [(f.path.name, f.kind, f.resource_type) for f in files] == [
        ("d.ndjson", "ndjson", "Organization"),
        ("c.ndjson", "ndjson", "Patient"),
        ("f.ndjson", "ndjson", "Condition"),
        ("e.ndjson", "ndjson", "Flag"),
        ("a.ndjson", "ndjson", "ServiceRequest"),
        ("b.ndjson", "ndjson", "Task"),
        ("bundle.json", "bundle", None),
    ]


def test_a_manifest_gives_its_own_order(tmp_path: Path) -> None:
    ndjson(tmp_path / "1.ndjson", {"resourceType": "ServiceRequest"})
    ndjson(tmp_path / "2.ndjson", {"resourceType": "Patient"})
    manifest = {"output": [{"type": "ServiceRequest", "url": "1.ndjson"}, {"type": "Patient", "url": "file:2.ndjson"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert [f.path.name for f in import_files([tmp_path])] == ["1.ndjson", "2.ndjson"]


def test_lines_are_read_from_where_an_import_stopped(tmp_path: Path) -> None:
    path = tmp_path / "p.ndjson"
    path.write_bytes(b'{"id": "1"}\n\n{"id": "3"}\n{"id": "4"}')
    lines = list(read_lines(path, 0, 0))
    assert [(line.number, line.text.strip()) for line in lines] == [
        (1, b'{"id": "1"}'),
        (3, b'{"id": "3"}'),
        (4, b'{"id": "4"}'),
    ]
    again = list(read_lines(path, lines[1].number, lines[1].next_offset))  # after line 3 was committed
    assert [(line.number, line.text) for line in again] == [(4, b'{"id": "4"}')]
    assert again[0].next_offset == path.stat().st_size and count_lines(path) == 4
