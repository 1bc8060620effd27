"""Norwegian public holidays and working days (virkedager) for legal deadlines.

Public holidays (lov om helligdager og helligdagsfred § 2 and the act on 1 and 17 May as
høgtidsdager; cited from memory): 1 January, Maundy Thursday, Good Friday, Easter Sunday, Easter
Monday, 1 May, 17 May, Ascension Day (Easter + 39), Whit Sunday (Easter + 49), Whit Monday
(Easter + 50), 25 and 26 December. Christmas Eve and New Year's Eve are *not* public holidays.
Easter Sunday is the Gregorian date (the anonymous "Meeus/Jones/Butcher" computus).

Working day: Monday to Friday and not a public holiday. Helsedirektoratet's quality indicator for the
§ 2-2 assessment deadline speaks of "10 arbeidsdager"; that is read here as Monday to Friday except
public holidays. Saturdays count as virkedager in some other acts (e.g. ferieloven); that reading is
not used here.

Counting convention (:func:`add_working_days`): the day the deadline starts running (the day the
referral is received) is not counted; counting starts the following day, as in the general rule for
deadlines in days (domstolloven § 148 first paragraph, which forvaltningsloven § 29 refers to; cited
from memory, not re-checked against Lovdata). The result of ``add_working_days(received, 10)`` is the
last day on which the assessment is in time.

Dates from instants: a legal date is the **Norwegian local date** (Europe/Oslo) of the instant, not
its UTC date (a referral received 00:30 Norwegian summer time is received that day, though it is
still the day before in UTC). A deadline day ends at 23:59:59 Oslo time, with that date's offset
(+02:00 in summer time, +01:00 otherwise). :func:`oslo_date`, :func:`oslo_today`,
:func:`end_of_oslo_day`, :func:`fhir_oslo_date` and :func:`working_day_deadline` are the one place
for this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

__all__ = [
    "OSLO",
    "add_calendar_days",
    "add_working_days",
    "easter_sunday",
    "end_of_oslo_day",
    "fhir_oslo_date",
    "is_public_holiday",
    "is_working_day",
    "oslo_date",
    "oslo_today",
    "public_holidays",
    "working_day_deadline",
    "working_days_between",
]

#: Norway's time zone: the dates of the legal deadlines are its local dates.
OSLO = ZoneInfo("Europe/Oslo")
_FHIR_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?")


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday of ``year`` (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=256)
def public_holidays(year: int) -> Mapping[date, str]:
    """The Norwegian public holidays of ``year``, date → Norwegian name."""
    easter = easter_sunday(year)
    days = [
        (date(year, 1, 1), "Første nyttårsdag"),
        (easter - timedelta(days=3), "Skjærtorsdag"),
        (easter - timedelta(days=2), "Langfredag"),
        (easter, "Første påskedag"),
        (easter + timedelta(days=1), "Andre påskedag"),
        (date(year, 5, 1), "Arbeidernes dag"),
        (date(year, 5, 17), "Grunnlovsdag"),
        (easter + timedelta(days=39), "Kristi himmelfartsdag"),
        (easter + timedelta(days=49), "Første pinsedag"),
        (easter + timedelta(days=50), "Andre pinsedag"),
        (date(year, 12, 25), "Første juledag"),
        (date(year, 12, 26), "Andre juledag"),
    ]
    holidays: dict[date, str] = {}
    for day, name in days:  # two holidays can fall on one date (17 May 2027 is also Whit Monday)
        holidays[day] = f"{holidays[day]} / {name}" if day in holidays else name
    return MappingProxyType(holidays)


def is_public_holiday(d: date) -> bool:
    """True when ``d`` is a Norwegian public holiday."""
    return d in public_holidays(d.year)


def is_working_day(d: date) -> bool:
    """True for Monday to Friday that is not a public holiday."""
    return d.weekday() < 5 and not is_public_holiday(d)


def add_working_days(start: date, n: int) -> date:
    """The ``n``-th working day after ``start`` (``start`` itself is never counted).

    ``n == 0`` returns ``start`` unchanged. Negative ``n`` counts backwards the same way.
    """
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    current = start
    while remaining:
        current += timedelta(days=step)
        if is_working_day(current):
            remaining -= 1
    return current


def add_calendar_days(start: date, n: int) -> date:
    """``start`` plus ``n`` calendar days (forløpstider are in calendar days)."""
    return start + timedelta(days=n)


def working_days_between(start: date, end: date) -> int:
    """How many working days lie after ``start`` up to and including ``end`` (0 when end <= start)."""
    count = 0
    current = start
    while current < end:
        current += timedelta(days=1)
        if is_working_day(current):
            count += 1
    return count


def oslo_date(instant: datetime) -> date:
    """The Norwegian local date of ``instant`` (a naive datetime is taken as UTC)."""
    aware = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
    return aware.astimezone(OSLO).date()


def oslo_today() -> date:
    """Today's date in Norway."""
    return oslo_date(datetime.now(UTC))


def end_of_oslo_day(day: date) -> datetime:
    """23:59:59 Norwegian time on ``day``, with that date's offset (+02:00 summer time, +01:00 winter)."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=OSLO)


def fhir_oslo_date(value: object) -> date | None:
    """The Norwegian date of a FHIR ``date`` or ``dateTime`` text: a full date as written, a dateTime with
    a time by its instant's Oslo date; None for a partial date (``2026``, ``2026-06``) or anything else."""
    match = _FHIR_DATE_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    try:
        if match.group(2) is None:
            return date.fromisoformat(match.group(1))
        return oslo_date(datetime.fromisoformat(match.group(0)))
    except ValueError:  # e.g. 2026-02-30
        return None


def working_day_deadline(received: datetime, working_days: int) -> datetime:
    """The end (Oslo time) of the ``working_days``-th working day after the Norwegian date of ``received``."""
    return end_of_oslo_day(add_working_days(oslo_date(received), working_days))
