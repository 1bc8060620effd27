"""A thin HTTP helper for the API tests (plain requests, FHIR JSON headers)."""

from __future__ import annotations

import time
from typing import Any

import requests

JSON = "application/fhir+json"


class Fhir:
    """Requests to a server under test, as its administrator unless another token is given."""

    def __init__(self, server: Any, token: str | None = None) -> None:
        self.base = server.base
        self.session = requests.Session()
        self.session.headers.update({"Accept": JSON})
        self.session.headers.update({"Authorization": f"Bearer {token}"} if token else server.auth)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=30, **kw)

    def post(self, path: str, body: Any = None, headers: dict | None = None, **kw: Any) -> requests.Response:
        h = {"Content-Type": JSON, **(headers or {})}
        return self.session.post(self.url(path), json=body, headers=h, timeout=60, **kw)

    def put(self, path: str, body: Any, headers: dict | None = None) -> requests.Response:
        return self.session.put(
            self.url(path), json=body, headers={"Content-Type": JSON, **(headers or {})}, timeout=60
        )

    def patch(self, path: str, ops: Any, headers: dict | None = None) -> requests.Response:
        h = {"Content-Type": "application/json-patch+json", **(headers or {})}
        return self.session.patch(self.url(path), json=ops, headers=h, timeout=60)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.session.delete(self.url(path), timeout=30, **kw)

    def create(self, resource: dict) -> dict:
        r = self.post(resource["resourceType"], resource)
        assert r.status_code == 201, r.text
        return r.json()

    def search(self, path: str, **kw: Any) -> dict:
        r = self.get(path, **kw)
        assert r.status_code == 200, r.text
        return r.json()


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == mode]


def patient(tag: str, family: str = "Nordmann", **extra: Any) -> dict:
    resource = {
        "resourceType": "Patient",
        "meta": {"tag": [{"system": "urn:test", "code": tag}]},
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "15038512363"}],
        "name": [{"family": family, "given": ["Ola"]}],
        "gender": "male",
        "birthDate": "1985-03-15",
    }
    resource.update(extra)
    return resource


def wait_for(predicate, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    """The first true value of ``predicate()`` within ``seconds`` (polled), else its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def adult_birth_date(unique: str) -> str:
    """A birth date (1950-1999) that varies with ``unique``, so test patients do not share a fødselsnummer
    (one birth date has only about 200 valid ones: tests sharing a server would meet each other's patients)."""
    h = int(unique, 16)
    return f"{1950 + h % 50}-{1 + (h // 50) % 12:02d}-{1 + (h // 600) % 28:02d}"


def fnr(birth_date: str, seed: str) -> str:
    """A fødselsnummer with valid check digits for ``birth_date`` (YYYY-MM-DD); ``seed`` varies the rest."""
    year, month, day = birth_date.split("-")
    base = int(seed, 16) if all(c in "0123456789abcdef" for c in seed) else sum(map(ord, seed))
    for n in range(1000):
        individual = 500 + (base + n) % 499 if int(year) >= 2000 else (base + n) % 499
        digits = [int(c) for c in f"{day}{month}{year[2:]}{individual:03d}"]
        k1 = 11 - sum(w * d for w, d in zip((3, 7, 6, 1, 8, 9, 4, 5, 2), digits, strict=True)) % 11
        k1 = 0 if k1 == 11 else k1
        if k1 == 10:
            continue
        digits.append(k1)
        k2 = 11 - sum(w * d for w, d in zip((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), digits, strict=True)) % 11
        k2 = 0 if k2 == 11 else k2
        if k2 == 10:
            continue
        return "".join(map(str, digits)) + str(k2)
    raise ValueError("no valid number")


def response_locations(bundle: dict) -> list[str]:
    """Every ``Type/id`` a transaction-response names: its entries' locations and their related links
    (a referral's routing Task and Provenance are links of the referral's entry)."""
    found = []
    for entry in bundle.get("entry", []):
        location = (entry.get("response") or {}).get("location")
        if location:
            found.append(location.split("/_history")[0])
        found += [link["url"] for link in entry.get("link", []) if link.get("relation") == "related"]
    return found
