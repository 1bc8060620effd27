"""The fast FHIRPath subset agrees with fhirpathpy on the expressions it accepts, and declines the rest."""

from __future__ import annotations

import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhir_server.core.validation.profile.fhirpath import compile_fast

PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15038512363"},
        {"system": "http://local", "value": "7"},
    ],
    "name": [{"family": "Nordmann", "given": ["Kari", "Anne"]}],
    "gender": "female",
    "address": [
        {
            "city": "Bergen",
            "district": "Bergen",
            "_district": {"extension": [{"url": "http://e/k", "valueCode": "4601"}]},
        }
    ],
    "deceasedBoolean": False,
}

AGREE = [
    "identifier.where(system='urn:oid:2.16.578.1.12.4.1.4.1' or system='urn:oid:2.16.578.1.12.4.1.4.2').exists()",
    "identifier.where(system='x').exists()",
    "identifier.exists(system = 'http://local')",
    "identifier.all(value.exists())",
    "identifier.count() = 2",
    "name.given.count() = 2 and gender = 'female'",
    "gender != 'male'",
    "gender in ('female' | 'other')",
    "('a' | 'b') contains 'b'",
    "birthDate.empty() implies gender.exists()",
    "deceased = false",
    "deceased.exists() xor true",
    "name.first().family = 'Nordmann'",
    "Patient.name.family.exists()",
    "address.where(district.extension('http://e/k').exists()).exists()",
    "photo.exists().not()",
    "(gender = 'male') or (gender = 'female')",
]


@pytest.mark.parametrize("expression", AGREE)
def test_agrees_with_fhirpathpy(expression):
    fast = compile_fast(expression)
    assert fast is not None, expression
    assert fast(PATIENT) == evaluate(PATIENT, expression, model=models["r4"])


@pytest.mark.parametrize("expression", ["%resource.id", "birthDate < today()", "name.select(family)", "a.b[0]"])
def test_declines_what_it_does_not_implement(expression):
    assert compile_fast(expression) is None
