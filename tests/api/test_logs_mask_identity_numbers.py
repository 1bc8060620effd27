"""Server logs (application and access log) never contain a national identity number in full."""

from __future__ import annotations

from tests.api.fhirhttp import Fhir, fnr
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
    log = fhir.log_text()
    assert "GET /fhir/Patient?identifier=" in log  # the access log has the search ...
    assert number[:6] + "*****" in log  # ... with the number masked
    assert number not in log
    assert bad not in log
