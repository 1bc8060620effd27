"""What the people's app shows and does, as plain Python over the core interactions (no Flask).

Every read and write here runs under the access the caller has set (:mod:`fhir_server.core.storage.access`):
the same organisation and region rules as the FHIR API. The routing Task (see
:mod:`fhir_server.domain.referral.intake`) is the unit of work: its owner is the region (or the manual-triage
organisation), its inputs name the health trust, the suggested pathways and the routing explanation,
its ``statusReason`` why a person must decide. Actions change the Task through one transaction (the
Task's update, guarded by its version, and a Provenance naming the person who acted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import uuid4

from fhir_server.core import jsonio
from fhir_server.core.bundles.transaction import BundleProcessor
from fhir_server.core.indexing.rows import plain_matches
from fhir_server.core.interactions import FhirService
from fhir_server.core.issues import FhirError
from fhir_server.core.storage.records import StoredResource
from fhir_server.domain.calendar import fhir_oslo_date, oslo_today, working_days_between
from fhir_server.domain.pathways import PathwayCatalog
from fhir_server.domain.referral.intake import EXT_ASSESSMENT_DEADLINE, EXT_RECEIVED
from fhir_server.domain.referral.routing_task import ROUTING_RULE, TASK_INPUT, TRIAGE_ORGANIZATION, task_deadline
from fhir_server.domain.routing.tables import Org, RoutingTables
from fhir_server.naming import ORGNR_SYSTEM, naming_system
from fhir_server.web.i18n import NO_VALUE

#: Volven 9148 (status for henvisning): the business status of an assessed or forwarded referral.
BUSINESS_STATUS_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9148"
FORWARDED = "3"
REJECTED = "4"
#: The codes an acceptance may carry (1 called in, 2 right to care with the date to follow, 11 advice to the GP).
ACCEPT_CODES = ("1", "2", "11")
PAGE_SIZE = 25
STATUSES = ("requested", "accepted", "rejected", "forwarded")
#: Local user names (development sign-in, or an issuer's subject without an HPR number).
WEB_USER_SYSTEM = naming_system("web-user")


@dataclass
class Person:
    """The signed-in person: who they are, which organisation they act for, whether they administer."""

    name: str
    #: HPR number when the issuer names one (HelseID person login), else the local user name.
    ident: str
    orgnr: str
    admin: bool = False
    ident_system: str = WEB_USER_SYSTEM

    def reference(self) -> dict:
        return {"identifier": {"system": self.ident_system, "value": self.ident}, "display": self.name}


@dataclass
class Row:
    """One routing Task with its referral, as a list shows it."""

    task_id: str
    task_version: int
    referral_id: str | None
    patient: str
    status: str
    received: date | None
    deadline: date | None
    days_left: int | None
    owner: str
    health_trust: str | None
    pathways: list[str] = field(default_factory=list)
    explanation: str = ""
    triage_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def overdue(self) -> bool:
        return self.days_left is not None and self.days_left < 0 and self.status == "requested"


@dataclass
class Listing:
    """One page of a list: its rows, its number, and whether another page follows."""

    rows: list[Row]
    page: int
    has_next: bool


@dataclass
class Worklist:
    """The queues and actions of the app over one :class:`FhirService`."""

    service: FhirService
    tables: RoutingTables
    pathways: PathwayCatalog

    # -- organisations ---------------------------------------------------------------------

    def regions(self) -> list[Org]:
        return sorted((o for o in self.tables.organizations.values() if o.kind == "rhf"), key=lambda o: o.name)

    def health_trusts(self, rhf_orgnr: str | None = None) -> list[Org]:
        orgs = [o for o in self.tables.organizations.values() if o.kind == "hf"]
        return sorted((o for o in orgs if rhf_orgnr in (None, o.rhf_orgnr)), key=lambda o: o.name)

    def region_of(self, orgnr: str) -> Org | None:
        org = self.tables.organizations.get(orgnr)
        return self.tables.organizations.get(org.rhf_orgnr) if org else None

    def pathway_title(self, canonical: str) -> str:
        try:
            plan = self.pathways.plan(canonical)
        except KeyError:
            return canonical
        return str(plan.get("title") or plan.get("name") or canonical)

    def pathway_choices(self) -> list[tuple[str, str]]:
        return [(p["url"], str(p.get("title") or p["url"])) for p in self.pathways.plans]

    # -- lists -----------------------------------------------------------------------------

    def triage(self, page: int = 1) -> Listing:
        """The unroutable referrals the caller may see, the earliest deadline first, paged."""
        params = [("owner", TRIAGE_ORGANIZATION), ("status", "requested")]
        return self._listing(params, page)

    def queue(
        self,
        region: Org,
        *,
        health_trust: str | None = None,
        pathway: str | None = None,
        status: str | None = "requested",
        overdue: bool = False,
        page: int = 1,
    ) -> Listing:
        """A region's routing Tasks, the earliest assessment deadline first (past ones on top), filtered and
        paged. The deadline is the Task's own (``Task.restriction.period.end``, search parameter
        ``assessment-deadline``), so the order and the overdue filter are one search on the Tasks."""
        params: list[tuple[str, str]] = [("owner", f"Organization/{region.code}")]
        if status == "forwarded":
            params.append(("business-status", f"{BUSINESS_STATUS_SYSTEM}|{FORWARDED}"))
        elif status in STATUSES:  # requested includes what another region forwarded here: it waits here now
            params.append(("status", status))
        if health_trust:
            params.append(("health-trust", f"{ORGNR_SYSTEM}|{health_trust}"))
        if pathway:
            params.append(("suggested-pathway", pathway))
        if overdue:
            params.append(("assessment-deadline", f"lt{oslo_today().isoformat()}"))
            if status is None:
                params.append(("status", "requested"))
        return self._listing(params, page)

    def _listing(self, params: list[tuple[str, str]], page: int) -> Listing:
        """One page of routing Tasks in deadline order: the page's rows and one more (is there a next page?),
        never a count of all matches, so a page costs what it shows."""
        page = max(1, page)
        found = self.service.search_window(
            "Task",
            [*params, ("_sort", "assessment-deadline"), ("_count", str(PAGE_SIZE + 1)), *_INCLUDES],
            offset=(page - 1) * PAGE_SIZE,
            with_total=False,
        )
        rows = self._rows(found.matches[:PAGE_SIZE], found.included)
        return Listing(rows, page, has_next=len(found.matches) > PAGE_SIZE)

    def _rows(self, tasks: list[StoredResource], included: list[StoredResource]) -> list[Row]:
        by_ref = {f"{r.resource_type}/{r.id}": resource_json(r) for r in included}
        today = oslo_today()
        return [self._row(t, by_ref, today) for t in tasks]

    def _row(self, stored: StoredResource, by_ref: dict[str, dict], today: date) -> Row:
        task = resource_json(stored)
        referral_ref = (task.get("focus") or {}).get("reference", "")
        referral = by_ref.get(referral_ref, {})
        patient = by_ref.get((task.get("for") or {}).get("reference", ""), {})
        deadline = fhir_oslo_date(task_deadline(task) or extension_value(referral, EXT_ASSESSMENT_DEADLINE))
        received = fhir_oslo_date(extension_value(referral, EXT_RECEIVED)) or fhir_oslo_date(task.get("authoredOn"))
        reason = task.get("statusReason") or {}
        return Row(
            task_id=stored.id,
            task_version=stored.version_id,
            referral_id=referral_ref.split("/", 1)[1] if referral_ref.startswith("ServiceRequest/") else None,
            patient=person_name(patient) or NO_VALUE,
            status=task_status(task),
            received=received,
            deadline=deadline,
            days_left=working_days_left(today, deadline),
            owner=(task.get("owner") or {}).get("display") or (task.get("owner") or {}).get("reference", ""),
            health_trust=_health_trust(task),
            pathways=[self.pathway_title(c) for c in task_inputs(task, "suggested-pathway", "valueCanonical")],
            explanation=" ".join(task_inputs(task, "routing-explanation", "valueString")),
            triage_reason=reason.get("text") or _first_display(reason),
            warnings=task_warnings(task),
        )

    # -- a referral ------------------------------------------------------------------------

    def referral(self, referral_id: str) -> dict:
        """A referral, the resources it names, its routing Task(s) with their history, and its CarePlans."""
        referral = resource_json(self.service.read("ServiceRequest", referral_id))
        refs: dict[str, dict] = {}
        for node in _references(referral):
            rtype, _, rid = node.partition("/")
            if rtype and rid and node not in refs:
                try:
                    refs[node] = resource_json(self.service.read(rtype, rid))
                except FhirError:
                    continue
        for party in list(refs.values()):  # who a PractitionerRole is, and where
            if party.get("resourceType") == "PractitionerRole":
                for element in ("practitioner", "organization"):
                    ref = (party.get(element) or {}).get("reference", "")
                    rtype, _, rid = ref.partition("/")
                    if rtype and rid and ref not in refs:
                        try:
                            refs[ref] = resource_json(self.service.read(rtype, rid))
                        except FhirError:
                            continue
        tasks = self._matching("Task", [("focus", f"ServiceRequest/{referral_id}")], 5)
        history = []
        for task in tasks:
            versions, _ = self.service.store.history("Task", task.id, at_most=100)
            history += [
                resource_json(v) | {"_version": v.version_id, "_when": v.last_updated} for v in versions if v.body
            ]
        history.sort(key=lambda t: t["_when"])
        who: dict[str, str] = {}  # when → who, from the Provenances of the Tasks (the intake's, and people's)
        for task in tasks:
            for stored in self._matching("Provenance", [("target", f"Task/{task.id}")], 100):
                provenance = resource_json(stored)
                names = [
                    (a.get("who") or {}).get("display") or (a.get("who") or {}).get("reference")
                    for a in provenance.get("agent") or []
                ]
                who[str(provenance.get("recorded"))] = ", ".join(n for n in names if n)
        for version in history:
            version["_who"] = who.get(str(version.get("lastModified") or version.get("authoredOn")), "")
        patient_ref = (referral.get("subject") or {}).get("reference")
        careplans = []
        if patient_ref:
            for plan in self._matching("CarePlan", [("subject", patient_ref)], 20):
                body = resource_json(plan)
                if f"ServiceRequest/{referral_id}" in _references(body):
                    careplans.append(body)
        return {
            "referral": referral,
            "resources": refs,
            "tasks": [resource_json(t) | {"_version": t.version_id} for t in tasks],
            "history": history,
            "careplans": careplans,
        }

    def _matching(self, resource_type: str, params: list[tuple[str, str]], limit: int) -> list[StoredResource]:
        """The first ``limit`` resources (search order) meeting plain equality conditions, that the caller may
        see: the store's prepared match (its plan fixed on SQLite, where the general search's plan walks
        every resource of the type when the database has no statistics), then a read of each."""
        store = self.service.store
        matches = plain_matches(store.registry, resource_type, params)
        if matches is None:
            raise ValueError(f"not plain equality conditions: {params}")
        return [self.service.read(resource_type, i) for i in store.match_ids(resource_type, matches, limit=limit)]

    # -- actions ---------------------------------------------------------------------------

    def route(self, task_id: str, version: int, person: Person, rhf_orgnr: str, hf_orgnr: str | None) -> None:
        """A person routes an unroutable referral: the Task goes to the region (and health trust) chosen."""
        rhf = self.tables.organizations.get(rhf_orgnr)
        hf = self.tables.organizations.get(hf_orgnr or "")
        if rhf is None or rhf.kind != "rhf":
            raise FhirError.single(422, "value", f"unknown regional health authority {rhf_orgnr}", "Task.owner")
        if hf_orgnr and (hf is None or hf.rhf_orgnr != rhf.orgnr):
            raise FhirError.single(422, "value", f"{hf_orgnr} is not a health trust of {rhf.name}", "Task.input")
        task = self._task(task_id)
        task["owner"] = _org_reference(rhf)
        inputs = [i for i in task.get("input") or [] if _input_code(i) not in ("health-trust", "routing-explanation")]
        if hf is not None:
            inputs.append({"type": _input_type("health-trust"), "valueReference": _org_reference(hf, with_id=False)})
        where = rhf.name + (f", {hf.name}" if hf else "")  # no " / ": it parts the two languages
        text = f"Routed by hand by {person.name} to {where} / Rutet manuelt av {person.name} til {where}"
        inputs.append({"type": _input_type("routing-explanation"), "valueString": text})
        task["input"] = inputs
        task["reasonCode"] = {"coding": [{"system": ROUTING_RULE, "code": "manual-triage"}]}
        for key in ("businessStatus", "statusReason"):
            task.pop(key, None)
        self._write(task, version, person, "manual-triage", text)

    def accept(self, task_id: str, version: int, person: Person, code: str) -> None:
        if code not in ACCEPT_CODES:
            raise FhirError.single(422, "code-invalid", f"'{code}' is no acceptance of Volven 9148", "businessStatus")
        task = self._task(task_id)
        task["status"] = "accepted"
        task["businessStatus"] = self._business_status(code)
        self._write(task, version, person, "accepted", f"accepted ({code})")

    def reject(self, task_id: str, version: int, person: Person, reason: str) -> None:
        task = self._task(task_id)
        task["status"] = "rejected"
        task["businessStatus"] = self._business_status(REJECTED)
        if reason.strip():
            task["statusReason"] = {"text": reason.strip()[:500]}
        self._write(task, version, person, "rejected", reason.strip() or "rejected")

    def forward(self, task_id: str, version: int, person: Person, rhf_orgnr: str) -> None:
        """Forward to another region: the Task's owner changes; it stays requested, business status 3."""
        rhf = self.tables.organizations.get(rhf_orgnr)
        if rhf is None or rhf.kind != "rhf":
            raise FhirError.single(422, "value", f"unknown regional health authority {rhf_orgnr}", "Task.owner")
        task = self._task(task_id)
        task["owner"] = _org_reference(rhf)
        task["status"] = "requested"
        task["businessStatus"] = self._business_status(FORWARDED)
        task["input"] = [i for i in task.get("input") or [] if _input_code(i) != "health-trust"]
        self._write(task, version, person, "forwarded", f"forwarded to {rhf.name}")

    def _business_status(self, code: str) -> dict:
        return {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": code, "display": VOLVEN_9148.get(code, code)}]}

    def _task(self, task_id: str) -> dict:
        return resource_json(self.service.read("Task", task_id))

    def _write(self, task: dict, version: int, person: Person, activity: str, text: str) -> None:
        """The Task's update (only if still at ``version``: else 412) and a Provenance naming the person."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        task["lastModified"] = now
        provenance = {
            "resourceType": "Provenance",
            "target": [{"reference": f"Task/{task['id']}"}],
            "recorded": now,
            "activity": {"text": activity},
            "reason": [{"text": text[:500]}],
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "author",
                            }
                        ]
                    },
                    "who": person.reference(),
                    "onBehalfOf": {"identifier": {"system": ORGNR_SYSTEM, "value": person.orgnr}},
                }
            ],
        }
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": task,
                    "request": {"method": "PUT", "url": f"Task/{task['id']}", "ifMatch": f'W/"{version}"'},
                },
                {
                    "fullUrl": f"urn:uuid:{uuid4()}",
                    "resource": provenance,
                    "request": {"method": "POST", "url": "Provenance"},
                },
            ],
        }
        BundleProcessor(self.service).process(bundle)


def _load_volven_9148() -> dict[str, str]:
    from fhir_server.data import data_folder

    code_system = jsonio.loads((data_folder("terminology") / "CodeSystem-volven-9148.json").read_bytes())
    return {c["code"]: c["display"] for c in code_system["concept"]}


#: code → display of Volven 9148 (terminology/CodeSystem-volven-9148.json)
VOLVEN_9148: dict[str, str] = _load_volven_9148()

_INCLUDES = [("_include", "Task:focus"), ("_include", "Task:patient")]


def task_status(task: dict) -> str:
    """requested, accepted, rejected, forwarded (business status 3), or the Task's own status."""
    codes = {c.get("code") for c in (task.get("businessStatus") or {}).get("coding") or []}
    if task.get("status") == "requested" and FORWARDED in codes:
        return "forwarded"
    return str(task.get("status", ""))


def task_warnings(task: dict) -> list[str]:
    """What the intake warned of when the referral came (the OperationOutcomes a routing Task contains)."""
    return [
        str(issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code"))
        for contained in task.get("contained") or []
        if isinstance(contained, dict) and contained.get("resourceType") == "OperationOutcome"
        for issue in contained.get("issue") or []
        if isinstance(issue, dict)
    ]


def working_days_left(today: date, deadline: date | None) -> int | None:
    """Working days from today to the deadline (0 on the day itself); negative once it has passed."""
    if deadline is None:
        return None
    if deadline >= today:
        return working_days_between(today, deadline)
    return -working_days_between(deadline, today)


def task_inputs(task: dict, code: str, value_key: str) -> list:
    return [i[value_key] for i in task.get("input") or [] if _input_code(i) == code and value_key in i]


def person_name(resource: dict) -> str:
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return ""


def _health_trust(task: dict) -> str | None:
    for ref in task_inputs(task, "health-trust", "valueReference"):
        return ref.get("display") or (ref.get("identifier") or {}).get("value")
    return None


def _input_code(item: dict) -> str | None:
    for coding in (item.get("type") or {}).get("coding") or []:
        if coding.get("system") == TASK_INPUT:
            return coding.get("code")
    return None


def _input_type(code: str) -> dict:
    return {"coding": [{"system": TASK_INPUT, "code": code}]}


def _org_reference(org: Org, *, with_id: bool = True) -> dict:
    ref: dict = {"identifier": {"system": ORGNR_SYSTEM, "value": org.orgnr}, "display": org.name}
    if with_id:
        ref["reference"] = f"Organization/{org.code}"
    return ref


def _first_display(concept: dict) -> str | None:
    for coding in concept.get("coding") or []:
        return coding.get("display") or coding.get("code")
    return None


def extension_value(resource: dict, url: str) -> str | None:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext.get("valueDateTime") or ext.get("valueDate")
    return None


def _references(node: object) -> list[str]:
    """Every relative reference (``Type/id``) in a resource, in order."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and "/" in value and ":" not in value:
                found.append(value)
            else:
                found += _references(value)
    elif isinstance(node, list):
        for item in node:
            found += _references(item)
    return found


def resource_json(stored: StoredResource) -> dict:
    return jsonio.loads(stored.body or b"{}")
