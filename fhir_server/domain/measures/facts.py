"""The per-referral fact table measures are computed from, kept on the write path.

One row per referral (``referral_facts``), updated inside the transaction of every write that
changes a fact, by a store write hook (:func:`facts_follow_writes`), like the region labels:

* a referral ``ServiceRequest``: its patient, status, the received date (``no-mottatt-dato``), the
  legal assessment deadline (``no-frist-for-vurdering``), the individual deadline for health care
  (``no-frist-for-helsehjelp``), and the patient's age group (at the received date) and sex;
* its routing ``Task`` (``focus``): the region (owner RHF), the health trust (the ``health-trust``
  input), the first suggested pathway (the row's pathway until a CarePlan names one), and the date
  the Task was decided (``decided``: the first
  write that leaves requested/received, e.g. accepted or rejected without a CarePlan);
* a pathway ``CarePlan`` (``supportingInfo`` names the referral): the pathway (its project
  ``pathway-type`` code), and the completion and due dates of the milestones with a time target.

Dates are stored as day numbers (:meth:`datetime.date.toordinal`, Norwegian dates), so both databases
compare and subtract them the same way. Measures read only this table (:mod:`.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import lru_cache, partial

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, select

from fhir_server.core import jsonio
from fhir_server.core.indexing.rows import parse_reference
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.core.storage.db import Database
from fhir_server.core.storage.schema import resources
from fhir_server.core.storage.store import Store, WriteUnit
from fhir_server.domain.calendar import fhir_oslo_date
from fhir_server.domain.pathways.state import completion_date
from fhir_server.domain.referral.intake import EXT_ASSESSMENT_DEADLINE, EXT_RECEIVED
from fhir_server.domain.referral.referral_bundle import is_referral
from fhir_server.domain.referral.routing_task import TASK_IDENTIFIER_SYSTEM
from fhir_server.naming import ORGNR_SYSTEM, code_system

EXT_CARE_DEADLINE = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-helsehjelp"
PATHWAY_TYPE_SYSTEM = code_system("pathway-type")
#: Task statuses that mean the referral is not decided yet.
_UNDECIDED = frozenset({"draft", "requested", "received", "ready"})
#: Milestones with a time target whose dates the table keeps: activity id → column prefix.
MILESTONE_COLUMNS = {
    "first-attendance": "first_attendance",
    "clinical-decision": "clinical_decision",
    "first-evaluation": "first_evaluation",
}
#: Age groups (whole years at the received date): lower bound → label; the last is open-ended.
AGE_GROUPS = ((0, "0-17"), (18, "18-22"), (23, "23-64"), (65, "65+"))

#: The stratifier columns, first in the covering index.
STRATUM_COLUMNS = ("region", "health_trust", "pathway", "age_group", "sex")
_OTHER_COLUMNS = (
    "waiting_days",
    "patient_id",
    "patient_referrals",
    "status",
    "received",
    "assessment_deadline",
    "assessed",
    "decided",
    "pathway_start",
    "care_deadline",
    *(name for prefix in MILESTONE_COLUMNS.values() for name in (prefix, f"{prefix}_due")),
)

metadata = MetaData()

referral_facts = Table(
    "referral_facts",
    metadata,
    Column("referral_id", String(64), primary_key=True),
    Column("patient_id", String(64)),
    #: how many referrals this row's patient has (all of them): bounds the patients of a stratum from below
    Column("patient_referrals", Integer),
    Column("status", String(32)),
    Column("region", String(16)),
    Column("health_trust", String(16)),
    Column("pathway", String(64)),
    Column("age_group", String(8)),
    Column("sex", String(16)),
    Column("received", Integer),
    #: days from received to first attendance (kept with both; in the covering index, for the waiting-time measures)
    Column("waiting_days", Integer),
    Column("assessment_deadline", Integer),
    Column("assessed", Integer),
    Column("decided", Integer),
    Column("pathway_start", Integer),
    Column("care_deadline", Integer),
    *(Column(name, Integer) for prefix in MILESTONE_COLUMNS.values() for name in (prefix, f"{prefix}_due")),
    # evaluation reads only this index: its rows come in stratum order (one GROUP BY over every stratifier
    # streams without a sort on SQLite), and a region's rows are one range of it
    Index("ix_referral_facts_strata", *STRATUM_COLUMNS, *_OTHER_COLUMNS),
    Index("ix_referral_facts_patient", "patient_id"),
)


def ensure_fact_table(db: Database) -> None:
    """Create the fact table where it is missing (the server's own schema is :mod:`core.storage.schema`)."""
    with db.write.begin() as conn:
        metadata.create_all(conn)


def day(value: date | None) -> int | None:
    """A date as the day number stored in the table."""
    return value.toordinal() if value else None


def _extension_day(resource: dict, url: str) -> int | None:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            return day(fhir_oslo_date(ext.get("valueDateTime") or ext.get("valueDate")))
    return None


def _local_id(reference: object, resource_type: str) -> str | None:
    """The id of ``reference`` when it names a ``resource_type`` on this server."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(text, str) or ":" in text:
        return None
    rtype, rid, _ = parse_reference(text)
    return rid if rtype == resource_type and rid else None


def age_group(birth: date | None, on: date | None) -> str | None:
    """The age group of someone born on ``birth``, on the day ``on``."""
    if birth is None or on is None:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    label = None
    for lower, name in AGE_GROUPS:
        if years >= lower:
            label = name
    return label


def referral_facts_of(referral: dict, patient: dict | None) -> dict:
    """The facts a referral ServiceRequest (and its patient) gives."""
    received = _extension_day(referral, EXT_RECEIVED)
    birth = fhir_oslo_date((patient or {}).get("birthDate"))
    gender = (patient or {}).get("gender")
    return {
        "patient_id": _local_id(referral.get("subject"), "Patient"),
        "status": referral.get("status"),
        "received": received,
        "assessment_deadline": _extension_day(referral, EXT_ASSESSMENT_DEADLINE),
        "care_deadline": _extension_day(referral, EXT_CARE_DEADLINE),
        "age_group": age_group(birth, date.fromordinal(received) if received else None),
        "sex": gender if isinstance(gender, str) else None,
    }


def task_facts_of(task: dict, written_on: date | None) -> dict:
    """The facts a routing Task gives: region, health trust, suggested pathway, when it was decided."""
    owner = task.get("owner")
    owner = owner if isinstance(owner, dict) else {}
    identifier = owner.get("identifier")
    identifier = identifier if isinstance(identifier, dict) else {}
    facts: dict = {"region": identifier.get("value") if identifier.get("system") == ORGNR_SYSTEM else None}
    facts["health_trust"] = None
    facts["pathway"] = None  # the first suggested pathway, until a CarePlan names the pathway
    for item in task.get("input") or []:
        code = ((item.get("type") or {}).get("coding") or [{}])[0].get("code")
        if code == "health-trust":
            ident = (item.get("valueReference") or {}).get("identifier") or {}
            facts["health_trust"] = ident.get("value")
        elif code == "suggested-pathway" and facts["pathway"] is None:
            url = str(item.get("valueCanonical", "")).split("|")[0]
            facts["pathway"] = url.rsplit("/", 1)[-1] or None
    if task.get("status") not in _UNDECIDED:
        decided = fhir_oslo_date(task.get("lastModified")) or written_on
        facts["decided"] = day(decided)
    return facts


def careplan_facts_of(careplan: dict) -> dict:
    """The facts a pathway CarePlan gives: its pathway and the dates of its milestones."""
    pathway = None
    for category in careplan.get("category") or []:
        for coding in (category or {}).get("coding") or []:
            if coding.get("system") == PATHWAY_TYPE_SYSTEM:
                pathway = coding.get("code")
    if pathway is None and careplan.get("instantiatesCanonical"):
        pathway = str(careplan["instantiatesCanonical"][0]).split("|")[0].rsplit("/", 1)[-1]
    facts: dict = {"pathway": pathway}
    activities = {a.get("id"): a for a in careplan.get("activity") or [] if isinstance(a, dict) and "detail" in a}

    def done(activity_id: str) -> int | None:
        activity = activities.get(activity_id)
        if activity is None or activity["detail"].get("status") != "completed":
            return None
        return day(completion_date(activity))

    facts["assessed"] = done("referral-assessed")
    facts["pathway_start"] = done("pathway-start")
    for activity_id, prefix in MILESTONE_COLUMNS.items():
        activity = activities.get(activity_id)
        due = (activity or {}).get("detail", {}).get("scheduledPeriod", {}).get("end")
        facts[prefix] = done(activity_id)
        facts[f"{prefix}_due"] = day(fhir_oslo_date(due))
    return facts


def upsert(unit: WriteUnit, referral_id: str, facts: dict, *, keep: tuple[str, ...] = ()) -> None:
    """Set ``facts`` on the referral's row (created when missing), in the write's transaction; the
    columns named in ``keep`` are only filled, never replaced. The waiting days follow the received and
    first-attendance days in the same statement."""
    names = tuple(facts)
    sql = _upsert_sql(unit.store.dialect.mark, names, tuple(k for k in keep if k in facts))
    waiting = None
    if (
        "received" in facts
        and "first_attendance" in facts
        and None not in (facts["received"], facts["first_attendance"])
    ):
        waiting = facts["first_attendance"] - facts["received"]
    unit.run(sql, (referral_id, *(facts[n] for n in names), waiting))


@lru_cache(maxsize=64)
def _upsert_sql(mark: str, names: tuple[str, ...], keep: tuple[str, ...]) -> str:
    """``INSERT … ON CONFLICT DO UPDATE`` of ``names`` (SQLite and PostgreSQL spell it alike): replaced, or
    for ``keep`` only filled; ``waiting_days`` recomputed when either of its days is set."""
    table = referral_facts.name

    def new_value(name: str) -> str:
        if name in keep:
            return f"COALESCE({table}.{name}, excluded.{name})"
        return f"excluded.{name}" if name in names else f"{table}.{name}"

    sets = [f"{n} = {new_value(n)}" for n in names]
    if "received" in names or "first_attendance" in names:
        sets.append(f"waiting_days = {new_value('first_attendance')} - {new_value('received')}")
    columns = ", ".join(("referral_id", *names, "waiting_days"))
    marks = ", ".join([mark] * (len(names) + 2))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT (referral_id) DO UPDATE SET {', '.join(sets) or 'referral_id = excluded.referral_id'}"
    )


def _read(unit: WriteUnit, resource_type: str, resource_id: str | None) -> dict | None:
    if not resource_id:
        return None
    try:
        with access.acting_as(access.SYSTEM):
            body = unit.read(resource_type, resource_id).body
    except FhirError:
        return None
    return jsonio.loads(body) if body else None


def _referral_of_task(task: dict) -> str | None:
    if not any(isinstance(i, dict) and i.get("system") == TASK_IDENTIFIER_SYSTEM for i in task.get("identifier") or []):
        return None
    return _local_id(task.get("focus"), "ServiceRequest")


def _referral_of_careplan(careplan: dict) -> str | None:
    for info in careplan.get("supportingInfo") or []:
        found = _local_id(info, "ServiceRequest")
        if found:
            return found
    return None


def _count_referrals_of(unit: WriteUnit, patient_id: str) -> None:
    """Store on each of the patient's rows how many referrals the patient has."""
    mark, table = unit.store.dialect.mark, referral_facts.name
    unit.run(
        f"UPDATE {table} SET patient_referrals = (SELECT count(*) FROM {table} WHERE patient_id = {mark}) "
        f"WHERE patient_id = {mark}",
        (patient_id, patient_id),
    )


def facts_follow_writes() -> Callable[[WriteUnit, dict], None]:
    """A store write hook: keep the referral's fact row up to date with each write that changes a fact.

    The facts are taken from the resource as it is put; their row is written when the write's other work is
    done (:meth:`WriteUnit.at_end`, still in its transaction), so the unit sends its inserts once, not once per
    resource a fact follows."""

    def hook(unit: WriteUnit, resource: dict) -> None:
        rtype = resource.get("resourceType")
        if rtype == "ServiceRequest" and is_referral(resource):
            patient = _read(unit, "Patient", _local_id(resource.get("subject"), "Patient"))
            facts = referral_facts_of(resource, patient)
            unit.at_end(partial(_write_referral_facts, unit, str(resource["id"]), facts))
        elif rtype == "Task" and (referral_id := _referral_of_task(resource)):
            written = fhir_oslo_date((resource.get("meta") or {}).get("lastUpdated"))
            # a CarePlan's pathway outranks the suggestion; the first decision counts, a later update does not move it
            facts = task_facts_of(resource, written)
            unit.at_end(partial(upsert, unit, referral_id, facts, keep=("pathway", "decided")))
        elif rtype == "CarePlan" and (referral_id := _referral_of_careplan(resource)):
            unit.at_end(partial(upsert, unit, referral_id, careplan_facts_of(resource)))

    return hook


def _write_referral_facts(unit: WriteUnit, referral_id: str, facts: dict) -> None:
    upsert(unit, referral_id, facts)
    if facts["patient_id"]:
        _count_referrals_of(unit, facts["patient_id"])


def fill_missing_facts(store: Store, batch: int = 500) -> int:
    """Build the fact table from the stored resources when it is empty but referrals are stored (a database
    from before the measures, or a restored one); returns how many resources were read. Idempotent."""
    hook = facts_follow_writes()
    with store.db.read.connect() as conn:
        if conn.execute(select(referral_facts.c.referral_id).limit(1)).first() is not None:
            return 0
    read = 0
    for rtype in ("ServiceRequest", "Task", "CarePlan"):  # the referral first: its row, then what adds to it
        after = ""
        while True:
            with store.db.read.connect() as conn:
                rows = conn.execute(
                    select(resources.c.res_id, resources.c.body)
                    .where(resources.c.res_type == rtype, resources.c.res_id > after, resources.c.deleted.is_(False))
                    .order_by(resources.c.res_id)
                    .limit(batch)
                ).all()
            if not rows:
                break
            bodies = [jsonio.loads(body) for _, body in rows if body]

            def apply(unit: WriteUnit, bodies: list[dict] = bodies) -> None:
                with access.acting_as(access.SYSTEM):
                    for body in bodies:
                        hook(unit, body)

            store.write(apply)
            read += len(rows)
            after = rows[-1][0]
    return read
