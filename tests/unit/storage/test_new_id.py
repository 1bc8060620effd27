"""Server-assigned ids: UUIDs of version 7 (RFC 9562), unique, valid FHIR ids, ordered by creation time
(so new rows go to the end of the indexes keyed by id)."""

from __future__ import annotations

import re
import time
import uuid

from fhir_server.core.storage.store import new_id

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def test_ids_are_version_7_uuids_and_valid_fhir_ids() -> None:
    ids = [new_id() for _ in range(10000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:100]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert FHIR_ID.match(value)


def test_ids_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(20):
        made.append(new_id())
        time.sleep(0.002)  # the order is by millisecond; within one millisecond it is random
    assert made == sorted(made)
    assert abs(int(made[0].replace("-", "")[:12], 16) - time.time() * 1000) < 60_000  # the time is now
