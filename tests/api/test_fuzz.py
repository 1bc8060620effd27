"""Fuzzing over HTTP (issue 15, finding 7): no input makes the server answer 5xx, on either database.

Hypothesis generates requests: JSON resources (valid-ish and broken: deep nesting, huge numbers,
control characters, wrong types, unicode), URLs with odd ids and search parameters, and headers
(Accept, Content-Type, Prefer, If-Match). Derandomized and bounded, so CI runs the same examples
each time in well under two minutes per database.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.fhirhttp import patient

EXAMPLES = 400
TYPES = ["Patient", "Observation", "ServiceRequest", "Task", "Bundle", "Organization", "AuditEvent", "Nope", ""]
ELEMENTS = [
    "id",
    "name",
    "given",
    "family",
    "status",
    "code",
    "value",
    "valueQuantity",
    "identifier",
    "system",
    "subject",
    "reference",
    "meta",
    "tag",
    "extension",
    "url",
    "birthDate",
    "entry",
    "resource",
    "text",
]
ODD_NUMBERS = [
    "1e999999",
    "-1E-999999",
    "1" * 400,
    "0.000000000000000000000000000001",
    "1e308",
    "-0",
    "1.0e+2",
    "123456789012345678",
    "2147483648",
    "-2147483649",
]
SEARCH_NAMES = [
    "name",
    "_id",
    "identifier",
    "birthdate",
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "_has:Task:for:status",
    "subject.name",
    "code:text",
    "_summary",
    "_elements",
    "_total",
    "_format",
    "value-quantity",
    "date",
    "_lastUpdated",
    "status:not",
    "_getpages",
    "_getpagesoffset",
    "x",
]
ACCEPTS = [
    "application/fhir+json",
    "application/fhir+xml",
    "*/*",
    "text/html",
    "application/json;fhirVersion=4.0",
    "image/png",
    "xml",
    "",
]
CONTENT_TYPES = [
    "application/fhir+json",
    "application/fhir+xml",
    "application/json-patch+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "",
]

printable = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20)
text = (
    printable | st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(["", " ", "\x00", "\ud800", "ø"])
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=30).map(
    str.lstrip
)


def raw_json(depth: int = 0) -> st.SearchStrategy[str]:
    """JSON text of any value, with literals json.dumps would never write (huge numbers, raw escapes)."""
    atoms = st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(ODD_NUMBERS),
        text.map(lambda s: json.dumps(s)),
        st.sampled_from(['"\\u0000"', '"\\ud800"', '"a\\u001fb"', "true", "null", '"\\uffff"']),
    )
    if depth > 3:
        return atoms
    inner = st.deferred(lambda: raw_json(depth + 1))
    keys = st.sampled_from(ELEMENTS) | text
    return st.one_of(
        atoms,
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(keys, inner, max_size=5).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
        ),
    )


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["resource", "mutated", "deep", "raw", "xml"]))
    rtype = draw(st.sampled_from(TYPES))
    if kind == "resource":  # a resource of the right shape with odd members
        members = draw(st.dictionaries(st.sampled_from(ELEMENTS), raw_json(1), max_size=5))
        inner = ",".join(f'"{k}":{v}' for k, v in members.items())
        return ('{"resourceType":' + json.dumps(rtype) + ("," + inner if inner else "") + "}").encode()
    if kind == "mutated":  # a valid Patient with one element replaced
        resource = patient("fuzz")
        key = draw(st.sampled_from(list(resource)))
        text_form = json.dumps({k: v for k, v in resource.items() if k != key})
        return (text_form[:-1] + f',"{key}":' + draw(raw_json(2)) + "}").encode()
    if kind == "deep":
        depth = draw(st.integers(50, 3000))
        return ('{"resourceType":"Patient","extension":' + "[" * depth + "]" * depth + "}").encode()
    if kind == "xml":
        value = draw(st.sampled_from(ODD_NUMBERS) | header_text)
        return (
            f'<{rtype or "Patient"} xmlns="http://hl7.org/fhir"><status value="{value}"/>'
            f'<valueQuantity><value value="{value}"/></valueQuantity></{rtype or "Patient"}>'
        ).encode()
    return draw(raw_json()).encode("utf-8", errors="surrogatepass")


@st.composite
def paths(draw: st.DrawFn) -> str:
    rtype = draw(st.sampled_from(TYPES))
    odd_id = draw(st.sampled_from(["%00", "..", "a" * 65, "%2F", "x%0Ay", "%FF", "1", "$validate", "_history"]) | text)
    shape = draw(st.sampled_from(["type", "instance", "history", "vread", "operation", "system"]))
    segment = quote(odd_id, safe="%$", errors="surrogatepass") if odd_id else "x"
    if shape == "type":
        path = rtype
    elif shape == "instance":
        path = f"{rtype}/{segment}"
    elif shape == "history":
        path = f"{rtype}/{segment}/_history"
    elif shape == "vread":
        path = f"{rtype}/{segment}/_history/{quote(draw(text), safe='', errors='surrogatepass')}"
    elif shape == "operation":
        path = f"{rtype}/$" + draw(st.sampled_from(["validate", "expand", "lookup", "everything", "nope"]))
    else:
        path = ""
    params = draw(
        st.lists(st.tuples(st.sampled_from(SEARCH_NAMES) | text, text | st.sampled_from(ODD_NUMBERS)), max_size=6)
    )
    query = "&".join(
        f"{quote(k, safe=':.', errors='surrogatepass')}={quote(v, safe=',|', errors='surrogatepass')}"
        for k, v in params
    )
    return path + ("?" + query if query else "")


accepts = st.sampled_from(["application/fhir+json", "application/fhir+xml"]) | st.sampled_from(ACCEPTS) | header_text
prefers = st.sampled_from(["return=representation", "return=OperationOutcome", "handling=strict", ""]) | header_text
if_matches = st.sampled_from(['W/"1"', '"abc"', "", 'W/"99999999999999999999"']) | header_text


@st.composite
def plausible_patient(draw: st.DrawFn) -> bytes:
    """A Patient that may well be stored (201): odd text and numbers in places that take them."""
    resource = patient("fuzz")
    resource["name"] = [{"family": draw(printable | text), "given": draw(st.lists(printable, max_size=3))}]
    body = json.dumps(resource)
    if draw(st.booleans()):
        number = draw(st.sampled_from(ODD_NUMBERS) | st.integers().map(str))
        body = body[:-1] + ',"multipleBirthInteger":' + number + "}"
    return body.encode()


def family(method: str, path: st.SearchStrategy[str], body: st.SearchStrategy[bytes | None], content_type=None):  # type: ignore[no-untyped-def]
    return st.fixed_dictionaries(
        {
            "method": st.just(method),
            "path": path,
            "body": body,
            "accept": accepts,
            "content_type": content_type or st.just("application/fhir+json"),
            "prefer": prefers,
            "if_match": if_matches,
        }
    )


searches = st.builds(
    lambda rtype, params: (
        rtype + "?" + "&".join(f"{k}={quote(v, safe=',|:', errors='surrogatepass')}" for k, v in params)
    ),
    st.sampled_from(["Patient", "Observation", "Task", "AuditEvent"]),
    st.lists(st.tuples(st.sampled_from(SEARCH_NAMES), text | st.sampled_from(ODD_NUMBERS)), min_size=1, max_size=4),
)
requests_ = st.one_of(
    family("POST", st.just("Patient"), plausible_patient()),
    family("POST", st.sampled_from(["Patient", "Observation", "Bundle", ""]), bodies()),
    family("GET", searches, st.none()),
    family("GET", paths(), st.none()),
    family("PUT", paths(), st.none() | bodies() | plausible_patient()),
    st.fixed_dictionaries(
        {
            "method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
            "path": paths(),
            "body": st.none() | bodies(),
            "accept": accepts,
            "content_type": st.sampled_from(CONTENT_TYPES) | header_text,
            "prefer": prefers,
            "if_match": if_matches,
        }
    ),
)


def test_no_input_makes_the_server_fail(fhir):
    session = requests.Session()
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests_)
    def one(req: dict) -> None:
        headers = {**fhir.auth, "Accept": req["accept"], "Prefer": req["prefer"]}
        if req["if_match"]:
            headers["If-Match"] = req["if_match"]
        if req["body"] is not None:
            headers["Content-Type"] = req["content_type"]
        response = session.request(
            req["method"], f"{fhir.base}/{req['path']}", data=req["body"], headers=headers, timeout=60
        )
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {req!r}: {response.text[:300]}")

    one()
    assert failures == [], "\n".join(failures[:20])
    assert session.get(f"{fhir.base}/metadata", timeout=30).status_code == 200
