"""What the store hands out: stored versions of resources, and the ids the server assigns."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: its JSON bytes and its version facts."""

    resource_type: str
    id: str
    version_id: int
    last_updated: str
    body: bytes | None
    deleted: bool = False
    method: str | None = None
    seq: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"


class CurrentRow(NamedTuple):
    """The version facts of a resource's current row."""

    version_id: int
    deleted: bool


def new_id() -> str:
    """A server-assigned id: a time-ordered UUID (version 7 layout, RFC 9562).

    The first 48 bits are the Unix time in milliseconds, the rest random. Ids made one after another
    sort one after another, so new rows land at the end of every index keyed by id instead of on a
    random page each: a write transaction touches (and a commit writes) far fewer database pages.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant RFC 4122
    return str(uuid.UUID(int=value))


def row_to_stored(row: Any, method: str | None = None) -> StoredResource:
    body = row.body.encode() if isinstance(row.body, str) else row.body
    return StoredResource(
        row.res_type,
        row.res_id,
        row.version_id,
        row.last_updated,
        body,
        bool(row.deleted),
        method or getattr(row, "method", None),
        getattr(row, "seq", 0),
    )
