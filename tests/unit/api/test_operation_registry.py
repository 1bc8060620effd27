"""The operation registry holds what the app factory names, and nothing registers itself on import."""

from __future__ import annotations

import pytest

from fhir_server.api.ops import pathways, referrals, terminology, validate
from fhir_server.api.ops.registry import OperationRegistry
from fhir_server.app import build_operations
from fhir_server.security.policy import Need


def test_the_app_collects_each_family_in_order():
    declared = [info.name for info in build_operations().declared()]
    assert declared == [
        "validate",
        "suggest-pathway",
        "apply",
        "milestones",
        "process-message",
        "referral-form",
        "lookup",
        "expand",
        "validate-code",
        "translate",
        "resend",
        "evaluate-measure",
        "everything",
        "status",
        "events",
        "export",
        "export-status",
        "export-file",
    ]


def test_a_registry_holds_only_the_families_it_names():
    only_terminology = OperationRegistry.collect(terminology)
    assert set(only_terminology.needs()) == {"lookup", "expand", "validate-code", "translate"}
    both = OperationRegistry.collect(pathways, referrals)
    assert both.needs()["apply"] == (Need("PlanDefinition", "r"), Need("CarePlan", "c"))
    assert "validate" not in both.needs()


def test_an_operation_named_twice_is_refused():
    with pytest.raises(ValueError, match=r"\$validate"):
        OperationRegistry.collect(validate, validate)
