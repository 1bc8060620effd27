"""The referral write policy: every write of a referral, whatever the door, goes through the intake.

A referral is a ServiceRequest with category SNOMED CT 3457005. Registered on the interactions in the
composition root, this policy takes over its creates and updates (POST, PUT, conditional create and
update, PATCH, batch entries) and every transaction that writes one (the FHIR REST door,
``fhir-server load``): each ends with the referral stored, stamped, routed and given its one routing
Task and Provenance, or refused with an OperationOutcome that says why. No door stores a bare
referral. The intake's own writes bypass the policy (``apply_policies=False``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import uuid4

from fhir_server.core import jsonio
from fhir_server.core.interactions import FhirService, WriteResult, single_match
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.urls import parse_rest_url
from fhir_server.domain.referral.intake import IntakePipeline, IntakeResult
from fhir_server.domain.referral.referral_bundle import is_referral

_WRITES = ("POST", "PUT")


class ReferralWritePolicy:
    """Runs every referral write through the :class:`IntakePipeline`."""

    def __init__(self, intake: IntakePipeline) -> None:
        self.intake = intake

    @property
    def service(self) -> FhirService:
        return self.intake.service

    # -- single resources (REST create/update, batch entries) ----------------------------------

    def claims(self, resource: object) -> bool:
        return is_referral(resource)

    def create(self, resource: dict, *, if_none_exist: str | None, strict: bool = False) -> WriteResult:
        _refuse_bundle_references(resource)
        if if_none_exist:
            found = self.service.conditional_matches(None, "ServiceRequest", if_none_exist, ordered=False)
            match = single_match(found, if_none_exist, "create")
            if match is not None:
                return WriteResult(self.service.read("ServiceRequest", match), False, existing=True)
        return self._submit(resource, {"method": "POST", "url": "ServiceRequest"}, strict)

    def update(self, resource_id: str, resource: dict, *, if_match: int | None, strict: bool = False) -> WriteResult:
        _refuse_bundle_references(resource)
        request: dict[str, Any] = {"method": "PUT", "url": f"ServiceRequest/{resource_id}"}
        if if_match is not None:
            request["ifMatch"] = f'W/"{if_match}"'
        return self._submit(resource, request, strict)

    def _submit(self, resource: dict, request: dict, strict: bool) -> WriteResult:
        """The referral alone, as a one-entry transaction; what is said of it names ``ServiceRequest...``."""
        entry = {"fullUrl": f"urn:uuid:{uuid4()}", "resource": resource, "request": request}
        try:
            result = self.intake.submit(
                {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, strict=strict
            )
        except FhirError as error:
            raise FhirError(error.status, _in_the_referral(error.issues), error.headers) from error
        result.issues = _in_the_referral(result.issues)
        return _write_result(self.service, result)

    # -- transactions ---------------------------------------------------------------------------

    def claims_transaction(self, bundle: dict) -> bool:
        entries = bundle.get("entry")
        if not isinstance(entries, list):
            return False
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
                continue
            method = entry["request"].get("method")
            if method in _WRITES and is_referral(entry.get("resource")):
                return True
            if method == "PATCH" and self._patches_referral(entry["request"]):
                return True
        return False

    def transaction(self, bundle: dict, return_preference: str | None, *, strict: bool = False) -> dict:
        for index, entry in enumerate(bundle.get("entry") or []):
            request = entry.get("request") if isinstance(entry, dict) else None
            if isinstance(request, dict) and request.get("method") == "PATCH" and self._patches_referral(request):
                raise FhirError.single(
                    422,
                    "not-supported",
                    "a referral is changed in a transaction by PUT with the whole referral; "
                    "a JSON Patch is taken on its own (PATCH ServiceRequest/[id])",
                    f"Bundle.entry[{index}].request",
                    diagnostics_nb="en henvisning endres i en transaksjon med PUT av hele henvisningen; "
                    "JSON Patch tas imot alene (PATCH ServiceRequest/[id])",
                )
        return self.intake.submit(bundle, strict=strict).response_bundle

    def _patches_referral(self, request: dict) -> bool:
        url = parse_rest_url("PATCH", str(request.get("url", "")))
        if url.resource_type != "ServiceRequest" or not url.resource_id:
            return False
        try:
            stored = self.service.read("ServiceRequest", url.resource_id)
        except FhirError:
            return False
        return is_referral(jsonio.loads(stored.body or b"{}"))


def _write_result(service: FhirService, result: IntakeResult) -> WriteResult:
    """The intake's outcome as the interaction's result: the stored referral, and its routing Task."""
    stored = service.read("ServiceRequest", result.service_request.split("/")[1])
    related = [result.task] if result.task else []
    return WriteResult(
        stored, result.status == 201, result.issues, existing=result.action == "duplicate", related=related
    )


def _in_the_referral(issues: list[Issue]) -> list[Issue]:
    """Issues of a referral sent alone, located in it (``ServiceRequest.reasonCode``), not in the one-entry
    Bundle the intake ran it as."""
    prefix = "Bundle.entry[0].resource"
    return [
        replace(i, expression="ServiceRequest" + i.expression[len(prefix) :])
        if i.expression and i.expression.startswith(prefix)
        else i
        for i in issues
    ]


def _refuse_bundle_references(resource: dict) -> None:
    """A referral sent alone cannot point at other Bundle entries: that needs a transaction."""
    found = _bundle_reference(resource, "ServiceRequest")
    if found is not None:
        path, reference = found
        raise FhirError.single(
            422,
            "not-supported",
            f"the referral refers to '{reference}', another entry of a Bundle; send the referral and what it "
            "refers to as one transaction Bundle (Bundle.type transaction), not as a batch or on its own",
            path,
            diagnostics_nb=f"henvisningen viser til '{reference}', en annen oppføring i en Bundle; send henvisningen "
            "og det den viser til som én transaksjon (Bundle.type transaction)",
        )


def _bundle_reference(node: object, path: str) -> tuple[str, str] | None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value.startswith("urn:uuid:"):
                return f"{path}.reference", value
            found = _bundle_reference(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = _bundle_reference(item, f"{path}[{i}]")
            if found:
                return found
    return None
