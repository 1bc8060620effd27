"""A deliberately broken FHIR server, to prove the kit catches what it claims to catch.

It is a small Flask proxy in front of a correct server (``upstream``) that breaks chosen rules:

* ``weak-etag``: sends ``ETag: "1"`` instead of the weak ``W/"1"``;
* ``ignore-if-match``: drops the ``If-Match`` header, so a stale update succeeds (200 instead of 412);
* ``drop-page-entry``: leaves the last entry out of every searchset page that has a ``next`` link;
* ``accept-all-validate``: declares ``$validate`` in its CapabilityStatement and answers every ``$validate``
  with "all OK", whatever the resource (a validator that catches nothing);
* ``misroute-referrals``: every Task it returns names Helse Nord RHF as owner where upstream said Helse Vest.

Not a fault: ``referral-door`` is a stub of the referral door the ``referral.flow`` check needs, for an upstream
that does not route yet: it declares the routing Task profile on Task and, after a referral transaction, creates
the routing Task (focus the ServiceRequest, owner Helse Vest RHF, status requested) unless upstream made one.

Run it in a thread with :func:`running`, or from a shell::

    python -m conformance_tests.testing.broken_server --upstream http://127.0.0.1:8080/fhir --fault weak-etag
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

FAULTS = ("weak-etag", "ignore-if-match", "drop-page-entry", "accept-all-validate", "misroute-referrals")
#: Behaviours that are not faults.
EXTRAS = ("referral-door",)
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
HELSE_VEST_ORGNR = "983658725"
ROUTING_TASK_PROFILE = "https://fhir.referral-hub.no/StructureDefinition/hub-routing-task"
REFERRAL_CATEGORY = ("http://snomed.info/sct", "3457005")
VALIDATE_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
ALL_OK = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "information", "code": "informational", "diagnostics": "All OK"}],
}
#: Hop-by-hop and length headers the proxy must not copy.
SKIPPED_HEADERS = {"host", "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(upstream: str, faults: Iterable[str]) -> Flask:
    """A Flask app serving ``/fhir`` by forwarding to ``upstream`` with ``faults`` applied."""
    faults = set(faults)
    unknown = faults - set(FAULTS) - set(EXTRAS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS + EXTRAS}")
    door = "referral-door" in faults
    upstream = upstream.rstrip("/")
    app = Flask(__name__)
    session = requests.Session()

    @app.route("/fhir", defaults={"path": ""}, methods=METHODS, strict_slashes=False)
    @app.route("/fhir/<path:path>", methods=METHODS)
    def forward(path: str) -> Response:
        own_base = request.host_url.rstrip("/") + "/fhir"
        if "accept-all-validate" in faults and path.endswith("$validate"):
            return Response(json.dumps(ALL_OK), status=200, content_type="application/fhir+json")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIPPED_HEADERS}
        if "ignore-if-match" in faults:
            headers.pop("If-Match", None)
        url = f"{upstream}/{path}" if path else upstream
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        up = session.request(
            request.method, url, data=request.get_data(), headers=headers, timeout=60, allow_redirects=False
        )
        if door and not path and request.method == "POST" and up.status_code == 200:
            _route_referrals(session, upstream, request.get_data(), up.content, request.headers.get("Authorization"))
        body = up.content.replace(upstream.encode(), own_base.encode())
        if "drop-page-entry" in faults and "json" in up.headers.get("Content-Type", ""):
            body = _drop_page_entry(body)
        if "accept-all-validate" in faults and path == "metadata" and up.status_code == 200:
            body = _declare_operation(body, "validate", VALIDATE_DEFINITION)
        if door and path == "metadata" and up.status_code == 200:
            body = _declare_routing(body)
        if "misroute-referrals" in faults and path.startswith("Task"):
            body = body.replace(b'"Organization/rhf-helse-vest"', b'"Organization/rhf-helse-nord"')
        out = Response(body, status=up.status_code)
        for key, value in up.headers.items():
            if key.lower() in SKIPPED_HEADERS:
                continue
            value = value.replace(upstream, own_base)
            if key.lower() == "etag" and "weak-etag" in faults:
                value = value.removeprefix("W/")
            out.headers[key] = value
        return out

    return app


def _drop_page_entry(body: bytes) -> bytes:
    try:
        bundle = json.loads(body)
    except ValueError:
        return body
    if not (isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle" and bundle.get("type") == "searchset"):
        return body
    has_next = any(link.get("relation") == "next" for link in bundle.get("link", []))
    if has_next and len(bundle.get("entry", [])) >= 2:
        bundle["entry"] = bundle["entry"][:-1]
        return json.dumps(bundle).encode()
    return body


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the kit reports what matters)."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def _declare_operation(body: bytes, name: str, definition: str) -> bytes:
    """``body`` (a CapabilityStatement) with a system-level operation added."""
    caps = json.loads(body)
    for rest in caps.get("rest", []):
        rest.setdefault("operation", []).append({"name": name, "definition": definition})
    return json.dumps(caps).encode()


def _declare_routing(body: bytes) -> bytes:
    caps = json.loads(body)
    for rest in caps.get("rest", []):
        for resource in rest.get("resource", []):
            profiles = resource.setdefault("supportedProfile", []) if resource.get("type") == "Task" else None
            if profiles is not None and ROUTING_TASK_PROFILE not in profiles:
                profiles.append(ROUTING_TASK_PROFILE)
    return json.dumps(caps).encode()


def _route_referrals(
    session: requests.Session, upstream: str, sent: bytes, response: bytes, authorization: str | None
) -> None:
    """The stub door: for each referral the transaction created, a routing Task to Helse Vest unless one exists."""
    try:
        entries = json.loads(sent).get("entry", [])
        results = json.loads(response).get("entry", [])
    except (ValueError, AttributeError):
        return
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if authorization:  # the client's own token, as the real door would act for it
        headers["Authorization"] = authorization
    for entry, result in zip(entries, results, strict=False):
        resource = entry.get("resource") or {}
        codings = [c for cat in resource.get("category", []) for c in cat.get("coding", [])]
        if resource.get("resourceType") != "ServiceRequest" or not any(
            (c.get("system"), c.get("code")) == REFERRAL_CATEGORY for c in codings
        ):
            continue
        location = (result.get("response") or {}).get("location", "")
        referral = "ServiceRequest/" + location.split("ServiceRequest/")[-1].split("/")[0]
        existing = session.get(f"{upstream}/Task", params={"focus": referral}, headers=headers, timeout=60).json()
        if existing.get("entry"):
            continue
        orgs = session.get(
            f"{upstream}/Organization", params={"identifier": f"{ORGNR_SYSTEM}|{HELSE_VEST_ORGNR}"}, headers=headers
        ).json()
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": referral},
            "owner": {"reference": f"Organization/{orgs['entry'][0]['resource']['id']}"},
        }
        session.post(f"{upstream}/Task", data=json.dumps(task), headers=headers, timeout=60).raise_for_status()


@dataclass
class BrokenServer:
    """A running broken server: its FHIR base URL and the WSGI server to stop."""

    base: str
    server: BaseWSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def start(upstream: str, faults: Iterable[str], port: int = 0) -> BrokenServer:
    """Start the broken server on loopback (a free port when ``port`` is 0) in a daemon thread."""
    server = make_server("127.0.0.1", port, create_app(upstream, faults), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="broken-fhir-server", daemon=True)
    thread.start()
    return BrokenServer(f"http://127.0.0.1:{server.server_port}/fhir", server, thread)


@contextmanager
def running(upstream: str, faults: Iterable[str]) -> Iterator[BrokenServer]:
    """``with running(upstream, {"weak-etag"}) as broken: run(broken.base)``."""
    broken = start(upstream, faults)
    try:
        yield broken
    finally:
        broken.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a deliberately broken FHIR server (a faulty proxy)")
    parser.add_argument("--upstream", required=True, help="base URL of a correct FHIR server")
    parser.add_argument(
        "--fault", action="append", choices=FAULTS + EXTRAS, default=[], help="a rule to break; repeatable"
    )
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    broken = start(args.upstream, args.fault, args.port)
    print(f"broken FHIR server ({', '.join(args.fault) or 'no faults'}) at {broken.base}", flush=True)
    try:
        broken.thread.join()
    except KeyboardInterrupt:
        broken.stop()


if __name__ == "__main__":
    main()
