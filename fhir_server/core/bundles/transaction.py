"""Batch and transaction Bundles (``POST [base]``).

A transaction is all-or-nothing: every entry is validated first (all problems reported at once,
with ``Bundle.entry[i]`` paths), then all writes run in one database transaction in the order
the specification gives (DELETE, POST, PUT/PATCH, then GET). ``urn:uuid:`` fullUrls and
conditional references (``Patient?identifier=...``) are resolved to the stored ids.
A batch runs each entry on its own and reports each entry's outcome.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import index_rows
from fhir_server.core.interactions import (
    FhirService,
    apply_json_patch,
    check_id,
    conditional_update_target,
    single_match,
)
from fhir_server.core.issues import FhirError, Issue, has_errors, operation_outcome, refusal_status
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.storage.store import StoredResource, WriteUnit, new_id
from fhir_server.core.urls import parse_rest_url

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource: dict | None
    full_url: str | None
    if_none_exist: str | None = None
    if_match: int | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    query: str | None = None
    result: dict = field(default_factory=dict)
    #: The resource's search index rows, computed before the write lock (see ``_prepare``).
    prepared_index: dict[str, list[dict]] | None = None

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


class BundleProcessor:
    """Runs batch and transaction Bundles against a :class:`FhirService`."""

    def __init__(self, service: FhirService, max_entries: int = 1000) -> None:
        self.service = service
        self.store = service.store
        self.max_entries = max_entries

    def process(
        self,
        bundle: Any,
        *,
        return_preference: str | None = None,
        after_writes: Callable[[WriteUnit, list[StoredResource | None]], object] | None = None,
        store_anew: Callable[[Entry], bool] | None = None,
        apply_policies: bool = True,
        prevalidated: bool = False,
        strict: bool = False,
    ) -> dict:
        """Run a batch or transaction; ``after_writes`` runs inside a transaction's database transaction.

        ``store_anew`` is asked about a transaction's conditional create whose condition matches several
        resources: True stores the entry's resource as a new one, False (and no ``store_anew``) refuses
        the transaction with 412. A transaction a write policy claims is run by that policy (which runs
        its own writes with ``apply_policies=False``); a batch's entries reach the policies one by one.
        ``prevalidated``: the caller validated the whole transaction already (and decided what refuses it);
        it is not validated again. ``strict`` (``Prefer: handling=strict``) is passed to the policy.
        """
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirError.single(
                400, "invalid", "POST to the base URL takes a Bundle of type batch or transaction", "resourceType"
            )
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise FhirError.single(
                400, "invalid", f"Bundle.type must be batch or transaction, not '{kind}'", "Bundle.type"
            )
        raw_entries = bundle.get("entry", [])
        if not isinstance(raw_entries, list):
            raise FhirError.single(400, "structure", "Bundle.entry must be an array", "Bundle.entry")
        if len(raw_entries) > self.max_entries:
            raise FhirError.single(
                413,
                "too-costly",
                f"the Bundle has {len(raw_entries)} entries; the limit is {self.max_entries}",
                "Bundle.entry",
            )
        policy = self.service.transaction_policy(bundle) if apply_policies else None
        if policy is not None:
            return policy.transaction(bundle, return_preference, strict=strict)
        entries, issues = self._parse_entries(raw_entries)
        if kind == "transaction" and prevalidated:
            if has_errors(issues):
                raise FhirError(refusal_status(issues), issues)
            return self._transaction(entries, return_preference, after_writes, store_anew)
        if kind == "transaction":
            # one validation of the whole Bundle: every entry's problems, with Bundle.entry[i] paths
            issues += [i for i in self.service.validate(bundle) if i not in issues]
            if has_errors(issues):
                raise FhirError(refusal_status(issues), issues)
            return self._transaction(entries, return_preference, after_writes, store_anew)
        return self._batch(entries, issues, return_preference)

    # -- parsing ----------------------------------------------------------------------------

    def _parse_entries(self, raw_entries: list) -> tuple[list[Entry], list[Issue]]:
        entries: list[Entry] = []
        issues: list[Issue] = []
        for i, raw in enumerate(raw_entries):
            path = f"Bundle.entry[{i}]"
            if not isinstance(raw, dict):
                issues.append(Issue("error", "structure", "an entry must be a JSON object", path))
                continue
            request = raw.get("request")
            if not isinstance(request, dict):
                issues.append(
                    Issue("error", "required", "the entry has no request (method and url)", f"{path}.request")
                )
                continue
            method = request.get("method")
            url = request.get("url")
            if method not in METHOD_ORDER:
                issues.append(
                    Issue(
                        "error",
                        "value",
                        f"request.method '{method}' is not GET, POST, PUT, PATCH or DELETE",
                        f"{path}.request.method",
                    )
                )
                continue
            if not isinstance(url, str) or not url:
                issues.append(Issue("error", "required", "the entry's request has no url", f"{path}.request.url"))
                continue
            resource = raw.get("resource")
            entry = Entry(
                i,
                method,
                url,
                resource if isinstance(resource, dict) else None,
                raw.get("fullUrl"),
                if_none_exist=request.get("ifNoneExist"),
            )
            if_match = request.get("ifMatch")
            if if_match:
                text = str(if_match).removeprefix("W/").strip('"')
                if text.isdigit():
                    entry.if_match = int(text)
                else:
                    issues.append(
                        Issue("error", "value", f"ifMatch '{if_match}' names no version", f"{path}.request.ifMatch")
                    )
            issues.extend(self._parse_url(entry))
            issues.extend(self._check_resource(entry))
            entries.append(entry)
        return entries, issues

    def _parse_url(self, entry: Entry) -> list[Issue]:
        url = parse_rest_url(entry.method, entry.url)
        entry.query = url.query
        where = f"{entry.path}.request.url"
        if url.resource_type not in STORABLE_TYPES:
            if entry.method in ("GET", "HEAD") and url.interaction == "operation" and url.resource_type is None:
                return []
            return [Issue("error", "value", f"'{entry.url}' does not name a resource type served here", where)]
        entry.resource_type = url.resource_type
        entry.resource_id = url.resource_id
        entry.version_id = url.version_id
        if entry.method == "POST" and url.interaction != "create":
            return [Issue("error", "value", "a POST entry's url must be the resource type", where)]
        if entry.method in ("GET", "HEAD") and (
            url.interaction not in ("read", "vread", "search-type") or url.extra_segments
        ):
            return [
                Issue("error", "not-supported", f"'{entry.url}' is not a read or search a Bundle entry can do", where)
            ]
        if url.conditional and not url.query:
            return [Issue("error", "value", f"a {entry.method} entry's url needs an id or search parameters", where)]
        return []

    def _check_resource(self, entry: Entry) -> list[Issue]:
        if entry.method not in ("POST", "PUT", "PATCH"):
            return []
        where = f"{entry.path}.resource"
        if entry.resource is None:
            return [Issue("error", "required", f"a {entry.method} entry needs a resource", where)]
        if entry.method == "PATCH":
            return []
        rtype = entry.resource.get("resourceType")
        if rtype != entry.resource_type:
            return [
                Issue(
                    "error",
                    "invalid",
                    f"the resource is a {rtype} but request.url names {entry.resource_type}",
                    f"{where}.resourceType",
                )
            ]
        if entry.method == "PUT" and entry.resource_id and entry.resource.get("id") not in (None, entry.resource_id):
            return [Issue("error", "invalid", "the resource's id differs from the id in request.url", f"{where}.id")]
        return []

    # -- transaction ------------------------------------------------------------------------

    def _transaction(
        self,
        entries: list[Entry],
        return_preference: str | None,
        after_writes: Callable[[WriteUnit, list[StoredResource | None]], object] | None = None,
        store_anew: Callable[[Entry], bool] | None = None,
    ) -> dict:
        # server ids for created resources, fixed before the first attempt: a retried attempt reuses them,
        # so references already rewritten in place (resources are written as parsed, not copied) stay right
        fixed_ids: dict[str, str] = {}
        for entry in entries:
            if entry.method == "POST":
                entry.resource_id = new_id()
                if entry.full_url:
                    fixed_ids[entry.full_url] = f"{entry.resource_type}/{entry.resource_id}"
            elif entry.method == "PUT" and entry.resource_id and entry.full_url:
                fixed_ids[entry.full_url] = f"{entry.resource_type}/{entry.resource_id}"
        self._prepare(entries, fixed_ids)

        def work(unit: WriteUnit) -> None:
            ids = dict(fixed_ids)
            ordered = sorted(entries, key=lambda e: METHOD_ORDER[e.method])
            for entry in ordered:  # conditional creates and updates resolve first: they change the id map
                if entry.method == "POST" and entry.if_none_exist:
                    found = self._conditional_create(unit, entry, store_anew)
                    if found:
                        entry.result = {"existing": found}
                        if entry.full_url:
                            ids[entry.full_url] = f"{entry.resource_type}/{found}"
                            # references _prepare already pointed at the id it would have had follow too
                            ids[fixed_ids[entry.full_url]] = ids[entry.full_url]
                elif entry.method in ("PUT", "PATCH", "DELETE") and entry.resource_id is None:
                    unit.lock_conditional(entry.resource_type or "", entry.query or "")
                    found = self._conditional_target(unit, entry)
                    entry.resource_id = found or new_id()
                    if entry.full_url and entry.method == "PUT":
                        ids[entry.full_url] = f"{entry.resource_type}/{entry.resource_id}"
                    if entry.method == "DELETE" and not found:
                        entry.result = {"status": 204}
            for entry in ordered:
                if entry.method in ("GET", "HEAD") or entry.result.get("status"):
                    continue
                self._apply(unit, entry, ids)
            if after_writes is not None:
                after_writes(unit, [e.result.get("stored") for e in entries])

        self.store.write(work)
        response = [
            self._get_entry(e) if e.method in ("GET", "HEAD") else self._response_entry(e, return_preference)
            for e in entries
        ]
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": response}

    def _conditional_create(
        self, unit: WriteUnit, entry: Entry, store_anew: Callable[[Entry], bool] | None
    ) -> str | None:
        """The id a conditional create matches; None: create (also when ``store_anew`` says so)."""
        found = self._matches(unit, entry, entry.if_none_exist or "", create=True)
        if len(found) > 1 and store_anew is not None and store_anew(entry):
            return None
        return single_match(found, entry.if_none_exist or "", "create", f"{entry.path}.request")

    def _conditional_target(self, unit: WriteUnit, entry: Entry) -> str | None:
        """The resource a conditional update, patch or delete entry names (an update's body id if none)."""
        query = entry.query or ""
        found = self._matches(unit, entry, query)
        if entry.method == "PUT":
            body_id = entry.resource.get("id") if entry.resource else None
            return conditional_update_target(found, query, entry.resource_type or "", body_id, f"{entry.path}.request")
        return single_match(found, query, entry.method.lower(), f"{entry.path}.request")

    def _matches(self, unit: WriteUnit, entry: Entry, query: str, *, create: bool = False) -> list[str]:
        matcher = self.service.conditional_create_matches if create else self.service.conditional_matches
        try:
            return matcher(unit, entry.resource_type or "", query)
        except FhirError as error:
            raise FhirError(error.status, [i.at(f"{entry.path}.request") for i in error.issues]) from error

    def _apply(self, unit: WriteUnit, entry: Entry, ids: dict[str, str]) -> None:
        rtype, rid = entry.resource_type or "", entry.resource_id or ""
        if entry.method == "DELETE":
            stored = unit.delete(rtype, rid)
            entry.result = {"status": 204, "stored": stored}
            return
        if "existing" in entry.result:
            entry.result = {"status": 200, "stored": unit.read(rtype, entry.result["existing"])}
            return
        resource = self._patched(unit, entry) if entry.method == "PATCH" else (entry.resource or {})
        changed = self._resolve_references(unit, resource, ids, f"{entry.path}.resource")
        check_id(rid, f"{entry.path}.request.url")
        stored, created = unit.put(
            resource,
            resource_id=rid,
            if_match=entry.if_match,
            fresh_id=entry.method == "POST",
            index=None if changed else entry.prepared_index,
        )
        entry.result = {"status": 201 if created else 200, "stored": stored}

    def _patched(self, unit: WriteUnit, entry: Entry) -> dict:
        """PATCH in a transaction: the current version with the entry's JSON Patch applied, validated."""
        current = unit.read(entry.resource_type or "", entry.resource_id or "")
        patched = apply_json_patch(current, self._patch_operations(entry), f"{entry.path}.resource")
        issues = [i.at(f"{entry.path}.resource") for i in self.service.validate(patched)]
        if has_errors(issues):
            raise FhirError(422, issues)
        entry.if_match = entry.if_match or current.version_id
        return patched

    @staticmethod
    def _patch_operations(entry: Entry) -> object:
        """A PATCH entry's operations: a Binary resource carrying a JSON Patch document."""
        binary = entry.resource or {}
        if binary.get("resourceType") != "Binary" or "json-patch" not in str(binary.get("contentType")):
            raise FhirError.single(
                400,
                "not-supported",
                "a PATCH entry takes a Binary with a JSON Patch (contentType application/json-patch+json)",
                f"{entry.path}.resource",
            )
        try:
            return jsonio.loads(base64.b64decode(binary.get("data", ""), validate=True))
        except (ValueError, jsonio.JsonError) as exc:
            raise FhirError.single(
                400, "structure", f"the Binary's data is no base64 JSON Patch: {exc}", f"{entry.path}.resource.data"
            ) from exc

    def _prepare(self, entries: list[Entry], fixed_ids: dict[str, str]) -> None:
        """Resolve what references can be resolved without the database, and compute the index rows
        of the entries then complete, before the write lock is taken: the lock is held for less.

        A reference to a conditional create's fullUrl points at the id it gets if created; should the
        condition match instead, ``work`` maps that id to the match, and such an entry's rows are
        computed again under the lock (``_resolve_references`` reports the change)."""
        full_urls = {e.full_url for e in entries if e.full_url}
        for entry in entries:
            if entry.method not in ("POST", "PUT") or not isinstance(entry.resource, dict):
                continue
            if self._resolve_known(entry.resource, fixed_ids, full_urls):
                entry.prepared_index = index_rows(self.store.registry, entry.resource)

    def _resolve_known(self, node: Any, ids: dict[str, str], full_urls: set[str]) -> bool:
        """Resolve the references in ``node`` that ``ids`` resolves; True when every reference is then final."""
        complete = True
        if isinstance(node, list):
            for item in node:
                complete = self._resolve_known(item, ids, full_urls) and complete
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    if value in ids:
                        node[key] = ids[value]
                    elif value in full_urls or "?" in value or value.startswith(("urn:uuid:", "urn:oid:")):
                        complete = False  # resolved (or refused) under the lock
                elif isinstance(value, dict | list):
                    complete = self._resolve_known(value, ids, full_urls) and complete
        return complete

    def _resolve_references(self, unit: WriteUnit, node: Any, ids: dict[str, str], path: str) -> bool:
        """Resolve Bundle-internal and conditional references in place; True when one changed."""
        changed = False
        if isinstance(node, list):
            for i, item in enumerate(node):
                changed = self._resolve_references(unit, item, ids, f"{path}[{i}]") or changed
            return changed
        if not isinstance(node, dict):
            return False
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                resolved = self._resolve_one(unit, value, ids, f"{path}.reference")
                if resolved != value:
                    node[key], changed = resolved, True
            elif isinstance(value, dict | list):
                changed = self._resolve_references(unit, value, ids, f"{path}.{key}") or changed
        return changed

    def _resolve_one(self, unit: WriteUnit, reference: str, ids: dict[str, str], path: str) -> str:
        if reference in ids:
            return ids[reference]
        if reference.startswith(("urn:uuid:", "urn:oid:")):
            raise FhirError.single(
                400, "not-found", f"the reference '{reference}' matches no fullUrl in the Bundle", path
            )
        if "?" in reference and not reference.startswith("#"):
            rtype, _, query = reference.partition("?")
            if rtype not in STORABLE_TYPES:
                raise FhirError.single(400, "invalid", f"'{rtype}' in the conditional reference is not a type", path)
            found = self.service.conditional_matches(unit, rtype, query)
            if len(found) != 1:
                raise FhirError.single(
                    412 if found else 404,
                    "multiple-matches" if found else "not-found",
                    f"the conditional reference '{reference}' matches {len(found) if found else 'no'} resources; "
                    "it must match exactly one",
                    path,
                )
            return f"{rtype}/{found[0]}"
        return reference

    # -- batch ------------------------------------------------------------------------------

    def _batch(self, entries: list[Entry], parse_issues: list[Issue], return_preference: str | None) -> dict:
        failed_entries: dict[int, list[Issue]] = {}
        for issue in parse_issues:
            index = int(issue.expression.split("[")[1].split("]")[0]) if issue.expression else -1
            failed_entries.setdefault(index, []).append(issue)
        response = []
        for entry in entries:
            if has_errors(failed_entries.get(entry.index, [])):
                response.append(_error_entry(FhirError(400, failed_entries[entry.index])))
                continue
            try:
                response.append(self._batch_one(entry, return_preference))
            except FhirError as error:
                rooted = [
                    i.at(f"{entry.path}.resource")
                    if i.expression and entry.resource_type and i.expression.startswith(entry.resource_type)
                    else i
                    for i in error.issues
                ]
                response.append(_error_entry(FhirError(error.status, rooted)))
        return {"resourceType": "Bundle", "type": "batch-response", "entry": response}

    def _batch_one(self, entry: Entry, return_preference: str | None) -> dict:
        service = self.service
        rtype = entry.resource_type or ""
        if entry.method in ("GET", "HEAD"):
            return self._get_entry(entry)
        if entry.method == "DELETE":
            if entry.resource_id:
                stored = service.delete(rtype, entry.resource_id)
            else:
                service.conditional_delete(rtype, entry.query or "")
                stored = None
            entry.result = {"status": 204, "stored": stored}
        elif entry.method == "POST":
            result = service.create(jsonio.copy_json(entry.resource or {}), if_none_exist=entry.if_none_exist)
            entry.result = {"status": 200 if result.existing else 201, "stored": result.stored}
        elif entry.method == "PUT":
            if entry.resource_id:
                result = service.update(
                    rtype, entry.resource_id, jsonio.copy_json(entry.resource or {}), if_match=entry.if_match
                )
            else:
                result = service.conditional_update(rtype, entry.query or "", jsonio.copy_json(entry.resource or {}))
            entry.result = {"status": 201 if result.created else 200, "stored": result.stored}
        else:
            target = entry.resource_id or single_match(
                service.conditional_matches(None, rtype, entry.query or ""), entry.query or "", "patch", entry.path
            )
            if target is None:
                raise FhirError.single(404, "not-found", f"the conditional patch '{entry.query}' matches nothing")
            result = service.patch(rtype, target, self._patch_operations(entry), if_match=entry.if_match)
            entry.result = {"status": 200, "stored": result.stored}
        return self._response_entry(entry, return_preference)

    def _get_entry(self, entry: Entry) -> dict:
        rtype = entry.resource_type or ""
        if entry.resource_id and not entry.query:
            if entry.version_id:
                stored = self.service.vread(rtype, entry.resource_id, entry.version_id)
            else:
                stored = self.service.read(rtype, entry.resource_id)
            return {
                "resource": jsonio.loads(stored.body or b"{}"),
                "response": {"status": "200 OK", "etag": stored.etag, "lastModified": stored.last_updated},
            }
        params = parse_qsl(entry.query or "", keep_blank_values=True)
        _request, page = self.service.search(rtype, params)
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": page.total,
            "entry": [{"resource": jsonio.loads(s.body or b"{}"), "search": {"mode": "match"}} for s in page.matches],
        }
        return {"resource": bundle, "response": {"status": "200 OK"}}

    def _response_entry(self, entry: Entry, return_preference: str | None) -> dict:
        status = entry.result.get("status", 200)
        stored: StoredResource | None = entry.result.get("stored")
        response: dict = {"status": STATUS_TEXT.get(status, str(status))}
        out: dict = {}
        if stored is not None:
            response["etag"] = stored.etag
            response["lastModified"] = stored.last_updated
            if not stored.deleted:
                response["location"] = stored.location
                if return_preference == "representation" and stored.body:
                    out["resource"] = jsonio.loads(stored.body)
        out["response"] = response
        return out


def _error_entry(error: FhirError) -> dict:
    return {"response": {"status": str(error.status), "outcome": operation_outcome(error.issues)}}
