"""Unit tests drive storage directly, as the server's own work does: with :data:`access.SYSTEM`.

Storage raises :class:`~fhir_server.core.storage.access.AccessNotSet` when no access is set, so the
tests' main thread acts as the system; a test of a restricted caller says whose access it uses
(``access.acting_as(...)``), and threads a test starts set their own (they start without one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fhir_server.core.storage import access


@pytest.fixture(scope="session", autouse=True)
def system_access() -> Iterator[None]:
    with access.acting_as(access.SYSTEM):
        yield
