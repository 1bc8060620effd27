"""The FHIR interactions as plain Python: what the REST edge calls, knowing nothing of HTTP.

Each write validates the resource once (the configured validators), then stores it; the stored
JSON is what every later read serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jsonpatch

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import plain_matches
from fhir_server.core.issues import FhirError, Issue, has_errors, refusal_status
from fhir_server.core.resource_types import STORABLE_TYPES
from fhir_server.core.search.engine import SearchEngine, SearchPage
from fhir_server.core.search.query import SearchParser, SearchRequest
from fhir_server.core.storage import index_backlog
from fhir_server.core.storage.store import Store, StoredResource, WriteUnit
from fhir_server.core.write_policy import WritePolicy

Validator = Callable[[dict], list[Issue]]
ID_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def check_type(resource_type: str) -> None:
    if resource_type not in STORABLE_TYPES:
        raise FhirError.single(
            404,
            "not-supported",
            f"Resource type '{resource_type}' is not served here",
            diagnostics_nb=f"Ressurstypen '{resource_type}' støttes ikke av denne tjeneren",
        )


def is_fhir_id(text: str | None) -> bool:
    """True for a valid FHIR id: 1 to 64 letters, digits, '-' and '.' (False for None)."""
    return text is not None and 0 < len(text) <= 64 and set(text) <= ID_PATTERN_CHARS


def check_id(resource_id: str, expression: str = "id") -> None:
    if not is_fhir_id(resource_id):
        raise FhirError.single(
            400,
            "value",
            f"'{resource_id[:80]}' is not a valid FHIR id (1 to 64 characters: letters, digits, '-' and '.')",
            expression,
        )


def check_body(resource: object, resource_type: str | None, resource_id: str | None = None) -> dict:
    """The body of a write to ``resource_type`` (and id), checked for its type and id (400 if wrong)."""
    if not isinstance(resource, dict):
        raise FhirError.single(400, "structure", "the body must be a JSON object (a FHIR resource)")
    body_type = resource.get("resourceType")
    if not isinstance(body_type, str):
        raise FhirError.single(400, "required", "the resource has no resourceType", "resourceType")
    if resource_type and body_type != resource_type:
        raise FhirError.single(
            400, "invalid", f"the body is a {body_type}, but the URL names {resource_type}", "resourceType"
        )
    check_type(body_type)
    if resource_id is not None:
        body_id = resource.get("id")
        if body_id is None:
            raise FhirError.single(
                400, "required", "an update must carry the resource's id in the body", f"{body_type}.id"
            )
        if body_id != resource_id:
            raise FhirError.single(
                400,
                "invalid",
                f"the id in the body ('{body_id}') differs from the id in the URL ('{resource_id}')",
                f"{body_type}.id",
            )
    return resource


def single_match(found: list[str], query: str, interaction: str, expression: str | None = None) -> str | None:
    """The one resource a conditional interaction's query matched, or None; 412 when it matched several."""
    if len(found) > 1:
        raise FhirError.single(
            412,
            "multiple-matches",
            f"the conditional {interaction} '{query}' matches several resources; it must match at most one",
            expression,
        )
    return found[0] if found else None


def conditional_update_target(
    found: list[str], query: str, resource_type: str, body_id: object, expression: str | None = None
) -> str | None:
    """The id a conditional update writes to: its one match, else the body's id (None: a new id)."""
    match = single_match(found, query, "update", expression)
    if match is not None:
        if body_id and body_id != match:
            raise FhirError.single(
                400,
                "invalid",
                f"the body's id '{body_id}' differs from the matched resource '{match}'",
                f"{resource_type}.id",
            )
        return match
    if isinstance(body_id, str) and body_id:
        check_id(body_id, f"{resource_type}.id")
        return body_id
    return None


def apply_json_patch(current: StoredResource, operations: object, expression: str | None = None) -> dict:
    """The current version with a JSON Patch (RFC 6902) applied; 400/422 when it cannot be, or changes
    the resource's type or id."""
    resource_type, resource_id = current.resource_type, current.id
    if not isinstance(operations, list):
        raise FhirError.single(400, "structure", "a JSON Patch must be a JSON array of operations", expression)
    try:
        patched = jsonpatch.JsonPatch(operations).apply(jsonio.loads(current.body or b"{}"))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, ValueError) as exc:
        raise FhirError.single(422, "processing", f"the JSON Patch cannot be applied: {exc}", expression) from exc
    if not isinstance(patched, dict):
        raise FhirError.single(422, "processing", "the patched result is not a resource", expression)
    for key, expected in (("resourceType", resource_type), ("id", resource_id)):
        if patched.get(key) != expected:
            raise FhirError.single(422, "processing", f"a patch may not change '{key}'", f"{resource_type}.{key}")
    return patched


@dataclass
class WriteResult:
    stored: StoredResource
    created: bool
    #: Issues of severity warning/information found while validating, reported back to the client.
    warnings: list[Issue] = field(default_factory=list)
    #: True when a conditional create found an existing match and created nothing.
    existing: bool = False
    #: Resources a write policy stored beside this one (e.g. the routing Task of a referral), as ``Type/id``.
    related: list[str] = field(default_factory=list)


class FhirService:
    """create/read/update/patch/delete/search/history over a :class:`Store`."""

    def __init__(self, store: Store, validators: Sequence[Validator] = (), base_url: str = "") -> None:
        self.store = store
        self.validators = list(validators)
        self.parser = SearchParser(store.registry, base_url)
        self.engine = SearchEngine(store)
        self.policies: list[WritePolicy] = []

    def register_policy(self, policy: WritePolicy) -> None:
        """Let ``policy`` take over the writes it claims (on every door: see :mod:`~fhir_server.core.write_policy`)."""
        self.policies.append(policy)

    def policy_for(self, resource: object) -> WritePolicy | None:
        """The registered policy that writes ``resource``, if any."""
        for policy in self.policies:
            if policy.claims(resource):
                return policy
        return None

    def transaction_policy(self, bundle: object) -> WritePolicy | None:
        """The registered policy that runs the transaction ``bundle``, if any."""
        if not isinstance(bundle, dict) or bundle.get("type") != "transaction":
            return None
        for policy in self.policies:
            if policy.claims_transaction(bundle):
                return policy
        return None

    # -- validation -------------------------------------------------------------------------

    def validate(self, resource: dict) -> list[Issue]:
        issues: list[Issue] = []
        for validator in self.validators:
            issues.extend(validator(resource))
        return issues

    def validated(self, resource: object, resource_type: str | None, resource_id: str | None = None) -> list[Issue]:
        """Check a body for a write to ``resource_type`` (and id); raises 400/422, returns warnings."""
        checked = check_body(resource, resource_type, resource_id)
        issues = self.validate(checked)
        if has_errors(issues):
            raise FhirError(refusal_status(issues), issues)
        return issues

    # -- reads ------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredResource:
        check_type(resource_type)
        return self.store.read(resource_type, resource_id)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredResource:
        check_type(resource_type)
        return self.store.vread(resource_type, resource_id, version_id)

    def search(
        self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchRequest, SearchPage]:
        check_type(resource_type)
        request = self.parser.parse(resource_type, params, strict=strict)
        index_backlog.catch_up_for_search(self.store, resource_type, params)
        return request, self.engine.search(request)

    def search_window(
        self, resource_type: str, params: list[tuple[str, str]], *, offset: int = 0, with_total: bool = True
    ) -> SearchPage:
        """One window of a search (``_count`` matches from ``offset``) without a paging snapshot: for doors
        that page by their own means (the web app). ``total`` is counted when ``with_total``."""
        check_type(resource_type)
        request = self.parser.parse(resource_type, params, strict=True)
        index_backlog.catch_up_for_search(self.store, resource_type, params)
        page = self.engine.first(request, offset)
        if with_total:
            page.total = self.engine.count(request)
        return page

    def conditional_matches(
        self, unit: WriteUnit | None, resource_type: str, query: str, *, ordered: bool = True
    ) -> list[str]:
        """Ids of resources matching a conditional query (``identifier=x&...``), at most 3 (in search
        order unless ``ordered`` is False: for callers that only tell none, one and several apart)."""
        from urllib.parse import parse_qsl

        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise FhirError.single(400, "invalid", "a conditional operation needs search parameters")
        self.parser.limits.check(params)
        plain = plain_matches(self.store.registry, resource_type, params)
        if plain is not None:  # identifier=system|value and the like: straight to the index tables
            return self.store.match_ids(resource_type, plain, unit=unit, limit=3, ordered=ordered)
        request = self.parser.parse(resource_type, params, strict=True)
        query_ids = self.engine._id_query(request)
        if unit is None:
            with self.store.reading() as conn:
                return list(conn.execute(query_ids.limit(3)).scalars())
        return list(unit.execute(query_ids.limit(3)).scalars())

    def conditional_create_matches(self, unit: WriteUnit, resource_type: str, query: str) -> list[str]:
        """What a conditional create's condition matches, locking only when it matches nothing.

        A match that exists is used as it is; only a create must be serialised against concurrent
        identical creates (lock, then look again), so resending known resources never waits.
        """
        found = self.conditional_matches(unit, resource_type, query, ordered=False)
        if found:
            return found
        unit.lock_conditional(resource_type, query)
        return self.conditional_matches(unit, resource_type, query, ordered=False)

    # -- writes -----------------------------------------------------------------------------

    def create(self, resource: dict, *, if_none_exist: str | None = None, strict: bool = False) -> WriteResult:
        """``strict`` (``Prefer: handling=strict``) reaches a write policy that would otherwise only warn."""
        policy = self.policy_for(check_body(resource, None))
        if policy is not None:
            return policy.create(resource, if_none_exist=if_none_exist, strict=strict)
        warnings = self.validated(resource, None)
        resource_type = resource["resourceType"]
        resource.pop("id", None)  # the server assigns the id of a created resource

        def work(unit: WriteUnit) -> WriteResult:
            if if_none_exist:
                found = self.conditional_create_matches(unit, resource_type, if_none_exist)
                match = single_match(found, if_none_exist, "create")
                if match is not None:
                    return WriteResult(unit.read(resource_type, match), False, existing=True)
            stored, created = unit.put(jsonio.copy_json(resource), fresh_id=True)
            return WriteResult(stored, created, warnings)

        return self.store.write(work)

    def update(
        self, resource_type: str, resource_id: str, resource: dict, *, if_match: int | None = None, strict: bool = False
    ) -> WriteResult:
        check_type(resource_type)
        check_id(resource_id, f"{resource_type}.id")
        policy = self.policy_for(check_body(resource, resource_type, resource_id))
        if policy is not None:
            return policy.update(resource_id, resource, if_match=if_match, strict=strict)
        warnings = self.validated(resource, resource_type, resource_id)

        def work(unit: WriteUnit) -> WriteResult:
            stored, created = unit.put(jsonio.copy_json(resource), resource_id=resource_id, if_match=if_match)
            return WriteResult(stored, created, warnings)

        return self.store.write(work)

    def update_many(self, resources: Sequence[dict]) -> list[WriteResult | FhirError]:
        """Many writes in one write unit (bulk import): a resource with an id is an :meth:`update` of it (the id
        kept), one without a :meth:`create`; each validated as those are. Only for resources no write policy
        claims (the caller asks :meth:`policy_for`). Answers each with its result or its refusal; a refused
        one leaves the others stored."""
        answers: list[WriteResult | FhirError | None] = [None] * len(resources)
        warnings: dict[int, list[Issue]] = {}
        for i, resource in enumerate(resources):
            resource_id = resource.get("id")
            try:
                if isinstance(resource_id, str):
                    check_type(str(resource.get("resourceType")))
                    check_id(resource_id, f"{resource.get('resourceType')}.id")
                    warnings[i] = self.validated(resource, None, resource_id)
                else:
                    warnings[i] = self.validated(resource, None)
            except FhirError as error:
                answers[i] = error
        pending = list(warnings)
        while pending:
            refused: dict[int, FhirError] = {}

            def work(
                unit: WriteUnit, todo: list[int] = pending, refused: dict[int, FhirError] = refused
            ) -> dict[int, WriteResult]:
                done = {}
                for i in todo:
                    resource = jsonio.copy_json(resources[i])
                    resource_id = resource.get("id") if isinstance(resource.get("id"), str) else None
                    if resource_id is None:
                        resource.pop("id", None)
                    try:
                        stored, created = unit.put(resource, resource_id=resource_id, fresh_id=resource_id is None)
                    except FhirError as refusal:
                        refused[i] = refusal
                        raise
                    done[i] = WriteResult(stored, created, warnings[i])
                return done

            try:
                for i, result in self.store.write(work).items():
                    answers[i] = result
                pending = []
            except FhirError:
                if not refused:
                    raise
                for i in refused:  # undone with the rest: written again without it
                    answers[i] = refused[i]
                pending = [i for i in pending if i not in refused]
        return [a if a is not None else FhirError.single(500, "exception", "not written") for a in answers]

    def conditional_update(
        self, resource_type: str, query: str, resource: dict, *, strict: bool = False
    ) -> WriteResult:
        check_type(resource_type)
        body_id = resource.get("id") if isinstance(resource, dict) else None
        if self.policy_for(check_body(resource, resource_type)) is not None:  # the policy's own write decides
            found = self.conditional_matches(None, resource_type, query)
            target = conditional_update_target(found, query, resource_type, body_id)
            if target is None:
                return self.create(resource, strict=strict)
            return self.update(resource_type, target, {**resource, "id": target}, strict=strict)
        warnings = self.validated(resource, resource_type)

        def work(unit: WriteUnit) -> WriteResult:
            unit.lock_conditional(resource_type, query)
            found = self.conditional_matches(unit, resource_type, query)
            target = conditional_update_target(found, query, resource_type, body_id)
            stored, created = unit.put(jsonio.copy_json(resource), resource_id=target)
            return WriteResult(stored, created, warnings)

        return self.store.write(work)

    def patch(
        self, resource_type: str, resource_id: str, operations: object, *, if_match: int | None = None
    ) -> WriteResult:
        """Apply a JSON Patch (RFC 6902) to the current version, then validate and store the result."""
        current = self.read(resource_type, resource_id)
        patched = apply_json_patch(current, operations)
        expected = if_match if if_match is not None else current.version_id
        return self.update(resource_type, resource_id, patched, if_match=expected)

    def delete(self, resource_type: str, resource_id: str) -> StoredResource | None:
        check_type(resource_type)
        return self.store.write(lambda unit: unit.delete(resource_type, resource_id))

    def conditional_delete(self, resource_type: str, query: str) -> int:
        check_type(resource_type)

        def work(unit: WriteUnit) -> int:
            unit.lock_conditional(resource_type, query)
            match = single_match(self.conditional_matches(unit, resource_type, query), query, "delete")
            if match is not None:
                unit.delete(resource_type, match)
            return 0 if match is None else 1

        return self.store.write(work)
