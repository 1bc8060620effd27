"""Layers point down: storage imports nothing above it (search, interactions, the domain, security, the
web edge); search index extraction (core/indexing) sits below storage and imports none of it."""

from __future__ import annotations

import subprocess
import sys

ABOVE_STORAGE = (
    "fhir_server.core.search",
    "fhir_server.core.interactions",
    "fhir_server.core.bundles",
    "fhir_server.domain",
    "fhir_server.security",
    "fhir_server.api",
)

PROBE = """
import pkgutil, importlib, sys
import fhir_server.core.storage as storage, fhir_server.core.indexing as indexing
for package in (storage, indexing):
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
print("\\n".join(sorted(sys.modules)))
"""

INDEXING_ONLY = """
import pkgutil, importlib, sys
import fhir_server.core.indexing as indexing
for info in pkgutil.iter_modules(indexing.__path__):
    importlib.import_module(f"{indexing.__name__}.{info.name}")
print("\\n".join(sorted(sys.modules)))
"""


def loaded(probe: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running ``probe``."""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_storage_and_indexing_import_nothing_above_storage() -> None:
    modules = loaded(PROBE)
    assert "fhir_server.core.storage.store" in modules and "fhir_server.core.indexing.rows" in modules
    assert [m for m in modules if m.startswith(ABOVE_STORAGE)] == []


def test_indexing_does_not_import_storage() -> None:
    modules = loaded(INDEXING_ONLY)
    assert "fhir_server.core.indexing.rows" in modules
    assert [m for m in modules if m.startswith(("fhir_server.core.storage", *ABOVE_STORAGE))] == []
