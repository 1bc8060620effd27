"""Content negotiation: FHIR JSON (default) and FHIR XML in and out, ``_format``, ``_pretty``, ``Prefer``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import Request, Response

from fhir_server.core import jsonio
from fhir_server.core.issues import FhirError
from fhir_server.core.limits import number_problem
from fhir_server.core.text import clean_json

JSON = "application/fhir+json"
XML = "application/fhir+xml"
JSON_PATCH = "application/json-patch+json"

_FORMAT_ALIASES = {
    "json": JSON,
    "application/json": JSON,
    "application/fhir+json": JSON,
    "text/json": JSON,
    "xml": XML,
    "application/xml": XML,
    "application/fhir+xml": XML,
    "text/xml": XML,
    "html": JSON,
    "text/html": JSON,
}


@dataclass(frozen=True)
class Negotiated:
    mimetype: str
    pretty: bool


_ACCEPT_CACHE: dict[str, str] = {}


def negotiate(request: Request) -> Negotiated:
    """The response format from ``_format`` or the Accept header; 406 if none can be served."""
    args = request.args
    if not args:
        accept = request.headers.get("Accept", "")
        cached = _ACCEPT_CACHE.get(accept)
        if cached is None:
            cached = _negotiate_accept(request, accept)
            if len(_ACCEPT_CACHE) < 256:
                _ACCEPT_CACHE[accept] = cached
        return Negotiated(cached, False)
    pretty = args.get("_pretty") == "true"
    fmt = args.get("_format")
    if fmt:
        # a "+" in a query string arrives as a space: application/fhir xml
        mime = _FORMAT_ALIASES.get(fmt.split(";")[0].strip().lower().replace(" ", "+"))
        if mime is None:
            raise FhirError.single(406, "not-supported", f"_format '{fmt}' cannot be served; use json or xml")
        return Negotiated(mime, pretty)
    return Negotiated(_negotiate_accept(request, request.headers.get("Accept", "")), pretty)


def _negotiate_accept(request: Request, accept: str) -> str:
    if not accept.strip():
        return JSON
    best = request.accept_mimetypes.best_match([JSON, "application/json", XML, "application/xml", "text/xml"])
    if best is None:
        # FHIR clients sometimes send versioned types: application/fhir+json; fhirVersion=4.0
        for item in accept.split(","):
            base = item.split(";")[0].strip().lower()
            if base in _FORMAT_ALIASES:
                return _FORMAT_ALIASES[base]
        raise FhirError.single(
            406, "not-supported", f"cannot answer in '{accept}'; this server speaks {JSON} and {XML}"
        )
    return _FORMAT_ALIASES.get(best, JSON)


def request_format(request: Request) -> str | None:
    """The body's format from Content-Type: JSON, XML, JSON Patch; 415 for anything else."""
    content_type = (request.mimetype or "").lower()
    if not content_type:
        return JSON
    if content_type in ("application/fhir+json", "application/json", "text/json"):
        return JSON
    if content_type in ("application/fhir+xml", "application/xml", "text/xml"):
        return XML
    if content_type == JSON_PATCH:
        return JSON_PATCH
    raise FhirError.single(
        415,
        "not-supported",
        f"cannot read a body of type '{request.mimetype}'; send {JSON} or {XML}",
    )


def parse_body(request: Request, max_bytes: int) -> object:
    """Parse the request body (JSON or XML) into a FHIR JSON value."""
    fmt = request_format(request)
    length = request.content_length
    if length is not None and length > max_bytes:
        raise FhirError.single(413, "too-costly", f"the body is {length} bytes; the limit is {max_bytes}")
    data = request.get_data(cache=True)
    if len(data) > max_bytes:
        raise FhirError.single(413, "too-costly", f"the body is larger than the limit of {max_bytes} bytes")
    if not data.strip():
        raise FhirError.single(400, "structure", "the request has no body")
    if fmt == XML:
        return xml_to_json(data)
    try:
        return jsonio.loads(data)
    except jsonio.JsonError as exc:
        raise FhirError.single(400, "structure", str(exc), exc.element) from exc


def xml_to_json(data: bytes) -> dict:
    """FHIR XML → FHIR JSON via the fhir.resources R4B models."""
    from lxml import etree

    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FhirError.single(400, "structure", f"malformed XML: {exc}") from exc
    tag = etree.QName(root).localname
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(tag)
    except KeyError as exc:
        raise FhirError.single(400, "not-supported", f"'{tag}' is not a FHIR resource type") from exc
    try:
        parsed = model.model_validate_xml(data)
    except Exception as exc:
        message = str(exc).split("\n")[0][:300]
        raise FhirError.single(400, "structure", f"the XML is not a valid {tag}: {message}") from exc
    _check_numbers(parsed, tag)  # before writing the model out: 1e999999 would take a minute
    try:
        converted = _exact_decimals(parsed, jsonio.loads(parsed.model_dump_json()))
        assert isinstance(converted, dict)
        return converted
    except Exception as exc:
        message = str(exc).split("\n")[0][:300]
        raise FhirError.single(400, "structure", f"the XML is not a valid {tag}: {message}") from exc


def _check_numbers(model: object, path: str) -> None:
    """400 naming the first decimal of a parsed XML model beyond an R4 decimal's bounds."""
    from pydantic import BaseModel

    if isinstance(model, Decimal):
        problem = number_problem(str(model))
        if problem:
            raise FhirError.single(400, "structure", f"{path}: {problem}", path)
    elif isinstance(model, list):
        for i, item in enumerate(model):
            _check_numbers(item, f"{path}[{i}]")
    elif isinstance(model, BaseModel):
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if value is not None:
                _check_numbers(value, f"{path}.{info.alias or name}")


def _exact_decimals(model: object, dumped: object) -> object:
    """``dumped`` (the model's JSON) with each decimal put back as the model's exact literal.

    fhir.resources parses ``72.50`` into ``Decimal('72.50')`` but writes it out as a float.
    """
    from pydantic import BaseModel

    if isinstance(model, Decimal):
        return model
    if isinstance(model, list) and isinstance(dumped, list):
        return [_exact_decimals(m, d) for m, d in zip(model, dumped, strict=False)]
    if isinstance(model, BaseModel) and isinstance(dumped, dict):
        for name, info in type(model).model_fields.items():
            key = info.alias or name
            if key in dumped:
                dumped[key] = _exact_decimals(getattr(model, name), dumped[key])
    return dumped


def json_to_xml(resource: dict) -> bytes:
    """FHIR JSON → FHIR XML via the fhir.resources R4B models, each number written as its exact literal."""
    from fhir.resources.R4B import get_fhir_model_class
    from lxml import etree

    model = get_fhir_model_class(resource["resourceType"])
    resource = clean_json(resource)  # type: ignore[assignment]  # text stored before control characters were refused
    data = model.model_validate(jsonio.to_plain(resource)).model_dump_xml()
    numbers = list(_numbers_in_xml(resource, None))
    if not numbers:
        return data if isinstance(data, bytes) else data.encode()
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    for path, literal in numbers:
        element = _element_at(root, path)
        if element is not None:
            element.set("value", literal)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


_NS = "{http://hl7.org/fhir}"


def _numbers_in_xml(node: object, path: tuple | None) -> Iterator[tuple[tuple, str]]:
    """Each number in FHIR JSON (a Decimal, or an int: ``100`` may be a decimal too) with its literal and
    the XML path to its element: (element name, index) steps, None for a resource's own element
    (``contained``, ``entry.resource``); every JSON property is an XML element."""
    if isinstance(node, Decimal | int) and not isinstance(node, bool):
        yield path or (), str(node)
    elif isinstance(node, dict):
        here = (*(path or ()), None) if "resourceType" in node and path is not None else path or ()
        for key, value in node.items():
            name = key[1:] if key.startswith("_") else key  # a primitive's id and extensions sit in its element
            for i, item in enumerate(value) if isinstance(value, list) else ((0, value),):
                yield from _numbers_in_xml(item, (*here, (name, i)))


def _element_at(root: Any, path: tuple) -> Any:
    """The element a :func:`_numbers_in_xml` path names, or None where the XML has no such element."""
    element = root
    for step in path:
        found = [element.find("*")] if step is None else element.findall(_NS + step[0])
        index = 0 if step is None else step[1]
        if index >= len(found) or found[index] is None:
            return None
        element = found[index]
    return element


#: Sent with every response (also added to non-FHIR responses by the application factory).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_JSON_CONTENT_TYPE = f"{JSON};charset=utf-8"
_XML_CONTENT_TYPE = f"{XML};charset=utf-8"


def fhir_response(
    body: bytes | dict | None,
    status: int,
    negotiated: Negotiated,
    headers: dict[str, str] | None = None,
) -> Response:
    """A response in the negotiated format; ``body`` may be stored JSON bytes or a dict."""
    header_list = list(SECURITY_HEADERS)
    if headers:
        header_list.extend(headers.items())
    if body is None:
        return Response(status=status, headers=header_list)
    if negotiated.mimetype == XML:
        resource = body if isinstance(body, dict) else jsonio.loads(body)
        data = json_to_xml(resource)
        header_list.append(("Content-Type", _XML_CONTENT_TYPE))
    else:
        if isinstance(body, dict):
            data = jsonio.dumps(body, pretty=negotiated.pretty)
        elif negotiated.pretty:
            data = jsonio.dumps(jsonio.loads(body), pretty=True)
        else:
            data = body
        header_list.append(("Content-Type", _JSON_CONTENT_TYPE))
    return Response(data, status=status, headers=header_list)
