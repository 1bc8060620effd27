"""Check-digit and format rules for each Norwegian identifier kind (valid and invalid cases)."""

from __future__ import annotations

import datetime

import pytest

from fhir_server.core.validation.identifiers import (
    ALIASES,
    SYSTEMS,
    IdentifierKind,
    NumberProblem,
    check_number,
    is_synthetic,
    kind_of_system,
)

K = IdentifierKind
TODAY = datetime.date(2026, 11, 22)


def person_number(first9: str) -> str | None:
    """An independent mod-11 generator (weights from the docs), for building test numbers."""
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    k1 = (11 - sum(w * int(d) for w, d in zip(w1, first9, strict=True)) % 11) % 11
    if k1 == 10:
        return None
    ten = first9 + str(k1)
    k2 = (11 - sum(w * int(d) for w, d in zip(w2, ten, strict=True)) % 11) % 11
    return None if k2 == 10 else ten + str(k2)


def first_valid(prefix6: str, individual_from: int = 100) -> str:
    for i in range(individual_from, 1000):
        number = person_number(f"{prefix6}{i:03d}")
        if number:
            return number
    raise AssertionError("no valid number")


def check(kind: IdentifierKind, value: str, test_mode: bool = False) -> NumberProblem | None:
    return check_number(kind, value, test_mode=test_mode, today=TODAY)


# --- fødselsnummer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["15038512363", "01120551384", "21030550231", "13031353453"])
def test_fnr_valid(value: str) -> None:
    assert check(K.FNR, value) is None


@pytest.mark.parametrize(
    ("value", "rule", "words"),
    [
        ("15038512373", "no-fnr-checksum", "(k1)"),
        ("15038512364", "no-fnr-checksum", "(k2)"),
        ("12345678901", "no-fnr-checksum", "(k1)"),  # the Helsenorge example placeholder
        ("13057444850", "no-fnr-checksum", "check digit"),  # example in the no-basis Patient SD
        ("1503851236", "no-fnr-format", "not 11 digits"),
        ("150385123630", "no-fnr-format", "not 11 digits"),
        ("1503851236a", "no-fnr-format", "not 11 digits"),
        ("150385 12363", "no-fnr-format", "spaces"),
        (" 15038512363", "no-fnr-format", "spaces"),
        ("150385-12363", "no-fnr-format", "separators"),
        ("31028512379", "no-fnr-date", "birth date"),  # 31 February
        ("49079023425", "no-fnr-kind", "D-number"),
        ("93915000868", "no-fnr-kind", "FH-number"),
    ],
)
def test_fnr_invalid(value: str, rule: str, words: str) -> None:
    problem = check(K.FNR, value)
    assert problem is not None and problem.rule == rule and problem.severity == "error"
    assert words in problem.reason
    assert problem.reason_nb and problem.reason_nb != problem.reason
    assert str(problem) == problem.reason


def test_fnr_placeholder_is_a_check_digit_failure_with_norwegian_text() -> None:
    problem = check(K.FNR, "12345678901")
    assert problem is not None
    assert problem.reason == "the first check digit (k1) is wrong"
    assert problem.reason_nb == "første kontrollsiffer (k1) er feil"


def test_fnr_birth_date_in_the_future() -> None:
    born_2030 = "01013060181"  # valid check digits, individual number 601 -> year 2030
    problem = check(K.FNR, born_2030)
    assert problem is not None and problem.rule == "no-fnr-date" and "future" in problem.reason
    assert check_number(K.FNR, born_2030, today=datetime.date(2030, 1, 2)) is None


def test_fnr_with_impossible_century() -> None:
    number = first_valid("010145", 500)  # individual 500-749 with year 45: no century fits
    assert 500 <= int(number[6:9]) < 750
    problem = check(K.FNR, number)
    assert problem is not None and problem.rule == "no-fnr-date"


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("05859511149", "Tenor"),  # month + 80
        ("05469945644", "NAV/Dolly"),  # month + 40
        (first_valid("057195"), "SyntPop"),  # month + 65
    ],
)
def test_synthetic_fnr_only_in_test_mode(value: str, source: str) -> None:
    problem = check(K.FNR, value)
    assert problem is not None and problem.rule == "no-fnr-synthetic" and source in problem.reason
    assert check(K.FNR, value, test_mode=True) is None


def test_synthetic_with_wrong_check_digit_fails_also_in_test_mode() -> None:
    problem = check(K.FNR, "05859511148", test_mode=True)
    assert problem is not None and problem.rule == "no-fnr-checksum"


def test_month_beyond_every_offset_is_a_bad_date_even_in_test_mode() -> None:
    number = first_valid("059395")  # month 93: no offset (0/40/65/80) gives 1..12
    problem = check(K.FNR, number, test_mode=True)
    assert problem is not None and problem.rule == "no-fnr-date"


def test_is_synthetic() -> None:
    assert is_synthetic("05859511149")
    assert is_synthetic(first_valid("057195"))
    assert not is_synthetic("05469945644")  # month + 40 without context is an H-number
    assert is_synthetic("05469945644", K.FNR)
    assert not is_synthetic("15038512363")
    assert not is_synthetic("05859511148")  # wrong check digit
    assert not is_synthetic("93915000868")  # FH-number


# --- D-nummer -----------------------------------------------------------------------------------------------


def test_dnr_valid_and_invalid() -> None:
    assert check(K.DNR, "49079023425") is None
    assert check(K.DNR, "49079023426").rule == "no-dnr-checksum"
    assert check(K.DNR, "4907902342").rule == "no-dnr-format"
    assert check(K.DNR, "15038512363").rule == "no-dnr-kind"
    bad_day = first_valid("720190")  # day 72 - 40 = 32
    assert check(K.DNR, bad_day).rule == "no-dnr-kind"
    feb_31 = first_valid("710290")  # 31 February
    assert check(K.DNR, feb_31).rule == "no-dnr-date"


def test_tenor_dnr_only_in_test_mode() -> None:
    tenor = first_valid("458795")  # day 5 + 40, month 7 + 80
    assert check(K.DNR, tenor).rule == "no-dnr-synthetic"
    assert check(K.DNR, tenor, test_mode=True) is None


# --- H-nummer -----------------------------------------------------------------------------------------------


def test_hnr_valid_and_invalid() -> None:
    assert check(K.HNR, "28427034781") is None
    wrong_k2 = check(K.HNR, "28427034782")
    assert wrong_k2.rule == "no-hnr-checksum" and wrong_k2.severity == "warning"  # tolerated, per the docs
    assert check(K.HNR, "2842703478").severity == "error"  # format is still an error
    not_h = check(K.HNR, "15038512363")
    assert not_h.rule == "no-hnr-kind" and not_h.severity == "warning"


# --- FH-nummer ----------------------------------------------------------------------------------------------


def test_fhn_valid_and_invalid() -> None:
    assert check(K.FHN, "93915000868") is None
    assert check(K.FHN, "88301661333") is None
    assert check(K.FHN, "15038512363").rule == "no-fhn-prefix"
    assert "must start with 8 or 9" in check(K.FHN, "15038512363").reason
    assert "(k1)" in check(K.FHN, "93915000878").reason
    assert "(k2)" in check(K.FHN, "93915000869").reason
    assert check(K.FHN, "9391500086").rule == "no-fhn-format"
    assert check(K.FHN, "93915 000868").rule == "no-fhn-format"


# --- 2032 rule ----------------------------------------------------------------------------------------------


def new_rule_number() -> str:
    """A number whose k1 remainder is 2: invalid today, valid under the (unverified) 2032 rule."""
    w1 = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)
    w2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    for i in range(100, 1000):
        nine = f"150385{i:03d}"
        for k1 in range(10):
            ten = nine + str(k1)
            if sum(w * int(d) for w, d in zip(w1, ten, strict=True)) % 11 != 2:
                continue
            k2 = (11 - sum(w * int(d) for w, d in zip(w2, ten, strict=True)) % 11) % 11
            if k2 < 10:
                return ten + str(k2)
    raise AssertionError


def test_2032_first_check_digit_rule_applies_only_from_2032() -> None:
    number = new_rule_number()
    assert check_number(K.FNR, number, today=datetime.date(2031, 12, 31)).rule == "no-fnr-checksum"
    assert check_number(K.FNR, number, today=datetime.date(2032, 1, 2)) is None


# --- DUF, organisasjonsnummer, HPR, HER, RESH, AKO ---------------------------------------------------------


@pytest.mark.parametrize("value", ["200112345609", "201017238203", "200816832910"])
def test_duf_valid(value: str) -> None:
    assert check(K.DUF, value) is None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("200112345608", "no-duf-checksum"),
        ("20011234560", "no-duf-format"),
        ("2001 12345609", "no-duf-format"),
        ("185012345600", "no-duf-date"),
        ("209912345600", "no-duf-date"),
    ],
)
def test_duf_invalid(value: str, rule: str) -> None:
    assert check(K.DUF, value).rule == rule


@pytest.mark.parametrize("value", ["974888130", "983065287", "812345672", "915933149", "983658776"])
def test_orgnr_valid(value: str) -> None:
    assert check(K.ORGNR, value) is None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("974888131", "no-orgnr-checksum"),
        ("123456785", "no-orgnr-prefix"),  # mod 11 is right, leading digit is not 8 or 9
        ("97488813", "no-orgnr-format"),
        ("974 888 130", "no-orgnr-format"),
    ],
)
def test_orgnr_invalid(value: str, rule: str) -> None:
    assert check(K.ORGNR, value).rule == rule


def test_hpr() -> None:
    for value in ("9144889", "9144897", "9144900", "9144919"):
        assert check(K.HPR, value) is None
    assert check(K.HPR, "91448a9").rule == "no-hpr-format"
    assert check(K.HPR, "91448a9").severity == "error"
    unconfirmed = check(K.HPR, "9144888")
    assert unconfirmed.rule == "no-hpr-checksum" and unconfirmed.severity == "warning"


@pytest.mark.parametrize("kind", [K.HER, K.RESH])
def test_her_and_resh_are_positive_integers(kind: IdentifierKind) -> None:
    assert check(kind, "720") is None
    assert check(kind, "0720").rule == f"no-{kind.value}-format"
    assert check(kind, "72O").rule == f"no-{kind.value}-format"
    assert check(kind, "").rule == f"no-{kind.value}-format"


def test_ako() -> None:
    assert check(K.AKO, "1001") is None
    assert check(K.AKO, "1000").rule == "no-ako-range"
    assert check(K.AKO, "10011").rule == "no-ako-format"


def test_non_string_value() -> None:
    assert check(K.FNR, 15038512363).rule == "no-fnr-format"  # type: ignore[arg-type]


# --- systems ------------------------------------------------------------------------------------------------


def test_systems_and_aliases() -> None:
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.1"] is K.FNR
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.2"] is K.DNR
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.3"] is K.FHN
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.4"] is K.HPR
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.101"] is K.ORGNR
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.4.102"] is K.RESH
    assert SYSTEMS["urn:oid:2.16.578.1.12.4.1.2"] is K.HER
    assert kind_of_system("http://hl7.no/fhir/NamingSystem/FNR") is K.FNR
    assert kind_of_system("http://data.brreg.no/begrep/28155") is K.ORGNR
    assert kind_of_system("http://example.org/mrn") is None
    assert kind_of_system(None) is None
    assert all(target in SYSTEMS for target in ALIASES.values())
