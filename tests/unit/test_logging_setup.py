"""The identity-number mask sees through encodings (issue 15)."""

from __future__ import annotations

import pytest

from fhir_server.logging_setup import mask_numbers

NUMBER = "03028112345"


@pytest.mark.parametrize(
    "text",
    [
        NUMBER,
        f"identifier=x|{NUMBER[:7]}%3{NUMBER[7]}{NUMBER[8:]}",
        f"identifier=x|%3{NUMBER[0]}%3{NUMBER[1]}{NUMBER[2:]}",
        f"{NUMBER[:3]}%253{NUMBER[3]}{NUMBER[4:]}",  # encoded twice
        f"{NUMBER[:6]}+{NUMBER[6:]}",
        f"{NUMBER[:6]} {NUMBER[6:]}",
        f"{NUMBER[:6]}%20{NUMBER[6:]}",
        f'"value": "{NUMBER[:4]}\\u003{NUMBER[4]}{NUMBER[5:]}"',
        "".join(chr(0xFF10 + int(d)) for d in NUMBER),  # fullwidth digits
    ],
)
def test_masked_whatever_the_encoding(text):
    masked = mask_numbers(text)
    assert "*****" in masked
    assert NUMBER not in masked and text not in masked


def test_other_text_is_left_as_it_is():
    for text in ("GET /fhir/Patient?name=a%20b+c", "orgnr 983658725", "2026-12-03 06:52:44,123"):
        assert mask_numbers(text) == text
