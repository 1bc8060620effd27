"""Inbound referral mapping: Henvisning XML, the JSON referral form and FHIR alias normalisation.

Pure Python (no Flask, no database). Each door returns a :class:`MappedReferral` whose ``bundle`` is a FHIR R4
transaction Bundle and whose ``issues`` say what was wrong or rewritten, located in the input.
"""

from fhir_server.domain.referral.mapping.model import MappedReferral

__all__ = ["MappedReferral", "form_to_bundle", "normalise_referral", "parse_henvisning"]


def __getattr__(name: str):  # lazy: importing the package does not load lxml or marshmallow
    if name == "parse_henvisning":
        from fhir_server.domain.referral.mapping.henvisning_xml import parse_henvisning

        return parse_henvisning
    if name == "form_to_bundle":
        from fhir_server.domain.referral.mapping.json_form import form_to_bundle

        return form_to_bundle
    if name == "normalise_referral":
        from fhir_server.domain.referral.mapping.fhir_aliases import normalise_referral

        return normalise_referral
    raise AttributeError(name)
