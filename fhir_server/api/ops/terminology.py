"""Terminology operations over HTTP: CodeSystem/$lookup, ValueSet/$expand and $validate-code, ConceptMap/$translate."""

from __future__ import annotations

from flask import Response

from fhir_server.api.ops.common import read_resource, resource_response
from fhir_server.api.ops.registry import BASE_DEFINITION, OperationCall, operation
from fhir_server.api.rest import server
from fhir_server.core import terminology
from fhir_server.core.indexing.values import now_instant
from fhir_server.core.issues import FhirError
from fhir_server.security.policy import Need


def _required(call: OperationCall, name: str) -> str:
    value = call.first(name)
    if isinstance(value, dict):  # a Coding parameter
        value = value.get("code")
    if not isinstance(value, str) or not value:
        raise FhirError.single(400, "required", f"the parameter '{name}' is required", name)
    return value


def _coding(call: OperationCall) -> tuple[str | None, str]:
    coding = call.first("coding")
    if isinstance(coding, dict):
        return coding.get("system"), _required_value(coding.get("code"), "coding.code")
    return call.text("system"), _required(call, "code")


def _required_value(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise FhirError.single(400, "required", f"the parameter '{name}' is required", name)
    return value


def _value_set(call: OperationCall) -> dict:
    if call.resource_id:
        return read_resource(f"ValueSet/{call.resource_id}", "ValueSet")
    inline = call.first("valueSet")
    if isinstance(inline, dict):
        return inline
    url = _required(call, "url")
    found = server().terminology.value_set(url)
    if found is None:
        if url.startswith("urn:oid:"):
            return {
                "resourceType": "ValueSet",
                "url": url,
                "status": "active",
                "compose": {"include": [{"system": url}]},
            }
        raise FhirError.single(404, "not-found", f"the value set {url} is not known here", "url")
    return found


def _int(call: OperationCall, name: str) -> int | None:
    value = call.first(name)
    if value is None:
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise FhirError.single(400, "value", f"'{name}' must be a whole number", name) from exc
    if number < 0:
        raise FhirError.single(400, "value", f"'{name}' must not be negative", name)
    return number


@operation(
    "lookup",
    BASE_DEFINITION + "CodeSystem-lookup",
    ("CodeSystem",),
    ("type", "instance"),
    requires=(Need("CodeSystem", "r"),),
)
def lookup(call: OperationCall) -> Response:
    if call.resource_id:
        system = read_resource(f"CodeSystem/{call.resource_id}", "CodeSystem").get("url", "")
        code = _required(call, "code")
    else:
        found_system, code = _coding(call)
        system = _required_value(found_system, "system")
    return resource_response(terminology.lookup(server().terminology, system, code))


@operation(
    "expand",
    BASE_DEFINITION + "ValueSet-expand",
    ("ValueSet",),
    ("type", "instance"),
    requires=(Need("ValueSet", "r"),),
)
def expand(call: OperationCall) -> Response:
    value_set = _value_set(call)
    result = terminology.expand(
        server().terminology,
        value_set,
        text_filter=call.text("filter"),
        count=_int(call, "count"),
        offset=_int(call, "offset") or 0,
        timestamp=now_instant(),
    )
    return resource_response(result)


@operation(
    "validate-code",
    BASE_DEFINITION + "ValueSet-validate-code",
    ("ValueSet",),
    ("type", "instance"),
    requires=(Need("ValueSet", "r"),),
)
def validate_code(call: OperationCall) -> Response:
    value_set = _value_set(call)
    concept = call.first("codeableConcept")
    if isinstance(concept, dict):
        for coding in concept.get("coding", []):
            verdict = terminology.validate_code(
                server().terminology, value_set, coding.get("system"), coding.get("code", ""), coding.get("display")
            )
            if verdict["parameter"][0]["valueBoolean"]:
                return resource_response(verdict)
        return resource_response(
            verdict if concept.get("coding") else terminology.validate_code(server().terminology, value_set, None, "")
        )
    system, code = _coding(call)
    return resource_response(
        terminology.validate_code(server().terminology, value_set, system, code, call.text("display"))
    )


@operation(
    "translate",
    BASE_DEFINITION + "ConceptMap-translate",
    ("ConceptMap",),
    ("type", "instance"),
    requires=(Need("ConceptMap", "r"),),
)
def translate(call: OperationCall) -> Response:
    if call.resource_id:
        maps = [read_resource(f"ConceptMap/{call.resource_id}", "ConceptMap")]
    else:
        url = call.text("url")
        maps = [m for m in server().terminology.concept_maps() if not url or m.get("url") == url]
    system, code = _coding(call)
    return resource_response(
        terminology.translate(
            maps, _required_value(system, "system"), code, call.text("targetsystem") or call.text("targetSystem")
        )
    )
