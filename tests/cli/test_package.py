"""``fhir-server package`` builds a FHIR package that the server's own package loader reads back."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from fhir_server.core.conformance.packages import ConformanceRegistry
from fhir_server.core.validation.profile.validator import ProfileValidator
from tests.conftest import ROOT

HUB = "https://fhir.referral-hub.no"


def test_package_round_trip(tmp_path: Path):
    out = tmp_path / "hub.tgz"
    run = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "package", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("package/package.json").read())  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("package/.index.json").read())  # type: ignore[union-attr]
    assert manifest["fhirVersions"] == ["4.0.1"] and manifest["name"] == "no.referral-hub.fhir"
    assert "package/StructureDefinition-hub-referral-servicerequest.json" in names
    assert len(index["files"]) == len([n for n in names if n.endswith(".json")]) - 2
    registry = ConformanceRegistry()
    problems = registry.load_package(out)
    assert problems == []
    profile = registry.resolve(f"{HUB}/StructureDefinition/hub-referral-servicerequest")
    assert profile is not None and profile["snapshot"]["element"]
    assert registry.resolve(f"{HUB}/PlanDefinition/psykoselidelser") is not None
    assert registry.value_set(f"{HUB}/ValueSet/referral-priority") is not None
    # the loaded package validates: a ServiceRequest that is not a referral fails the referral profile
    issues = ProfileValidator(registry).validate(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/1"},
        },
        [f"{HUB}/StructureDefinition/hub-referral-servicerequest"],
    )
    assert any(i.severity == "error" for i in issues)
