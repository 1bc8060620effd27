"""The one referral pipeline behind every door (FHIR REST, FHIR messaging, Henvisning XML, JSON form).

A referral arrives as a transaction-like Bundle (the doors map their formats to one). The pipeline:

1. finds the referral ServiceRequest (category SNOMED CT 3457005) and its Patient;
2. claims the Norwegian profiles (``meta.profile``) and stamps the received date (Helsenorge
   ``no-mottatt-dato``) and the legal assessment deadline (``no-frist-for-vurdering``, pasient- og
   brukerrettighetsloven § 2-2: the working days the suggested pathway states, else the ordinary
   referral's, counted from the Norwegian date of receipt; the end of that day, Oslo time), and carries
   that deadline on the routing Task (``Task.restriction.period.end``);
3. validates everything once (base rules, identifiers, profiles; :mod:`.leniency`): base R4 errors, no
   identifiable patient or no sender refuse the whole referral with 422 and nothing is stored; profile and
   identifier problems are warnings (errors only when the sender asks for strict handling), kept on the
   routing Task (a contained OperationOutcome, ``Task.output`` ``validation-warnings``) and returned;
4. is idempotent on the referral's identifier: the same referral again creates nothing new;
   an update replaces it; a revoke marks it revoked and cancels its Task;
5. suggests pathways and routes the referral (RHF, and HF where the catchment data allows);
6. stores the referral, a routing Task (owner: the RHF), a Provenance that says why, and one outbox
   row per regional push Endpoint, in one database transaction.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

from fhir_server import naming
from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor, Entry
from fhir_server.core.interactions import FhirService, check_id, conditional_update_target
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.storage import access
from fhir_server.core.storage.store import WriteUnit
from fhir_server.core.urls import parse_rest_url
from fhir_server.domain.calendar import oslo_date, working_day_deadline
from fhir_server.domain.delivery.outbox import enqueue_deliveries
from fhir_server.domain.pathways import PathwayCatalog, suggest_pathways
from fhir_server.domain.pathways.evidence import evidence_in_bundle
from fhir_server.domain.referral.leniency import ReferralChecks, check_referral
from fhir_server.domain.referral.mapping.fhir_aliases import normalise_referral
from fhir_server.domain.referral.referral_bundle import (
    PARTY_SYSTEMS,
    entries_by_reference,
    patient_reference,
    referral_identifier,
    referral_index,
    resolve_patient,
    reuse_known_parties,
)
from fhir_server.domain.referral.responses import one_response_per_request, response_location, stored_anew_note
from fhir_server.domain.referral.routing_task import (
    ORGNR_SYSTEM,
    TASK_IDENTIFIER_SYSTEM,
    TRIAGE_ORGANIZATION,
    build_task,
    carried_task,
    evidence_urls,
    keep_deadline,
    keep_warnings,
    provenance,
    same_routing,
)
from fhir_server.domain.routing.decision import RoutingDecision, route
from fhir_server.domain.routing.region_access import as_sender
from fhir_server.domain.routing.tables import RoutingTables

log = logging.getLogger(__name__)

HUB = naming.BASE
EXT_RECEIVED = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
EXT_ASSESSMENT_DEADLINE = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-vurdering"
PROFILES = {
    "ServiceRequest": f"{HUB}/StructureDefinition/hub-referral-servicerequest",
    "Patient": f"{HUB}/StructureDefinition/hub-referral-patient",
    "Practitioner": f"{HUB}/StructureDefinition/hub-referral-practitioner",
    "Organization": f"{HUB}/StructureDefinition/hub-referral-organization",
}


@dataclass
class IntakeResult:
    """What happened to a submitted referral."""

    status: int  # 201 created, 200 already known / updated / revoked
    action: str
    service_request: str
    task: str | None
    decision: RoutingDecision | None
    response_bundle: dict
    issues: list[Issue] = field(default_factory=list)


@dataclass
class IntakePipeline:
    service: FhirService
    pathways: PathwayCatalog
    tables: RoutingTables
    #: the write checks apart (refusals from warnings); None: the transaction validates, every error refuses
    checks: ReferralChecks | None = None
    _org_ids: dict[str, str] = field(default_factory=dict)

    # -- entry point --------------------------------------------------------------------------

    def submit(
        self, bundle: dict, *, action: str = "create", received: datetime | None = None, strict: bool = False
    ) -> IntakeResult:
        """Run a referral Bundle through the pipeline (``action``: create, update or revoke; ``strict``: every
        validation error refuses, as the sender's ``Prefer: handling=strict`` asks).

        The referral entry may be a POST (a new referral; the same identifier again is a duplicate) or a
        PUT naming the referral's id (an update of that referral, or a new referral with the sender's id)."""
        received = received or datetime.now(UTC)
        bundle, notes = normalise_referral(bundle)
        entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        index = referral_index(entries)
        request_count = len(entries)  # the response has one entry per request entry (R4 transaction-response)
        referral = entries[index]["resource"]
        identifier = referral_identifier(referral, index)
        request = entries[index].get("request") or {}
        existing = self._existing_referral(identifier)
        target = self._put_target(request, referral, existing, index)
        if target is not None and existing is None and self._stored(f"ServiceRequest/{target}") is not None:
            existing = target  # an update that changes the referral's identifier
        if action == "revoke":
            return self._revoke(existing, identifier)
        if existing is not None and action == "create" and target is None:
            return self._already_known(existing, request_count, index)
        stored_referral = self._stored(f"ServiceRequest/{existing}") if existing else None
        received = _received_of(stored_referral) or received  # the legal clock starts at the first receipt
        patient = resolve_patient(entries, referral, self.service)
        evidence = evidence_in_bundle(entries, referral)
        suggestions = suggest_pathways(referral, patient or {}, evidence, self.pathways, on_date=oslo_date(received))
        # the legal assessment deadline: computed once, stamped on the referral and carried by its routing Task
        deadline = working_day_deadline(received, self._assessment_working_days(suggestions))
        self._prepare(entries, index, received, deadline)
        write_id = existing or target
        if write_id is not None:  # an update of a referral we have (same id, same Task), or the sender's id
            entries[index]["request"] = {
                "method": "PUT",
                "url": f"ServiceRequest/{write_id}",
                **({"ifMatch": request["ifMatch"]} if request.get("ifMatch") else {}),
            }
            referral["id"] = write_id
        else:
            entries[index]["request"] = {
                "method": "POST",
                "url": "ServiceRequest",
                "ifNoneExist": f"identifier={identifier[0]}|{identifier[1]}",
            }
        entries[index].setdefault("fullUrl", f"urn:uuid:{uuid4()}")
        reuse_known_parties(entries)
        decision = route(
            patient,
            referral,
            self.tables,
            self._organization_resolver(entries),
            service_line=self._service_line(suggestions),
        )
        carried = carried_task(entries, entries[index]["fullUrl"], write_id)
        current_task = (
            carried["resource"] if carried else self._current_task(existing, identifier) if existing else None
        )
        task_ref = None
        new_task = None
        if current_task is not None and same_routing(current_task, decision):
            # routing unchanged: the region's Task (or the one the Bundle carries) stays as it is
            task_ref = f"Task/{current_task['id']}" if current_task.get("id") else None
        else:
            task, task_url = build_task(
                referral,
                entries[index]["fullUrl"],
                patient_reference(referral),
                decision,
                suggestions,
                identifier,
                received,
                self._owner(decision),
                deadline,
            )
            new_task = task
            task_query = f"identifier={TASK_IDENTIFIER_SYSTEM}|{identifier[1]}"
            if carried is not None:  # the Bundle's own routing Task is replaced by the decision
                if carried["resource"].get("id"):
                    task["id"] = carried["resource"]["id"]
                carried["resource"] = task
                task_url = carried.get("fullUrl") or task_url
                carried["fullUrl"] = task_url
            else:
                if current_task is not None:  # re-routed: the Task follows the referral to its new owner
                    task["id"] = current_task["id"]
                    task_request = {"method": "PUT", "url": f"Task/{current_task['id']}"}
                else:
                    task_request = {"method": "POST", "url": "Task", "ifNoneExist": task_query}
                entries.append({"fullUrl": task_url, "resource": task, "request": task_request})
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid4()}",
                    "resource": provenance(
                        task_url,
                        entries[index]["fullUrl"],
                        decision,
                        received,
                        "update" if existing else "create",
                        evidence_urls(entries, evidence),
                    ),
                    "request": {"method": "POST", "url": "Provenance"},
                }
            )
        kept_on = new_task if new_task is not None else jsonio.copy_json(current_task) if current_task else None
        # routing unchanged: the Task keeps the referral's deadline (an update may change the pathway, so the
        # deadline) and this version's warnings
        changed = kept_on is not None and new_task is None and keep_deadline(kept_on, deadline)
        if self.checks is not None:
            verdict = check_referral(self.checks, entries, index, patient, strict=strict, sent=request_count)
            if kept_on is not None and keep_warnings(kept_on, verdict.warnings, entries):
                changed = changed or new_task is None
            notes.extend(verdict.warnings)
        if changed and kept_on is not None:
            if carried is not None:
                carried["resource"] = kept_on
            elif kept_on.get("id"):
                entries.append({"resource": kept_on, "request": {"method": "PUT", "url": f"Task/{kept_on['id']}"}})
        event = "update" if existing else "create"
        owner = self._owner(decision).get("reference") if decision.rhf_orgnr else None
        with as_sender() if existing is None else nullcontext():  # a new referral's identifier: the sender's own
            response = self._store(entries, event, identifier, owner, notes, decision.rhf_orgnr)
        task_location = task_ref or response_location(response, "Task")
        one_response_per_request(response, request_count, index, [task_ref] if task_ref else [], notes)
        return IntakeResult(
            200 if existing else 201,
            event,
            response_location(response, "ServiceRequest"),
            task_location,
            decision,
            response,
            notes,
        )

    def _put_target(self, request: dict, referral: dict, existing: str | None, index: int) -> str | None:
        """The id a PUT of the referral names (a conditional PUT resolved); None for a POST."""
        if request.get("method") != "PUT":
            return None
        url = parse_rest_url("PUT", str(request.get("url", "")))
        if url.resource_id:
            target = url.resource_id
        else:
            query = url.query or ""
            found = self.service.conditional_matches(None, "ServiceRequest", query)
            where = f"Bundle.entry[{index}].request"
            matched = conditional_update_target(found, query, "ServiceRequest", referral.get("id"), where)
            if matched is None:
                return None
            target = matched
        check_id(target, f"Bundle.entry[{index}].request.url")
        if existing is not None and existing != target:
            raise FhirError.single(
                409,
                "conflict",
                f"a referral with this identifier is already stored as ServiceRequest/{existing}; "
                f"update that one, not ServiceRequest/{target}",
                f"Bundle.entry[{index}].resource.identifier",
                diagnostics_nb=f"en henvisning med denne identifikatoren er allerede lagret som "
                f"ServiceRequest/{existing}",
            )
        return target

    def _stored(self, reference: str) -> dict | None:
        """A stored resource's JSON (``Type/id``), or None when it is not there."""
        rtype, _, rid = reference.partition("/")
        try:
            return jsonio.loads(self.service.read(rtype, rid).body or b"{}")
        except FhirError:
            return None

    def _current_task(self, referral_id: str, identifier: tuple[str, str]) -> dict | None:
        """The routing Task of a stored referral (by its focus, else by the referral's identifier)."""
        found = self.service.conditional_matches(None, "Task", f"focus=ServiceRequest/{referral_id}")
        if not found:
            found = self.service.conditional_matches(
                None, "Task", f"identifier={TASK_IDENTIFIER_SYSTEM}|{identifier[1]}"
            )
        return self._stored(f"Task/{found[0]}") if found else None

    def _store(
        self,
        entries: list[dict],
        event: str,
        identifier: tuple[str, str],
        owner: str | None,
        notes: list[Issue],
        region: str | None,
    ) -> dict:
        """Run the referral's transaction. A party's identifier shared by several stored resources (412 on
        its conditional create) does not refuse the referral: that party is stored anew and the sender told.

        Everything the referral stores (and the known parties it names) becomes visible to the region it
        is routed to; the push to the region's endpoints is the server's own work, whoever sent it."""

        def after_writes(unit: WriteUnit, stored: list) -> None:
            if region:
                keys = [(s.resource_type, s.id) for s in stored if s is not None]
                unit.add_labels(keys, [access.region_label(region)])
            self._deliver(unit, owner, stored, event, identifier)

        ambiguous: dict[int, str] = {}  # entry index -> the party type stored anew

        def store_anew(entry: Entry) -> bool:
            if entry.resource_type not in PARTY_SYSTEMS:
                return False
            ambiguous[entry.index] = entry.resource_type or ""
            return True

        response = BundleProcessor(self.service).process(
            {"resourceType": "Bundle", "type": "transaction", "entry": entries},
            return_preference="representation",
            after_writes=after_writes,
            store_anew=store_anew,
            apply_policies=False,
            prevalidated=self.checks is not None,
        )
        notes.extend(stored_anew_note(index, resource_type) for index, resource_type in ambiguous.items())
        return response

    def _deliver(
        self, unit: WriteUnit, owner: str | None, stored: list, event: str, identifier: tuple[str, str]
    ) -> None:
        """Queue the push to the owner's endpoints: the server's own work, whoever sent the referral."""
        with access.acting_as(access.SYSTEM):
            enqueue_deliveries(unit, self.service, owner, stored, event, identifier)

    # -- steps --------------------------------------------------------------------------------

    def _assessment_working_days(self, suggestions: list) -> int:
        """The legal assessment deadline in working days: the shortest a suggested pathway states, else
        the ordinary referral's (the pathway catalog's data)."""
        days = [self.pathways.assessment_working_days(s.url) for s in suggestions]
        return min(days) if days else self.pathways.assessment_working_days(None)

    def _prepare(self, entries: list[dict], index: int, received: datetime, deadline: datetime) -> None:
        """Claim the Norwegian profiles; stamp the received instant and the assessment deadline (the end of
        the pathway's working days after the Norwegian date of receipt, Oslo time)."""
        for entry in entries:  # the referral, and the resources it brings (POSTed), not other writes in the Bundle
            resource = entry.get("resource")
            submitted = (entry.get("request") or {}).get("method", "POST") == "POST" or entry is entries[index]
            if submitted and isinstance(resource, dict) and resource.get("resourceType") in PROFILES:
                meta = resource.setdefault("meta", {})
                claims = meta.setdefault("profile", [])
                wanted = PROFILES[resource["resourceType"]]
                if wanted not in claims and (resource["resourceType"] != "ServiceRequest" or entry is entries[index]):
                    claims.append(wanted)
        referral = entries[index]["resource"]
        extensions = [
            e for e in referral.get("extension", []) if e.get("url") not in (EXT_RECEIVED, EXT_ASSESSMENT_DEADLINE)
        ]
        extensions += [
            {"url": EXT_RECEIVED, "valueDateTime": received.isoformat(timespec="seconds").replace("+00:00", "Z")},
            {"url": EXT_ASSESSMENT_DEADLINE, "valueDateTime": deadline.isoformat()},
        ]
        referral["extension"] = extensions

    def _existing_referral(self, identifier: tuple[str, str]) -> str | None:
        """The sender's own referral with this identifier (a referral's identity includes its sender)."""
        query = f"identifier={identifier[0]}|{identifier[1]}"
        with as_sender():
            found = self.service.conditional_matches(None, "ServiceRequest", query)
        return found[0] if found else None

    def _already_known(self, existing: str, request_count: int, index: int) -> IntakeResult:
        """A referral received before: nothing is stored; each request entry is answered (R4: one response
        entry per request entry), the referral's with where it is and its routing Task."""
        task = self.service.conditional_matches(None, "Task", f"focus=ServiceRequest/{existing}")
        issue = Issue(
            "information",
            "duplicate",
            "this referral (same identifier) was already received; nothing new was stored",
            None,
            "henvisningen (samme identifikator) er allerede mottatt",
        )
        entries: list[dict] = [{"response": {"status": "200 OK"}} for _ in range(request_count)]
        entries[index]["response"]["location"] = f"ServiceRequest/{existing}"
        response = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        one_response_per_request(response, request_count, index, [f"Task/{task[0]}"] if task else [], [issue])
        return IntakeResult(
            200, "duplicate", f"ServiceRequest/{existing}", f"Task/{task[0]}" if task else None, None, response, [issue]
        )

    def _revoke(self, existing: str | None, identifier: tuple[str, str]) -> IntakeResult:
        if existing is None:
            raise FhirError.single(
                404,
                "not-found",
                f"no referral with identifier {identifier[0]}|{identifier[1]} to revoke",
                "ServiceRequest.identifier",
            )
        referral = jsonio.loads(self.service.read("ServiceRequest", existing).body or b"{}")
        referral["status"] = "revoked"
        entries = [{"resource": referral, "request": {"method": "PUT", "url": f"ServiceRequest/{existing}"}}]
        tasks = self.service.conditional_matches(None, "Task", f"focus=ServiceRequest/{existing}")
        for task_id in tasks:
            task = jsonio.loads(self.service.read("Task", task_id).body or b"{}")
            task["status"] = "cancelled"
            task["statusReason"] = {"text": "The referral was revoked by the sender"}
            entries.append({"resource": task, "request": {"method": "PUT", "url": f"Task/{task_id}"}})
        owner = None  # the Organization the referral was routed to: it is told of the revoke
        if tasks:
            task_owner = jsonio.loads(self.service.read("Task", tasks[0]).body or b"{}").get("owner") or {}
            owner = task_owner.get("reference")
        processor = BundleProcessor(self.service)
        response = processor.process(
            {"resourceType": "Bundle", "type": "transaction", "entry": entries},
            after_writes=lambda unit, located: self._deliver(unit, owner, located, "revoke", identifier),
            apply_policies=False,
        )
        return IntakeResult(
            200, "revoke", f"ServiceRequest/{existing}", f"Task/{tasks[0]}" if tasks else None, None, response
        )

    def _service_line(self, suggestions: list) -> str | None:
        for suggestion in suggestions:
            line = SERVICE_LINES.get(suggestion.url)
            if line:
                return line
        return None

    def _organization_resolver(self, entries: list[dict]):  # type: ignore[no-untyped-def]
        by_url = entries_by_reference(entries)

        def resolve(reference: str) -> dict | None:
            if reference in by_url:
                return by_url[reference]
            rtype, _, rid = reference.partition("/")
            try:
                return jsonio.loads(self.service.read(rtype, rid).body or b"{}")
            except FhirError:
                return None

        return resolve

    def _owner(self, decision: RoutingDecision) -> dict:
        if decision.rhf_orgnr:
            org = self.tables_org_id(decision.rhf_orgnr)
            ref = {"identifier": {"system": ORGNR_SYSTEM, "value": decision.rhf_orgnr}, "display": decision.rhf_name}
            if org:
                ref["reference"] = org
            return ref
        return {"reference": TRIAGE_ORGANIZATION, "display": "Manuell triage"}

    def tables_org_id(self, orgnr: str) -> str | None:
        """The stored Organization of an RHF: the one the project's data defines (its id there), cached once
        stored; else the first stored with its organisation number. Other Organizations carrying the same
        number (a sender's copy, a test's) never take its place."""
        if orgnr not in self._org_ids:
            org = self.tables.organizations.get(orgnr)
            if org is not None and self._stored(f"Organization/{org.code}") is not None:
                self._org_ids[orgnr] = f"Organization/{org.code}"
                return self._org_ids[orgnr]
            found = self.service.conditional_matches(None, "Organization", f"identifier={ORGNR_SYSTEM}|{orgnr}")
            return f"Organization/{found[0]}" if found else None
        return self._org_ids[orgnr]


def _load_service_lines() -> dict[str, str]:
    from fhir_server.data import data_folder

    path = data_folder("mappings") / "ConceptMap-pathway-to-service-line.json"
    concept_map = jsonio.loads(path.read_bytes())
    return {e["code"]: e["target"][0]["code"] for g in concept_map["group"] for e in g["element"]}


#: PlanDefinition url → "phv" | "tsb": which catchment table names the HF (data in mappings/).
SERVICE_LINES: dict[str, str] = _load_service_lines()


def _received_of(referral: dict | None) -> datetime | None:
    """The instant a stored referral was first received (its ``no-mottatt-dato`` stamp)."""
    for extension in (referral or {}).get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == EXT_RECEIVED:
            try:
                return datetime.fromisoformat(str(extension.get("valueDateTime")))
            except ValueError:
                return None
    return None
