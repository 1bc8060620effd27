"""Turning FHIR values into comparable search values: date ranges, number ranges, normalised text."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

LOW_SENTINEL = "0001-01-01T00:00:00.000000"
HIGH_SENTINEL = "9999-12-31T23:59:59.999999"


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")


#: Values seen again (birth dates, names, places) are worked out once: index rows are built on every write.
_CACHED = 8192
#: Longer text is normalised afresh each time (the cache holds short values only).
_CACHED_TEXT_LENGTH = 200


def date_range(text: str) -> tuple[str, str] | None:
    """The instant range a FHIR date/dateTime/instant covers, as sortable UTC strings.

    ``2026`` covers the whole year; ``2026-04-01T10:00:00+02:00`` covers that second.
    Values without a time zone are taken as UTC.
    """
    return _date_range(text) if isinstance(text, str) and len(text) <= _CACHED_TEXT_LENGTH else _range_of(text)


@lru_cache(maxsize=_CACHED)
def _date_range(text: str) -> tuple[str, str] | None:
    return _range_of(text)


def _range_of(text: str) -> tuple[str, str] | None:
    m = _DATE_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    try:
        y = int(m["y"])
        if m["m"] is None:
            low, high = datetime(y, 1, 1), datetime(y + 1, 1, 1)
        elif m["d"] is None:
            mo = int(m["m"])
            low = datetime(y, mo, 1)
            high = low + timedelta(days=calendar.monthrange(y, mo)[1])
        elif m["H"] is None:
            low = datetime(y, int(m["m"]), int(m["d"]))
            high = low + timedelta(days=1)
        else:
            second = int(m["S"] or 0)
            frac = m["f"] or ""
            micro = int((frac[1:] + "000000")[:6]) if frac else 0
            low = datetime(y, int(m["m"]), int(m["d"]), int(m["H"]), int(m["M"]), min(second, 59), micro)
            if m["S"] is None:
                step = timedelta(minutes=1)
            elif frac:
                step = timedelta(microseconds=max(1, 10 ** (6 - min(len(frac) - 1, 6))))
            else:
                step = timedelta(seconds=1)
            high = low + step
            tz = m["tz"]
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
                low, high = low - sign * offset, high - sign * offset
    except (ValueError, OverflowError):
        return None
    return _fmt(low), _fmt(high - timedelta(microseconds=1))


def now_instant() -> str:
    """The current time as a FHIR instant with milliseconds, in UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def number_range(value: Decimal | int | float | str) -> tuple[float, float] | None:
    """The implicit range of a decimal: ``100`` is [99.5, 100.5), ``1.50`` is [1.495, 1.505)."""
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    if not dec.is_finite():
        return None
    exponent = dec.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(dec - half), float(dec + half)


#: Letters that Unicode does not decompose but users expect to match their base letter.
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "ð": "d", "þ": "th", "ł": "l", "đ": "d"})


def normalise_text(text: str) -> str:
    """Case- and accent-insensitive form for string search (``Ålesund`` → ``alesund``, ``Østby`` → ``ostby``)."""
    return _normalised(text) if len(text) <= _CACHED_TEXT_LENGTH else _normalise(text)


@lru_cache(maxsize=_CACHED)
def _normalised(text: str) -> str:
    return _normalise(text)


def _normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
