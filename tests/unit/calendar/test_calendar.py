"""Norwegian public holidays and the working-day deadline (pbrl. § 2-2: 10 working days)."""

from datetime import date

import pytest

from fhir_server.domain.calendar import (
    add_calendar_days,
    add_working_days,
    easter_sunday,
    is_public_holiday,
    is_working_day,
    public_holidays,
    working_days_between,
)


@pytest.mark.parametrize(
    ("year", "easter"),
    [
        (1818, date(1818, 3, 22)),  # earliest possible
        (2000, date(2000, 4, 23)),
        (2008, date(2008, 3, 23)),
        (2011, date(2011, 4, 24)),
        (2019, date(2019, 4, 21)),
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2026, date(2026, 4, 5)),
        (2027, date(2027, 3, 28)),
        (2038, date(2038, 4, 25)),  # latest possible
    ],
)
def test_easter_sunday_known_dates(year: int, easter: date) -> None:
    assert easter_sunday(year) == easter


def test_holidays_2026() -> None:
    assert sorted(public_holidays(2026)) == [
        date(2026, 1, 1),
        date(2026, 4, 2),
        date(2026, 4, 3),
        date(2026, 4, 5),
        date(2026, 4, 6),
        date(2026, 5, 1),
        date(2026, 5, 14),
        date(2026, 5, 17),
        date(2026, 5, 24),
        date(2026, 5, 25),
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]


def test_two_holidays_on_one_date_keep_both_names() -> None:
    # 2027: Easter 28 March, so Whit Monday is 17 May.
    assert public_holidays(2027)[date(2027, 5, 17)] == "Grunnlovsdag / Andre pinsedag"
    assert len(public_holidays(2027)) == 11


def test_christmas_eve_is_not_a_public_holiday() -> None:
    assert not is_public_holiday(date(2026, 12, 24))
    assert is_working_day(date(2026, 12, 24))  # a Thursday


def test_is_working_day() -> None:
    assert is_working_day(date(2026, 4, 1))  # Wednesday
    assert not is_working_day(date(2026, 4, 2))  # Maundy Thursday
    assert not is_working_day(date(2026, 4, 4))  # Saturday
    assert not is_working_day(date(2026, 4, 5))  # Sunday
    assert not is_working_day(date(2026, 4, 6))  # Easter Monday
    assert is_working_day(date(2026, 4, 7))


def test_deadline_across_easter_2026() -> None:
    # Received Wednesday 1 April 2026; 2, 3 and 6 April are holidays, 4-5 a weekend.
    # Working days: 7, 8, 9, 10, 13, 14, 15, 16, 17, 20 April.
    assert add_working_days(date(2026, 4, 1), 10) == date(2026, 4, 20)
    assert add_working_days(date(2026, 4, 1), 1) == date(2026, 4, 7)


def test_deadline_across_year_end() -> None:
    # Received Tuesday 22 Dec 2026: 23, 24, 28, 29, 30, 31 Dec, 4, 5, 6, 7 Jan (25 Dec and 1 Jan holidays).
    assert add_working_days(date(2026, 12, 22), 10) == date(2027, 1, 7)


def test_deadline_around_ascension_and_whit_monday_2026() -> None:
    # Received Tuesday 12 May 2026: 13, 15, 18-22, 26, 27, 28 May (14 May Ascension, 25 May Whit Monday).
    assert add_working_days(date(2026, 5, 12), 10) == date(2026, 5, 28)


def test_deadline_around_17_may_on_a_weekday() -> None:
    # 2028: 17 May is a Wednesday and Ascension is 25 May.
    # Received Monday 15 May 2028: 16, 18, 19, 22, 23, 24, 26, 29, 30, 31 May.
    assert add_working_days(date(2028, 5, 15), 10) == date(2028, 5, 31)


def test_receipt_on_a_holiday_or_weekend_starts_counting_next_working_day() -> None:
    # Received Saturday 4 April 2026: first working day is Tuesday 7 April.
    assert add_working_days(date(2026, 4, 4), 1) == date(2026, 4, 7)
    assert add_working_days(date(2026, 4, 4), 10) == date(2026, 4, 20)


def test_zero_and_negative_working_days() -> None:
    assert add_working_days(date(2026, 4, 1), 0) == date(2026, 4, 1)
    assert add_working_days(date(2026, 4, 7), -1) == date(2026, 4, 1)


def test_working_days_between_is_the_inverse() -> None:
    assert working_days_between(date(2026, 4, 1), date(2026, 4, 20)) == 10
    assert working_days_between(date(2026, 4, 1), date(2026, 4, 17)) == 9
    assert working_days_between(date(2026, 4, 20), date(2026, 4, 1)) == 0


def test_add_calendar_days() -> None:
    assert add_calendar_days(date(2026, 4, 1), 7) == date(2026, 4, 8)
    assert add_calendar_days(date(2026, 12, 28), 7) == date(2027, 1, 4)
