"""mask_identity_numbers: personal numbers never reach a log line in full."""

from __future__ import annotations

from fhir_server.core.validation.identifiers import identity_number_in, mask_identity_numbers, mask_value


def test_fnr_in_a_log_line_is_masked() -> None:
    line = "POST /Patient rejected: fnr=15038512363, D-nr 49079023425; FH 93915000868."
    masked = mask_identity_numbers(line)
    assert masked == "POST /Patient rejected: fnr=150385*****, D-nr 490790*****; FH 939150*****."
    assert not identity_number_in(masked)
    assert identity_number_in(line)


def test_spaced_form_is_masked() -> None:
    assert mask_identity_numbers("pasient 150385 12363 mottatt") == "pasient 150385***** mottatt"


def test_failing_check_digits_are_masked_too() -> None:
    # documented choice: a mistyped fødselsnummer still points to a person
    assert mask_identity_numbers("id 15038512364") == "id 150385*****"
    assert not identity_number_in("id 15038512364")


def test_other_digit_runs_are_left_alone() -> None:
    line = "orgnr 974888130, HPR 9144889, count 1234567890123, ts 2026-11-22T22:00:00Z"
    assert mask_identity_numbers(line) == line


def test_mask_value() -> None:
    assert mask_value("15038512363") == "150385*****"
    assert mask_value("1503851") == "*****"
