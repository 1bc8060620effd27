"""Norwegian dates of instants (Europe/Oslo): around midnight, across the summer-time changes, in winter."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from fhir_server.domain.calendar import end_of_oslo_day, fhir_oslo_date, oslo_date, working_day_deadline


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text + "+00:00")


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-06-15T21:59:59", date(2026, 6, 15)),  # 23:59:59+02:00
        ("2026-06-15T22:30:00", date(2026, 6, 16)),  # 00:30+02:00: Norway's next day, UTC's same day
        ("2026-03-28T22:59:59", date(2026, 3, 28)),  # 23:59:59+01:00, the night summer time begins
        ("2026-03-28T23:00:00", date(2026, 3, 29)),  # 00:00+01:00
        ("2026-03-29T00:59:59", date(2026, 3, 29)),  # 01:59:59+01:00, the last second of winter time
        ("2026-03-29T01:00:00", date(2026, 3, 29)),  # 03:00+02:00
        ("2026-03-29T03:00:00", date(2026, 3, 29)),  # 05:00+02:00
        ("2026-03-29T21:59:59", date(2026, 3, 29)),  # 23:59:59+02:00
        ("2026-03-29T22:00:00", date(2026, 3, 30)),  # 00:00+02:00
        ("2026-10-24T21:59:59", date(2026, 10, 24)),  # 23:59:59+02:00, the night summer time ends
        ("2026-10-24T22:00:00", date(2026, 10, 25)),  # 00:00+02:00
        ("2026-10-25T00:30:00", date(2026, 10, 25)),  # 02:30+02:00, the first 02:30
        ("2026-10-25T01:30:00", date(2026, 10, 25)),  # 02:30+01:00, the second 02:30
        ("2026-10-25T02:00:00", date(2026, 10, 25)),  # 03:00+01:00
        ("2026-10-25T22:59:59", date(2026, 10, 25)),  # 23:59:59+01:00
        ("2026-10-25T23:00:00", date(2026, 10, 26)),  # 00:00+01:00
        ("2026-01-15T22:59:59", date(2026, 1, 15)),  # winter: 23:59:59+01:00
        ("2026-01-15T23:00:00", date(2026, 1, 16)),  # winter: 00:00+01:00
    ],
)
def test_oslo_date_of_an_instant(instant: str, expected: date) -> None:
    assert oslo_date(utc(instant)) == expected
    assert fhir_oslo_date(instant + "Z") == expected


def test_an_instant_with_any_offset_and_a_naive_one_as_utc() -> None:
    assert oslo_date(datetime.fromisoformat("2026-06-16T00:30:00+02:00")) == date(2026, 6, 16)
    assert oslo_date(datetime.fromisoformat("2026-06-15T17:30:00-05:00")) == date(2026, 6, 16)
    assert oslo_date(datetime(2026, 6, 15, 22, 30)) == date(2026, 6, 16)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 6, 30), "2026-06-30T23:59:59+02:00"),
        (date(2026, 3, 28), "2026-03-28T23:59:59+01:00"),
        (date(2026, 3, 29), "2026-03-29T23:59:59+02:00"),
        (date(2026, 10, 24), "2026-10-24T23:59:59+02:00"),
        (date(2026, 10, 25), "2026-10-25T23:59:59+01:00"),
        (date(2026, 1, 30), "2026-01-30T23:59:59+01:00"),
    ],
)
def test_end_of_an_oslo_day_has_that_days_offset(day: date, expected: str) -> None:
    assert end_of_oslo_day(day).isoformat() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-04-02", date(2026, 4, 2)),  # a date is taken as written
        ("2026-03-30T10:00:00+02:00", date(2026, 3, 30)),
        ("2026-11-20T23:30:00.250-01:00", date(2026, 11, 21)),
        ("2026-04", None),  # partial dates name no day
        ("2026", None),
        ("2026-02-30", None),
        ("i går", None),
        (None, None),
    ],
)
def test_fhir_date_or_datetime_text(text: object, expected: date | None) -> None:
    assert fhir_oslo_date(text) == expected


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        # Tue 16 June (Oslo) counts from the 16th; its UTC date, the 15th, would give the 29th
        ("2026-06-16T00:30:00+02:00", "2026-06-30T23:59:59+02:00"),
        # received in winter time, due in summer time (Easter 2026: 2, 3 and 6 April are holidays)
        ("2026-03-20T12:00:00+01:00", "2026-04-08T23:59:59+02:00"),
        # received in summer time, due in winter time
        ("2026-10-20T12:00:00+02:00", "2026-11-03T23:59:59+01:00"),
        # winter, just after midnight Oslo time: Fri 16 January, not Thu 15
        ("2026-01-15T23:30:00+00:00", "2026-01-30T23:59:59+01:00"),
    ],
)
def test_working_day_deadline(received: str, expected: str) -> None:
    assert working_day_deadline(datetime.fromisoformat(received), 10).isoformat() == expected
