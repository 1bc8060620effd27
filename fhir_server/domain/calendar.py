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
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from functools import lru_cache
from types import MappingProxyType

__all__ = [
    "add_calendar_days",
    "add_working_days",
    "easter_sunday",
    "is_public_holiday",
    "is_working_day",
    "public_holidays",
    "working_days_between",
]


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
