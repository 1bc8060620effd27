"""Norwegian identifiers: which Identifier.system means which number, and the check-digit rules.

Facts and their sources (see /work/shared/docs/norwegian-profiles.md §3 and terminology/README.md):

* fødselsnummer (``urn:oid:2.16.578.1.12.4.1.4.1``), D-nummer (``…4.2``), H-nummer (no-basis uses the
  literal system ``HNR``): 11 digits ``DDMMYY III K1 K2``, two mod-11 check digits (python-stdnum
  ``stdnum.no.fodselsnummer``). D-nummer: day + 40. H-nummer: month + 40; its check-digit failures are
  warnings, not errors (the docs: "warn, not reject"; legacy H-numbers exist).
* FH-nummer (``…4.3``, felles hjelpenummer): 11 digits, first digit 8 or 9, the same two check digits,
  no date.
* DUF-nummer (``…4.5``): 12 digits ``YYYY`` + 6-digit serial + 2 check digits; check = Σ(serial + year
  digits x 4,6,3,2,7,5,4,6,3,2) mod 11 written as two digits; year 1854..this year.
* organisasjonsnummer (``…4.101``): 9 digits, mod 11 (``stdnum.no.orgnr``), first digit 8 or 9
  (the leading-digit rule is UNVERIFIED in the docs).
* HPR-nummer (``…4.4``): digits only (error); a mod-11 check (weights 2-7 from the right) is an
  UNVERIFIED inference, so a failure is only a warning.
* HER-id (``urn:oid:2.16.578.1.12.4.1.2``) and RESH-id (``…4.102``): positive integers, no check digit.
* Apotekets konsesjonsnummer, AKO (``…4.107``): 4 digits from 1001.

Synthetic test numbers are accepted only with ``test_mode=True``: Skatteetaten Tenor (month + 80),
FHI SyntPop (month + 65) and, under the fødselsnummer/D-nummer systems, NAV/Dolly (month + 40, which
is otherwise the H-number marker).

The 2032 rule (Skatteetaten: from 2032-01-01 the first control calculation accepts a remainder of
0, 1, 2 or 3 instead of only 0) is UNVERIFIED in detail; it is applied only from that date.

Messages never contain a whole personal number: see :func:`mask_value` and :func:`mask_identity_numbers`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from enum import Enum

from stdnum.exceptions import ValidationError as StdnumError
from stdnum.no import fodselsnummer, orgnr

from fhir_server import naming
from fhir_server.core.issues import Issue

from .object_paths import matching_objects


class IdentifierKind(Enum):
    """The kinds of Norwegian identifier the server checks."""

    FNR = "fnr"  # fødselsnummer
    DNR = "dnr"  # D-nummer
    HNR = "hnr"  # H-nummer (virksomhetsinternt hjelpenummer)
    FHN = "fhn"  # felles hjelpenummer (FH-nummer)
    DUF = "duf"  # DUF-nummer (UDI)
    ORGNR = "orgnr"  # organisasjonsnummer (Enhetsregisteret, ENH)
    HPR = "hpr"  # Helsepersonellregisteret
    HER = "her"  # HER-id (Adresseregisteret)
    RESH = "resh"  # RESH-id
    AKO = "ako"  # apotekets konsesjonsnummer


#: Canonical Identifier.system (the preferred uniqueId of each NamingSystem, see :mod:`fhir_server.naming`) -> kind.
SYSTEMS: dict[str, IdentifierKind] = {
    naming.FNR_SYSTEM: IdentifierKind.FNR,
    naming.DNR_SYSTEM: IdentifierKind.DNR,
    naming.FHN_SYSTEM: IdentifierKind.FHN,
    naming.HPR_SYSTEM: IdentifierKind.HPR,
    naming.DUF_SYSTEM: IdentifierKind.DUF,
    naming.ORGNR_SYSTEM: IdentifierKind.ORGNR,
    naming.RESH_SYSTEM: IdentifierKind.RESH,
    naming.AKO_SYSTEM: IdentifierKind.AKO,
    naming.HER_SYSTEM: IdentifierKind.HER,
    # no-basis-Patient fixes the H-number slice's system to this literal string (not a URI, no OID).
    naming.HNR_SYSTEM: IdentifierKind.HNR,
}

#: Alias system URIs (non-preferred uniqueIds in the no-basis / NHN NamingSystems) -> canonical system.
ALIASES: dict[str, str] = {alias: system for alias, system in naming.SYSTEM_ALIASES.items() if system in SYSTEMS}

#: Kinds whose values identify a person: never shown in full in messages or logs.
PERSONAL_KINDS = frozenset(
    {IdentifierKind.FNR, IdentifierKind.DNR, IdentifierKind.HNR, IdentifierKind.FHN, IdentifierKind.DUF}
)

_LABEL: dict[IdentifierKind, tuple[str, str]] = {
    IdentifierKind.FNR: ("fødselsnummer", "fødselsnummer"),
    IdentifierKind.DNR: ("D-number", "D-nummer"),
    IdentifierKind.HNR: ("H-number", "H-nummer"),
    IdentifierKind.FHN: ("FH-number", "FH-nummer"),
    IdentifierKind.DUF: ("DUF number", "DUF-nummer"),
    IdentifierKind.ORGNR: ("organisation number", "organisasjonsnummer"),
    IdentifierKind.HPR: ("HPR number", "HPR-nummer"),
    IdentifierKind.HER: ("HER-id", "HER-id"),
    IdentifierKind.RESH: ("RESH-id", "RESH-id"),
    IdentifierKind.AKO: ("pharmacy licence number (AKO)", "apotekkonsesjonsnummer (AKO)"),
}

#: Date from which the post-2032 first-check-digit rule is also accepted (UNVERIFIED detail).
RULE_2032_FROM = datetime.date(2032, 1, 1)

_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_DUF_WEIGHTS = (4, 6, 3, 2, 7, 5, 4, 6, 3, 2)
_HPR_WEIGHTS = (2, 3, 4, 5, 6, 7)


@dataclass(frozen=True, slots=True)
class NumberProblem:
    """Why a number is wrong: English and Norwegian (bokmål) wording, a rule id, and how bad it is.

    ``str(problem)`` is the English reason. ``rule`` looks like ``no-fnr-checksum``; ``severity`` is
    ``error`` or ``warning`` (rules the docs call unverified or tolerant only warn).
    """

    reason: str
    reason_nb: str
    rule: str
    severity: str = "error"

    def __str__(self) -> str:
        return self.reason


def canonical_system(system: str) -> str:
    """The preferred system URI for ``system`` (aliases resolved; unknown systems returned unchanged)."""
    return ALIASES.get(system, system)


def kind_of_system(system: str | None) -> IdentifierKind | None:
    """The identifier kind for an Identifier.system (canonical or alias), or None if not Norwegian/known."""
    if not system:
        return None
    return SYSTEMS.get(canonical_system(system))


def mask_value(value: str) -> str:
    """Mask a number for messages: the first 6 characters then ``*****`` (short values fully masked)."""
    return value[:6] + "*****" if len(value) >= 11 else "*****"


# --- the check-digit arithmetic ----------------------------------------------------------------------------


def _k1_remainder(digits: str) -> int:
    """Σ(digits 1-10 x 3,7,6,1,8,9,4,5,2,1) mod 11: 0 under the current rule, 0-3 under the 2032 rule."""
    return (sum(w * int(d) for w, d in zip(_K1_WEIGHTS, digits, strict=False)) + int(digits[9])) % 11


def _k1_ok(digits: str, today: datetime.date) -> bool:
    if digits[9] == fodselsnummer.calc_check_digit1(digits):
        return True
    return today >= RULE_2032_FROM and _k1_remainder(digits) in (0, 1, 2, 3)


def _k2_ok(digits: str) -> bool:
    return digits[10] == fodselsnummer.calc_check_digit2(digits)


def _check_digits_ok(digits: str, today: datetime.date) -> bool:
    return bool(re.fullmatch(r"[0-9]{11}", digits)) and _k1_ok(digits, today) and _k2_ok(digits)


def _month_offset(month: int) -> int | None:
    """Offset added to the month: 0 real, 40 H-number or NAV/Dolly, 65 SyntPop, 80 Tenor; None if none fits."""
    for offset in (0, 40, 65, 80):
        if 1 <= month - offset <= 12:
            return offset
    return None


def _format_problem(kind: IdentifierKind, value: str, length: int) -> NumberProblem | None:
    en, nb = _LABEL[kind]
    tag = kind.value
    if value != value.strip() or any(c in value for c in " -.:\t"):
        return NumberProblem(
            f"the {en} contains spaces or separators; send the {length} digits only",
            f"{nb} inneholder mellomrom eller skilletegn; send bare de {length} sifrene",
            f"no-{tag}-format",
        )
    if not re.fullmatch(f"[0-9]{{{length}}}", value):
        return NumberProblem(
            f"the {en} is not {length} digits",
            f"{nb} er ikke {length} sifre",
            f"no-{tag}-format",
        )
    return None


def _checksum_problems(kind: IdentifierKind, digits: str, today: datetime.date) -> NumberProblem | None:
    tag = kind.value
    severity = "warning" if kind is IdentifierKind.HNR else "error"
    if not _k1_ok(digits, today):
        return NumberProblem(
            "the first check digit (k1) is wrong", "første kontrollsiffer (k1) er feil", f"no-{tag}-checksum", severity
        )
    if not _k2_ok(digits):
        return NumberProblem(
            "the second check digit (k2) is wrong", "andre kontrollsiffer (k2) er feil", f"no-{tag}-checksum", severity
        )
    return None


def _person_number_problem(
    kind: IdentifierKind, digits: str, test_mode: bool, today: datetime.date
) -> NumberProblem | None:
    """Rules for fødselsnummer, D-nummer and H-nummer once the check digits are right."""
    tag = kind.value
    en, nb = _LABEL[kind]
    soft = "warning" if kind is IdentifierKind.HNR else "error"
    day, month = int(digits[0:2]), int(digits[2:4])
    if digits[0] in "89":
        return NumberProblem(
            f"a {en} cannot start with 8 or 9; this looks like an FH-number (system {naming.FHN_SYSTEM})",
            f"{nb} kan ikke begynne med 8 eller 9; dette ligner et FH-nummer (system {naming.FHN_SYSTEM})",
            f"no-{tag}-kind",
            soft,
        )
    if kind is IdentifierKind.DNR:
        if not 41 <= day <= 71:
            return NumberProblem(
                "a D-number's first digit must be 4, 5, 6 or 7 (day of birth + 40)",
                "første siffer i et D-nummer må være 4, 5, 6 eller 7 (fødselsdag + 40)",
                "no-dnr-kind",
            )
        day -= 40
    elif day > 40:
        return NumberProblem(
            f"a {en} has a day of birth above 40; this looks like a D-number (system {naming.DNR_SYSTEM})",
            f"{nb} har fødselsdag over 40; dette ligner et D-nummer (system {naming.DNR_SYSTEM})",
            f"no-{tag}-kind",
            soft,
        )
    offset = _month_offset(month)
    if offset is None:
        return NumberProblem(
            f"the {en} does not contain a valid birth date",
            f"{nb} har ikke en gyldig fødselsdato",
            f"no-{tag}-date",
            soft,
        )
    if kind is IdentifierKind.HNR:
        if offset != 40:
            return NumberProblem(
                "an H-number's third digit must be 4 or 5 (month of birth + 40)",
                "tredje siffer i et H-nummer må være 4 eller 5 (fødselsmåned + 40)",
                "no-hnr-kind",
                "warning",
            )
    elif offset and not test_mode:
        source = {
            40: "an H-number or a NAV/Dolly synthetic test number (month + 40)",
            65: "an FHI SyntPop synthetic test number (month + 65)",
            80: "a Skatteetaten Tenor synthetic test number (month + 80)",
        }[offset]
        source_nb = {
            40: "et H-nummer eller et syntetisk testnummer fra NAV/Dolly (måned + 40)",
            65: "et syntetisk testnummer fra FHI SyntPop (måned + 65)",
            80: "et syntetisk testnummer fra Skatteetaten Tenor (måned + 80)",
        }[offset]
        return NumberProblem(
            f"this is {source}, not a real {en}; test numbers are accepted only in test mode",
            f"dette er {source_nb}, ikke et ekte {nb}; testnumre godtas bare i testmodus",
            f"no-{tag}-synthetic",
        )
    normal = f"{day:02d}{month - offset:02d}{digits[4:]}"
    try:
        birth = fodselsnummer.get_birth_date(normal)
    except StdnumError:
        return NumberProblem(
            f"the {en} does not contain a valid birth date",
            f"{nb} har ikke en gyldig fødselsdato",
            f"no-{tag}-date",
            soft,
        )
    if birth > today:
        return NumberProblem(
            f"the birth date in the {en} is in the future",
            f"fødselsdatoen i {nb} er fram i tid",
            f"no-{tag}-date",
            soft,
        )
    return None


def _duf_problem(digits: str, today: datetime.date) -> NumberProblem | None:
    year = int(digits[:4])
    if not 1854 <= year <= today.year:
        return NumberProblem(
            f"the DUF number's year {year} is not between 1854 and {today.year}",
            f"årstallet {year} i DUF-nummeret er ikke mellom 1854 og {today.year}",
            "no-duf-date",
        )
    reordered = digits[4:10] + digits[:4]
    check = sum(w * int(d) for w, d in zip(_DUF_WEIGHTS, reordered, strict=True)) % 11
    if f"{check:02d}" != digits[10:]:
        return NumberProblem(
            "the DUF number's check digits (last two) are wrong",
            "kontrollsifrene (de to siste) i DUF-nummeret er feil",
            "no-duf-checksum",
        )
    return None


def _hpr_check_ok(digits: str) -> bool:
    """UNVERIFIED inferred rule: mod 11 with weights 2-7 repeating from the right, 11 -> 0, 10 -> invalid."""
    body = digits[:-1][::-1]
    total = sum(int(d) * _HPR_WEIGHTS[i % 6] for i, d in enumerate(body))
    check = 11 - total % 11
    return check != 10 and check % 11 == int(digits[-1])


def check_number(
    kind: IdentifierKind, value: str, *, test_mode: bool = False, today: datetime.date | None = None
) -> NumberProblem | None:
    """None if ``value`` is a well-formed ``kind`` number, else the first problem found.

    ``today`` (default: the real date) is used for "birth date in the future", the DUF year range and the
    date from which the 2032 check-digit rule applies.
    """
    today = today or datetime.date.today()
    if not isinstance(value, str):
        en, nb = _LABEL[kind]
        return NumberProblem(f"the {en} must be a string", f"{nb} må være en tekststreng", f"no-{kind.value}-format")
    if kind in (IdentifierKind.FNR, IdentifierKind.DNR, IdentifierKind.HNR):
        return (
            _format_problem(kind, value, 11)
            or _checksum_problems(kind, value, today)
            or _person_number_problem(kind, value, test_mode, today)
        )
    if kind is IdentifierKind.FHN:
        problem = _format_problem(kind, value, 11)
        if problem:
            return problem
        if value[0] not in "89":
            return NumberProblem(
                "an FH-number must start with 8 or 9", "et FH-nummer må begynne med 8 eller 9", "no-fhn-prefix"
            )
        return _checksum_problems(kind, value, today)
    if kind is IdentifierKind.DUF:
        return _format_problem(kind, value, 12) or _duf_problem(value, today)
    if kind is IdentifierKind.ORGNR:
        problem = _format_problem(kind, value, 9)
        if problem:
            return problem
        if not orgnr.is_valid(value):
            return NumberProblem(
                "the organisation number's check digit (the last digit) is wrong",
                "kontrollsifferet (siste siffer) i organisasjonsnummeret er feil",
                "no-orgnr-checksum",
            )
        if value[0] not in "89":
            return NumberProblem(
                "an organisation number must start with 8 or 9",
                "et organisasjonsnummer må begynne med 8 eller 9",
                "no-orgnr-prefix",
            )
        return None
    if kind is IdentifierKind.AKO:
        problem = _format_problem(kind, value, 4)
        if problem is None and int(value) < 1001:
            problem = NumberProblem(
                "a pharmacy licence number (AKO) is a number from 1001",
                "et apotekkonsesjonsnummer (AKO) er et nummer fra 1001",
                "no-ako-range",
            )
        return problem
    # HPR, HER, RESH: positive integers.
    en, nb = _LABEL[kind]
    if not re.fullmatch(r"[1-9][0-9]*", value):
        return NumberProblem(
            f"the {en} must be a positive whole number (digits only, no leading zero)",
            f"{nb} må være et positivt heltall (bare sifre, ingen innledende null)",
            f"no-{kind.value}-format",
        )
    if kind is IdentifierKind.HPR and not _hpr_check_ok(value):
        return NumberProblem(
            "the HPR number's check digit looks wrong (mod 11 rule, not officially confirmed)",
            "kontrollsifferet i HPR-nummeret ser feil ut (mod 11-regel, ikke offisielt bekreftet)",
            "no-hpr-checksum",
            "warning",
        )
    return None


def is_synthetic(value: str, kind: IdentifierKind | None = None) -> bool:
    """True for an 11-digit synthetic test number with valid check digits.

    Tenor (month + 80) and SyntPop (month + 65) always count. Month + 40 (NAV/Dolly) counts only when
    ``kind`` is FNR or DNR: without that context it is a genuine H-number.
    """
    if not isinstance(value, str) or not _check_digits_ok(value, datetime.date.today()):
        return False
    if value[0] in "89":
        return False
    offset = _month_offset(int(value[2:4]))
    if offset in (65, 80):
        return True
    return offset == 40 and kind in (IdentifierKind.FNR, IdentifierKind.DNR)


# --- masking -------------------------------------------------------------------------------------------------

_ELEVEN_DIGITS = re.compile(r"(?<![0-9])([0-9]{6}) ?([0-9]{5})(?![0-9])")


def mask_identity_numbers(text: str) -> str:
    """Mask every stand-alone 11-digit run (also written ``DDMMYY NNNNN``): the first 6 digits then ``*****``.

    Runs whose check digits fail are masked too: a mistyped fødselsnummer still points to a person, and
    log lines lose nothing of value. Digits inside longer digit runs are left alone.
    """
    return _ELEVEN_DIGITS.sub(lambda m: m.group(1) + "*****", text)


def identity_number_in(text: str) -> bool:
    """True if ``text`` holds an 11-digit run with valid fødselsnummer/D/H/FH check digits (for tests/audits)."""
    today = datetime.date.today()
    return any(_check_digits_ok(m.group(1) + m.group(2), today) for m in _ELEVEN_DIGITS.finditer(text))


# --- walking a resource --------------------------------------------------------------------------------------


def _names_a_known_system(node: dict) -> bool:
    """An object with a ``value`` and a ``system`` the server checks (canonical or alias)."""
    system = node["system"]
    return isinstance(system, str) and "value" in node and (system in SYSTEMS or system in ALIASES)


_MEMO_LIMIT = 4096
_memo: dict[tuple, NumberProblem | None] = {}


def _checked(kind: IdentifierKind, value: object, test_mode: bool, today: datetime.date) -> NumberProblem | None:
    """:func:`check_number`, memoised for string values (it is a pure function of its arguments)."""
    if not isinstance(value, str):
        return check_number(kind, value, test_mode=test_mode, today=today)  # type: ignore[arg-type]
    key = (kind, value, test_mode, today)
    try:
        return _memo[key]
    except KeyError:
        pass
    problem = check_number(kind, value, test_mode=test_mode, today=today)
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[key] = problem
    return problem


def validate_identifiers(resource: dict, *, test_mode: bool = False, today: datetime.date | None = None) -> list[Issue]:
    """Check every Identifier (``{"system", "value"}`` anywhere, contained and Bundle entries included).

    Only identifiers whose system is in :data:`SYSTEMS` or :data:`ALIASES` are checked. Each wrong number
    gives one Issue (code ``value``, or ``business-rule`` for synthetic numbers) at ``<path>.value``.
    """
    issues: list[Issue] = []
    root = resource.get("resourceType") or "Resource"
    found = matching_objects(resource, root, "system", _names_a_known_system)
    if not found:
        return issues
    today = today or datetime.date.today()
    for path, node in found:
        system, value = node["system"], node["value"]
        kind = kind_of_system(system)
        if kind is None:
            continue
        problem = _checked(kind, value, test_mode, today)
        if problem is not None:
            issues.append(number_issue(kind, problem, system, value, path))
    return issues


def number_issue(kind: IdentifierKind, problem: NumberProblem, system: str, value: object, path: str) -> Issue:
    """The Issue of a wrong number at ``<path>.value``."""
    en, nb = _LABEL[kind]
    # public numbers (orgnr, HPR ...) are shown, but never a personal number sent under the wrong system
    shown = mask_value(str(value)) if kind in PERSONAL_KINDS else mask_identity_numbers(str(value))
    return Issue(
        severity=problem.severity,
        code="business-rule" if problem.rule.endswith("-synthetic") else "value",
        diagnostics=f"Invalid {en} {shown} (system {system}): {problem.reason}",
        expression=f"{path}.value",
        diagnostics_nb=f"Ugyldig {nb} {shown} (system {system}): {problem.reason_nb}",
        rule=problem.rule,
    )
