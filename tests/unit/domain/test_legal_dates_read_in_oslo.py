"""Dates read back from stored texts for the legal deadlines are Norwegian dates: the received stamp (an
instant in UTC) and a milestone's completion dateTime count on their Europe/Oslo date."""

from __future__ import annotations

from datetime import date

from fhir_server.api.ops.pathways import received_date
from fhir_server.domain.pathways import EXT_MILESTONE_COMPLETED
from fhir_server.domain.pathways.state import completion_date
from fhir_server.domain.pathways.suggest import reference_date

RECEIVED = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"


def test_the_received_stamp_is_read_as_its_oslo_date() -> None:
    referral = {
        "authoredOn": "2026-06-10",
        "extension": [{"url": RECEIVED, "valueDateTime": "2026-06-15T22:30:00Z"}],  # 00:30 on the 16th in Oslo
    }
    assert received_date(referral) == date(2026, 6, 16)  # $apply's default received date
    assert reference_date({"extension": referral["extension"]}) == date(2026, 6, 16)  # the age's date
    assert received_date({"authoredOn": "2026-01-15T23:30:00Z"}) == date(2026, 1, 16)
    assert reference_date({"authoredOn": "2026-01-15T23:30:00Z"}) == date(2026, 1, 16)


def test_a_completion_datetime_is_read_as_its_oslo_date() -> None:
    activity = {"detail": {"extension": [{"url": EXT_MILESTONE_COMPLETED, "valueDateTime": "2026-10-24T22:30:00Z"}]}}
    assert completion_date(activity) == date(2026, 10, 25)
