"""The resource types this server serves (an allowlist) and the FHIR version it speaks."""

from __future__ import annotations

FHIR_VERSION = "4.0.1"

#: Types that can be stored and searched over the REST API.
STORABLE_TYPES: frozenset[str] = frozenset(
    {
        "ActivityDefinition",
        "Appointment",
        "AuditEvent",
        "Basic",
        "Binary",
        "Bundle",
        "CarePlan",
        "CareTeam",
        "CodeSystem",
        "Communication",
        "ConceptMap",
        "Condition",
        "Consent",
        "DocumentReference",
        "Encounter",
        "Endpoint",
        "EpisodeOfCare",
        "Goal",
        "Group",
        "HealthcareService",
        "Location",
        "Measure",
        "MessageHeader",
        "NamingSystem",
        "Observation",
        "OperationDefinition",
        "Organization",
        "Patient",
        "PlanDefinition",
        "Practitioner",
        "PractitionerRole",
        "Provenance",
        "Questionnaire",
        "QuestionnaireResponse",
        "RelatedPerson",
        "RequestGroup",
        "RiskAssessment",
        "SearchParameter",
        "ServiceRequest",
        "StructureDefinition",
        "Subscription",
        "Task",
        "ValueSet",
    }
)

#: Types that only travel in requests and responses.
MESSAGE_TYPES: frozenset[str] = frozenset({"OperationOutcome", "Parameters", "CapabilityStatement", "MeasureReport"})

KNOWN_TYPES: frozenset[str] = STORABLE_TYPES | MESSAGE_TYPES


def is_storable(resource_type: str) -> bool:
    """True when resources of this type can be created, read and searched."""
    return resource_type in STORABLE_TYPES
