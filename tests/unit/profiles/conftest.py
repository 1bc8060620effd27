"""Fixtures for the profile engine tests: registries with and without the shared no-basis copy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fhir_server.core.conformance.packages import ConformanceRegistry, load_project_profiles
from fhir_server.core.validation.profile.validator import ProfileValidator

# the helper modules beside the tests (profiles_testkit, profiles_referral_fixtures)
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
NO_BASIS = SHARED / "reference" / "no-basis"
HELSENORGE = SHARED / "reference" / "helsenorge-fhir"


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared reference copies live beside the repository)")
    return path


@pytest.fixture
def registry() -> ConformanceRegistry:
    """An empty registry: R4 core only (plus the suppressions list)."""
    return ConformanceRegistry()


@pytest.fixture(scope="session")
def nobasis_registry() -> ConformanceRegistry:
    """no-basis 2.2.2 (from ../shared) plus the project's profiles."""
    reg = ConformanceRegistry()
    reg.load_folder(need(NO_BASIS))
    load_project_profiles(reg)
    return reg


@pytest.fixture(scope="session")
def nobasis_validator(nobasis_registry: ConformanceRegistry) -> ProfileValidator:
    return ProfileValidator(nobasis_registry)
