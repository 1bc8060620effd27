"""Server logs (application and access log) never contain a national identity number in full."""

from __future__ import annotations

from tests.api.fhirhttp import Fhir, fnr, wait_for
from tests.api.test_referral_intake import referral


def test_logs_of_a_referral_flow_carry_no_identity_number(fhir, unique):
    api = Fhir(fhir)
    bundle = referral(unique)
    number = bundle["entry"][0]["resource"]["identifier"][0]["value"]
    assert api.post("", bundle).status_code == 200
    # searches with the number in the URL land in the access log
    api.get(f"Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|{number}")
    bad = fnr("1970-01-01", unique)[:-1] + "0"  # a mistyped number, refused: the refusal is logged too
    api.post(
        "Patient/$validate",
        {"resourceType": "Patient", "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": bad}]},
    )
    # gunicorn writes a request's access log line after its response: wait for the last one
    log = wait_for(lambda: "Patient/$validate" in (text := fhir.log_text()) and text, 10) or fhir.log_text()
    assert "GET /fhir/Patient?identifier=" in log  # the access log has the search ...
    assert number[:6] + "*****" in log  # ... with the number masked
    assert number not in log
    assert bad not in log


def test_an_encoded_identity_number_is_masked_too(fhir, unique):
    """Issue 15: one digit percent-encoded (``%3X``, also twice), ``+`` between the parts: still masked."""
    api = Fhir(fhir)
    number = fnr("1981-02-03", unique)
    digit = number[7]
    variants = {
        "one digit": f"{number[:7]}%3{digit}{number[8:]}",
        "lowercase, twice": f"{number[:2]}%253{number[2]}{number[3:]}",
        "plus": f"{number[:6]}+{number[6:]}",
        "space": f"{number[:6]}%20{number[6:]}",
    }
    for variant in variants.values():
        assert api.get(f"Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|{variant}").status_code == 200
    # gunicorn writes a request's access log line after its response: wait for the last one
    log = wait_for(lambda: (text := fhir.log_text()).count(number[:6] + "*****") >= len(variants) and text, 10)
    assert log, fhir.log_text()[-2000:]
    assert number not in log
    for name, variant in variants.items():
        assert variant not in log, name
