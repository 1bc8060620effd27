"""Every pathway's $apply CarePlan passes base validation and the project's CarePlan profile."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_server.core.conformance.packages import default_registry
from fhir_server.core.issues import is_error
from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.profile.validator import ProfileValidator
from fhir_server.domain.pathways import PathwayCatalog, apply_plan_definition

CATALOG = PathwayCatalog.load()
CAREPLAN_PROFILE = "https://fhir.referral-hub.no/StructureDefinition/hub-pathway-careplan"
REFERRAL = {
    "resourceType": "ServiceRequest",
    "id": "ref-1",
    "status": "active",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "authoredOn": "2026-04-01",
}


@pytest.fixture(scope="module")
def profiles() -> ProfileValidator:
    return ProfileValidator(default_registry())


@pytest.mark.parametrize("plan", CATALOG.plans, ids=lambda p: p["id"])
def test_careplan_of_each_pathway_is_valid(plan: dict, profiles: ProfileValidator):
    careplan, _ = apply_plan_definition(
        plan, REFERRAL, "Patient/p1", date(2026, 4, 1), catalog=CATALOG, service_request_ref="ServiceRequest/ref-1"
    )
    base = [i for i in validate_resource(careplan) if is_error(i)]
    assert base == []
    against_profile = [i for i in profiles.validate(careplan, [CAREPLAN_PROFILE]) if is_error(i)]
    assert against_profile == []
