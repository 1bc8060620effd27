"""The one referral pipeline behind every door (FHIR REST, FHIR messaging, Henvisning XML, JSON form).

A referral arrives as a transaction-like Bundle (the doors map their formats to one). The pipeline:

1. finds the referral ServiceRequest (category SNOMED CT 3457005) and its Patient;
2. claims the Norwegian profiles (``meta.profile``) and stamps the received date (Helsenorge
   ``no-mottatt-dato``) and the legal assessment deadline (``no-frist-for-vurdering``, 10 working
   days, pasient- og brukerrettighetsloven § 2-2);
3. validates everything (base rules, identifiers, profiles): any error refuses the whole referral
   with 422 and nothing is stored;
4. is idempotent on the referral's identifier: the same referral again creates nothing new;
   an update replaces it; a revoke marks it revoked and cancels its Task;
5. suggests pathways and routes the referral (RHF, and HF where the catchment data allows);
6. stores the referral, a routing Task (owner: the RHF), a Provenance that says why, and one outbox
   row per regional push Endpoint, in one database transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor, Entry
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError, Issue
from fhir_server.core.storage import access
from fhir_server.core.storage.store import WriteUnit
from fhir_server.domain.calendar import add_working_days
from fhir_server.domain.delivery.outbox import enqueue_deliveries
from fhir_server.domain.pathways import PathwayCatalog, suggest_pathways
from fhir_server.domain.referral.mapping.fhir_aliases import normalise_referral
from fhir_server.domain.routing.decision import RoutingDecision, route
from fhir_server.domain.routing.tables import RoutingTables

log = logging.getLogger(__name__)

HUB = "https://fhir.referral-hub.no"
REFERRAL_CATEGORY = ("http://snomed.info/sct", "3457005")
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
EXT_RECEIVED = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
EXT_ASSESSMENT_DEADLINE = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-vurdering"
TASK_IDENTIFIER_SYSTEM = f"{HUB}/NamingSystem/routing-task"
TASK_INPUT = f"{HUB}/CodeSystem/hub-task-input"
ROUTING_RULE = f"{HUB}/CodeSystem/routing-rule"
PROFILES = {
    "ServiceRequest": f"{HUB}/StructureDefinition/hub-referral-servicerequest",
    "Patient": f"{HUB}/StructureDefinition/hub-referral-patient",
    "Practitioner": f"{HUB}/StructureDefinition/hub-referral-practitioner",
    "Organization": f"{HUB}/StructureDefinition/hub-referral-organization",
}
TASK_PROFILE = f"{HUB}/StructureDefinition/hub-routing-task"
TRIAGE_ORGANIZATION = "Organization/hub-manual-triage"
HUB_ORGANIZATION = "Organization/referral-hub"
ASSESSMENT_WORKING_DAYS = 10
#: identifiers that name one party: fødselsnummer, D-nummer, FH-nummer; HPR; organisasjonsnummer, HER-id
PARTY_SYSTEMS = {
    "Patient": frozenset(
        {"urn:oid:2.16.578.1.12.4.1.4.1", "urn:oid:2.16.578.1.12.4.1.4.2", "urn:oid:2.16.578.1.12.4.1.4.3"}
    ),
    "Practitioner": frozenset({"urn:oid:2.16.578.1.12.4.1.4.4"}),
    "Organization": frozenset({ORGNR_SYSTEM, "urn:oid:2.16.578.1.12.4.1.2"}),
}


def is_referral(resource: Any) -> bool:
    """A ServiceRequest whose category says patient referral (SNOMED CT 3457005)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
        return False
    for category in resource.get("category", []) or []:
        for coding in (category or {}).get("coding", []) or []:
            if (coding.get("system"), coding.get("code")) == REFERRAL_CATEGORY:
                return True
    return False


def submits_referral(bundle: Any) -> bool:
    """A transaction that creates a referral (the FHIR REST door)."""
    if not isinstance(bundle, dict) or bundle.get("type") != "transaction":
        return False
    return any(
        isinstance(e, dict) and (e.get("request") or {}).get("method") == "POST" and is_referral(e.get("resource"))
        for e in bundle.get("entry", []) or []
    )


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
    _org_ids: dict[str, str] = field(default_factory=dict)

    # -- entry point --------------------------------------------------------------------------

    def submit(self, bundle: dict, *, action: str = "create", received: datetime | None = None) -> IntakeResult:
        """Run a referral Bundle through the pipeline (``action``: create, update or revoke)."""
        received = received or datetime.now(UTC)
        bundle, notes = normalise_referral(bundle)
        entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        index = _referral_index(entries)
        referral = entries[index]["resource"]
        identifier = _referral_identifier(referral, index)
        existing = self._existing_referral(identifier)
        if action == "revoke":
            return self._revoke(existing, identifier)
        if existing is not None and action == "create":
            return self._already_known(existing)
        self._prepare(entries, index, received)
        if existing is not None:  # an update of a referral we have: same id, same Task
            entries[index]["request"] = {"method": "PUT", "url": f"ServiceRequest/{existing}"}
            referral["id"] = existing
        else:
            entries[index]["request"] = {
                "method": "POST",
                "url": "ServiceRequest",
                "ifNoneExist": f"identifier={identifier[0]}|{identifier[1]}",
            }
        entries[index].setdefault("fullUrl", f"urn:uuid:{uuid4()}")
        _reuse_known_parties(entries)
        patient = _resolve_patient(entries, referral, self.service)
        conditions = [e["resource"] for e in entries if (e.get("resource") or {}).get("resourceType") == "Condition"]
        suggestions = suggest_pathways(referral, patient or {}, conditions, self.pathways, on_date=received.date())
        decision = route(
            patient,
            referral,
            self.tables,
            self._organization_resolver(entries),
            service_line=self._service_line(suggestions),
        )
        task, task_url = self._task(
            referral,
            entries[index]["fullUrl"],
            patient_reference(referral),
            decision,
            suggestions,
            identifier,
            received,
        )
        task_query = f"identifier={TASK_IDENTIFIER_SYSTEM}|{identifier[1]}"
        task_request = (
            {"method": "PUT", "url": f"Task?{task_query}"}
            if existing
            else {"method": "POST", "url": "Task", "ifNoneExist": task_query}
        )
        entries.append({"fullUrl": task_url, "resource": task, "request": task_request})
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid4()}",
                "resource": _provenance(task_url, entries[index]["fullUrl"], decision, received, action),
                "request": {"method": "POST", "url": "Provenance"},
            }
        )
        event = "update" if existing else "create"
        owner = self._owner(decision).get("reference") if decision.rhf_orgnr else None
        response = self._store(entries, event, identifier, owner, notes, decision.rhf_orgnr)
        return IntakeResult(
            200 if existing else 201,
            event,
            _location(response, "ServiceRequest"),
            _location(response, "Task"),
            decision,
            response,
            notes,
        )

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
        )
        notes.extend(_stored_anew_note(index, resource_type) for index, resource_type in ambiguous.items())
        return response

    def _deliver(
        self, unit: WriteUnit, owner: str | None, stored: list, event: str, identifier: tuple[str, str]
    ) -> None:
        """Queue the push to the owner's endpoints: the server's own work, whoever sent the referral."""
        with access.acting_as(access.SYSTEM):
            enqueue_deliveries(unit, self.service, owner, stored, event, identifier)

    # -- steps --------------------------------------------------------------------------------

    def _prepare(self, entries: list[dict], index: int, received: datetime) -> None:
        """Claim the Norwegian profiles; stamp the received date and the assessment deadline."""
        for entry in entries:  # the resources the referral brings (POSTed), not other writes in the Bundle
            resource = entry.get("resource")
            submitted = (entry.get("request") or {}).get("method", "POST") == "POST"
            if submitted and isinstance(resource, dict) and resource.get("resourceType") in PROFILES:
                meta = resource.setdefault("meta", {})
                claims = meta.setdefault("profile", [])
                wanted = PROFILES[resource["resourceType"]]
                if wanted not in claims and (resource["resourceType"] != "ServiceRequest" or entry is entries[index]):
                    claims.append(wanted)
        referral = entries[index]["resource"]
        deadline = add_working_days(received.date(), ASSESSMENT_WORKING_DAYS)
        extensions = [
            e for e in referral.get("extension", []) if e.get("url") not in (EXT_RECEIVED, EXT_ASSESSMENT_DEADLINE)
        ]
        extensions += [
            {"url": EXT_RECEIVED, "valueDateTime": received.isoformat(timespec="seconds").replace("+00:00", "Z")},
            {"url": EXT_ASSESSMENT_DEADLINE, "valueDateTime": f"{deadline.isoformat()}T23:59:59+01:00"},
        ]
        referral["extension"] = extensions

    def _existing_referral(self, identifier: tuple[str, str]) -> str | None:
        found = self.service.conditional_matches(None, "ServiceRequest", f"identifier={identifier[0]}|{identifier[1]}")
        return found[0] if found else None

    def _already_known(self, existing: str) -> IntakeResult:
        task = self.service.conditional_matches(None, "Task", f"focus=ServiceRequest/{existing}")
        response = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [
                {"response": {"status": "200 OK", "location": f"ServiceRequest/{existing}"}},
                *([{"response": {"status": "200 OK", "location": f"Task/{task[0]}"}}] if task else []),
            ],
        }
        issue = Issue(
            "information",
            "duplicate",
            "this referral (same identifier) was already received; nothing new was stored",
            None,
            "henvisningen (samme identifikator) er allerede mottatt",
        )
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
        by_url = {e.get("fullUrl"): e.get("resource") for e in entries if e.get("fullUrl")}

        def resolve(reference: str) -> dict | None:
            if reference in by_url:
                return by_url[reference]
            rtype, _, rid = reference.partition("/")
            try:
                return jsonio.loads(self.service.read(rtype, rid).body or b"{}")
            except FhirError:
                return None

        return resolve

    def _task(
        self,
        referral: dict,
        referral_url: str,
        patient_ref: str | None,
        decision: RoutingDecision,
        suggestions: list,
        identifier: tuple[str, str],
        received: datetime,
    ) -> tuple[dict, str]:
        owner = self._owner(decision)
        inputs: list[dict] = [{"type": _code("suggested-pathway"), "valueCanonical": s.canonical} for s in suggestions]
        if decision.hf_orgnr:
            inputs.append(
                {
                    "type": _code("health-trust"),
                    "valueReference": {
                        "identifier": {"system": ORGNR_SYSTEM, "value": decision.hf_orgnr},
                        "display": decision.hf_name,
                    },
                }
            )
        inputs.append(
            {
                "type": _code("routing-explanation"),
                "valueString": f"{decision.explanation.get('en', '')} / {decision.explanation.get('nb', '')}",
            }
        )
        task = {
            "resourceType": "Task",
            "meta": {"profile": [TASK_PROFILE]},
            "identifier": [{"system": TASK_IDENTIFIER_SYSTEM, "value": identifier[1]}],
            "status": "requested",
            "intent": "order",
            "priority": referral.get("priority", "routine"),
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": referral_url},
            "authoredOn": received.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "requester": referral.get("requester") or {"reference": HUB_ORGANIZATION},
            "owner": owner,
            "reasonCode": {"coding": [{"system": ROUTING_RULE, "code": routing_rule(decision)}]},
            "input": inputs,
        }
        if patient_ref:
            task["for"] = {"reference": patient_ref}
        if decision.triage and not decision.rhf_orgnr:
            task["businessStatus"] = {"text": "manual-triage: " + (decision.triage_reason or "")}
        return task, f"urn:uuid:{uuid4()}"

    def _owner(self, decision: RoutingDecision) -> dict:
        if decision.rhf_orgnr:
            org = self.tables_org_id(decision.rhf_orgnr)
            ref = {"identifier": {"system": ORGNR_SYSTEM, "value": decision.rhf_orgnr}, "display": decision.rhf_name}
            if org:
                ref["reference"] = org
            return ref
        return {"reference": TRIAGE_ORGANIZATION, "display": "Manuell triage"}

    def tables_org_id(self, orgnr: str) -> str | None:
        """The stored Organization of an RHF (cached: they are the project's own data, loaded at start)."""
        if orgnr not in self._org_ids:
            found = self.service.conditional_matches(None, "Organization", f"identifier={ORGNR_SYSTEM}|{orgnr}")
            if not found:
                return None
            self._org_ids[orgnr] = f"Organization/{found[0]}"
        return self._org_ids[orgnr]


def routing_rule(decision: RoutingDecision) -> str:
    """The rule that chose the owner: a region known but its health trust undecided still routes by home."""
    if decision.triage and decision.rhf_orgnr:
        inputs = decision.inputs
        renumbered = inputs.get("kommunenummer") != inputs.get("kommunenummer_2024")
        return "pre2024-municipality" if renumbered else "home-municipality"
    return decision.rule


def _code(code: str) -> dict:
    return {"coding": [{"system": TASK_INPUT, "code": code}]}


def _referral_index(entries: list) -> int:
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and is_referral(entry.get("resource")):
            return i
    raise FhirError.single(
        422,
        "required",
        "the Bundle holds no referral: a ServiceRequest with category SNOMED CT 3457005",
        "Bundle.entry",
    )


def _referral_identifier(referral: dict, index: int) -> tuple[str, str]:
    for identifier in referral.get("identifier", []) or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return identifier["system"], identifier["value"]
    raise FhirError.single(
        422,
        "required",
        "a referral needs an identifier (system and value) so that it is never stored twice",
        f"Bundle.entry[{index}].resource.identifier",
        diagnostics_nb="en henvisning må ha en identifikator (system og verdi)",
    )


def patient_reference(referral: dict) -> str | None:
    reference = (referral.get("subject") or {}).get("reference")
    return reference if isinstance(reference, str) else None


def _resolve_patient(entries: list[dict], referral: dict, service: FhirService) -> dict | None:
    reference = patient_reference(referral)
    if not reference:
        return None
    for entry in entries:
        if entry.get("fullUrl") == reference:
            return entry.get("resource")
    if reference.startswith("Patient/"):
        try:
            return jsonio.loads(service.read("Patient", reference.split("/")[1]).body or b"{}")
        except FhirError:
            return None
    return None


def _reuse_known_parties(entries: list[dict]) -> None:
    """Patients, practitioners and organisations with a national identifier are created only if new:
    a POST becomes a conditional create on that identifier."""
    for entry in entries:
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        systems = PARTY_SYSTEMS.get(resource.get("resourceType", ""))
        if not systems or request.get("method") != "POST" or request.get("ifNoneExist"):
            continue
        for identifier in resource.get("identifier", []) or []:
            if isinstance(identifier, dict) and identifier.get("system") in systems and identifier.get("value"):
                request["ifNoneExist"] = f"identifier={identifier['system']}|{identifier['value']}"
                break


def _stored_anew_note(index: int, resource_type: str) -> Issue:
    """What the sender is told of a party whose identifier several stored resources carry."""
    return Issue(
        "information",
        "informational",
        f"several {resource_type} resources carry this identifier; the referral's copy was stored as a new one",
        f"Bundle.entry[{index}].resource.identifier",
    )


def _provenance(task_url: str, referral_url: str, decision: RoutingDecision, received: datetime, action: str) -> dict:
    inputs = ", ".join(f"{k}={v}" for k, v in decision.inputs.items())
    return {
        "resourceType": "Provenance",
        "target": [{"reference": task_url}, {"reference": referral_url}],
        "recorded": received.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE" if action == "create" else "UPDATE",
                }
            ]
        },
        "reason": [
            {
                "coding": [{"system": ROUTING_RULE, "code": routing_rule(decision)}],
                "text": f"rule {routing_rule(decision)}; inputs: {inputs or 'none'}"
                + (f"; {decision.triage_reason}" if decision.triage_reason else ""),
            }
        ],
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {"reference": HUB_ORGANIZATION},
            }
        ],
        "entity": [{"role": "source", "what": {"reference": referral_url}}],
    }


def _location(response: dict, rtype: str) -> str:
    for entry in response.get("entry", []):
        location = (entry.get("response") or {}).get("location", "")
        if location.startswith(rtype + "/"):
            return location.split("/_history")[0]
    return ""


def _load_service_lines() -> dict[str, str]:
    from fhir_server.data import data_folder

    path = data_folder("mappings") / "ConceptMap-pathway-to-service-line.json"
    concept_map = jsonio.loads(path.read_bytes())
    return {e["code"]: e["target"][0]["code"] for g in concept_map["group"] for e in g["element"]}


#: PlanDefinition url → "phv" | "tsb": which catchment table names the HF (data in mappings/).
SERVICE_LINES: dict[str, str] = _load_service_lines()
