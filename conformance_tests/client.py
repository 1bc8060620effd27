"""The HTTP client every check gets: requests with FHIR JSON headers, a bearer token, and data-tagging helpers."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from conformance_tests.registry import CheckFailed

FHIR_JSON = "application/fhir+json"
#: meta.tag system of the kit's data; the code is a fresh uuid per check.
TAG_SYSTEM = "urn:conformance-kit"
#: Identifier system of the kit's own (non-national) identifiers.
KIT_IDENTIFIER_SYSTEM = "urn:conformance-kit:identifier"


@dataclass
class Exchange:
    """One request and its response, kept for ``--verbose`` output and failure reasons."""

    method: str
    url: str
    status: int
    seconds: float


@dataclass
class Client:
    """A FHIR REST client bound to one base URL; remembers what the running check created."""

    base_url: str
    token: str | None = None
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)
    #: Absolute URLs (``Type/id``) of resources the running check created, for cleanup.
    created: list[str] = field(default_factory=list)
    log: list[Exchange] = field(default_factory=list)
    _capabilities: dict | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.session.headers.update({"Accept": FHIR_JSON})
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    # -- plain HTTP ---------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` (relative to the base) or ``path`` itself when already absolute."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}" if path.strip("/") else self.base_url

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | dict | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> requests.Response:
        """Send one request; ``json_body`` is sent as FHIR JSON. Connection errors fail the check."""
        h = dict(headers or {})
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            h.setdefault("Content-Type", FHIR_JSON)
        url = self.url(path)
        started = time.monotonic()
        try:
            r = self.session.request(method, url, data=body, headers=h, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CheckFailed(f"{method} {self.short(url)} could not be sent: {exc}") from exc
        self.log.append(Exchange(method, r.url, r.status_code, time.monotonic() - started))
        return r

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json_body=body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json_body=body, **kw)

    def patch(self, path: str, operations: list[dict], **kw: Any) -> requests.Response:
        headers = {"Content-Type": "application/json-patch+json", **kw.pop("headers", {})}
        return self.request("PATCH", path, data=json.dumps(operations), headers=headers, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    # -- describing what happened ---------------------------------------------------------------------

    def short(self, url: str) -> str:
        """``url`` relative to the base, for readable reasons."""
        if url == self.base_url or url == self.base_url + "/":
            return "[base]"
        return url[len(self.base_url) + 1 :] if url.startswith(self.base_url + "/") else url

    def describe(self, r: requests.Response, limit: int = 400) -> str:
        """``POST Patient -> 400 (application/fhir+json): {body...}`` for failure reasons."""
        text = r.text
        if len(text) > limit:
            text = text[:limit] + "…"
        ctype = r.headers.get("Content-Type", "no Content-Type")
        return f"{r.request.method} {self.short(r.url)} -> {r.status_code} ({ctype}): {text}"

    def json_of(self, r: requests.Response) -> dict:
        """The JSON object in a response body, or fail with what came back."""
        try:
            body = r.json()
        except ValueError as exc:
            raise CheckFailed(f"expected a JSON body; {self.describe(r)}") from exc
        if not isinstance(body, dict):
            raise CheckFailed(f"expected a JSON object; {self.describe(r)}")
        return body

    def expect_status(self, r: requests.Response, *statuses: int, what: str = "") -> dict | None:
        """Fail unless the status is one of ``statuses``; return the JSON body when there is one."""
        if r.status_code not in statuses:
            expected = " or ".join(str(s) for s in statuses)
            raise CheckFailed(f"{what + ': ' if what else ''}expected HTTP {expected}; {self.describe(r)}")
        if r.content and "json" in r.headers.get("Content-Type", ""):
            return self.json_of(r)
        return None

    # -- data the check owns ------------------------------------------------------------------------

    @staticmethod
    def new_tag() -> str:
        """A fresh tag code (uuid) that isolates the running check's data."""
        return str(uuid.uuid4())

    @staticmethod
    def tag_param(code: str) -> str:
        """The ``_tag`` search value selecting the data tagged with ``code``."""
        return f"{TAG_SYSTEM}|{code}"

    def track(self, location: str | None) -> None:
        """Remember a created resource (from a Location header or ``Type/id``) for cleanup."""
        if not location:
            return
        path = urlsplit(location).path if location.startswith("http") else location
        parts = [p for p in path.split("/") if p]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2:
            ref = f"{parts[-2]}/{parts[-1]}"
            if ref not in self.created:
                self.created.append(ref)

    def create(self, resource: dict, headers: dict[str, str] | None = None) -> dict:
        """POST a resource, require 201 with a body, track it, and return the stored resource."""
        r = self.post(
            resource["resourceType"], resource, headers={"Prefer": "return=representation", **(headers or {})}
        )
        body = self.expect_status(r, 201, what=f"create {resource['resourceType']}")
        self.track(r.headers.get("Location"))
        if not body or body.get("resourceType") != resource["resourceType"] or not body.get("id"):
            raise CheckFailed(
                f"create {resource['resourceType']}: expected the stored resource back; {self.describe(r)}"
            )
        self.track(f"{body['resourceType']}/{body['id']}")
        return body

    def search(self, path: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> dict:
        """GET a search, require 200 and a searchset Bundle, and return it."""
        r = self.get(path, params=params)
        body = self.expect_status(r, 200, what="search")
        if not body or body.get("resourceType") != "Bundle" or body.get("type") != "searchset":
            raise CheckFailed(f"expected a searchset Bundle; {self.describe(r)}")
        return body

    def capabilities(self) -> dict:
        """The server's CapabilityStatement (fetched once)."""
        if self._capabilities is None:
            r = self.get("metadata")
            body = self.expect_status(r, 200, what="GET metadata")
            if not body or body.get("resourceType") != "CapabilityStatement":
                raise CheckFailed(f"GET metadata did not return a CapabilityStatement; {self.describe(r)}")
            self._capabilities = body
        return self._capabilities

    def cleanup(self) -> None:
        """Delete (best effort, newest first) what the running check created, and forget it."""
        for ref in reversed(self.created):
            with contextlib.suppress(requests.RequestException):
                self.session.delete(self.url(ref), timeout=self.timeout)
        self.created.clear()
