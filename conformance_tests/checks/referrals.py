"""Areas ``profiles``, ``validate``, ``referral`` and ``pathways``: the referral hub's own behaviour.

Each check SKIPs, saying why, when the CapabilityStatement does not declare what it needs.
"""

from __future__ import annotations

import copy
import uuid

from conformance_tests.client import Client
from conformance_tests.fhirdata import (
    declares_operation,
    entries,
    interactions_of,
    load,
    patient,
    rest_of,
    supported_profiles,
    tagged,
)
from conformance_tests.registry import CheckFailed, check, expect, skip

#: The routing Task profile: a server declaring it on Task routes each submitted referral to a Task.
ROUTING_TASK_PROFILE = "https://fhir.referral-hub.no/StructureDefinition/hub-routing-task"
#: The identifier system of the corpus referrals (the kit's own, not a national one).
REFERRAL_ID_SYSTEM = "urn:conformance-kit:referral-id"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
#: The RHF the corpus patient (Bergen, municipality 4601, county 46 Vestland) belongs to: Helse Vest RHF.
HELSE_VEST_ORGNR = "983658725"


def _error_issues(outcome: dict) -> list[dict]:
    return [i for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]


# -- profiles --------------------------------------------------------------------------------------------


@check("profiles", "served")
def profiles_served(client: Client) -> None:
    """Every supportedProfile in the CapabilityStatement is served as a StructureDefinition (search by url)."""
    caps = client.capabilities()
    declared = supported_profiles(caps)
    if not declared:
        skip("the CapabilityStatement declares no supportedProfile")
    if "search-type" not in interactions_of(caps, "StructureDefinition"):
        skip("the CapabilityStatement does not declare search-type on StructureDefinition")
    problems = []
    for rtype, urls in declared.items():
        for url in urls:
            canonical = url.split("|")[0]
            found = entries(client.search("StructureDefinition", {"url": canonical}))
            if len(found) != 1:
                problems.append(f"{canonical} (declared for {rtype}): {len(found)} StructureDefinitions found")
                continue
            sd = found[0]
            if sd.get("url") != canonical:
                problems.append(f"{canonical}: the StructureDefinition found has url {sd.get('url')!r}")
            elif sd.get("type") != rtype:
                problems.append(f"{canonical}: declared for {rtype} but constrains {sd.get('type')!r}")
    expect(not problems, "; ".join(problems))


# -- $validate ---------------------------------------------------------------------------------------------


def _validate(client: Client, item: dict) -> tuple[int, dict]:
    resource = load(f"referrals/{item['file']}")
    r = client.post(f"{item['type']}/$validate", resource)
    expect(
        r.status_code in (200, 400, 422), f"$validate {item['file']}: expected 200 (or 400/422); {client.describe(r)}"
    )
    outcome = client.json_of(r)
    if outcome.get("resourceType") == "Parameters":
        outcome = next((p.get("resource") for p in outcome.get("parameter", []) if p.get("name") == "return"), {})
    expect(
        outcome.get("resourceType") == "OperationOutcome",
        f"$validate {item['file']}: expected an OperationOutcome; {client.describe(r)}",
    )
    return r.status_code, outcome


def _corpus(valid: bool) -> list[dict]:
    return [item for item in load("referrals/corpus.json")["items"] if item["valid"] is valid]


def _need_validate(client: Client) -> None:
    if not declares_operation(client.capabilities(), "validate"):
        skip("the CapabilityStatement declares no $validate operation")


@check("validate", "valid_referrals")
def validate_valid_referrals(client: Client) -> None:
    """``$validate`` accepts each valid referral of the kit's corpus: no error or fatal issue."""
    _need_validate(client)
    problems = []
    for item in _corpus(True):
        status, outcome = _validate(client, item)
        errors = _error_issues(outcome)
        if status != 200 or errors:
            shown = [f"{i.get('expression')}: {i.get('diagnostics')}" for i in errors][:3]
            problems.append(f"{item['file']} ({item['why']}) -> {status} with errors {shown}")
    expect(not problems, f"valid referrals refused by $validate: {'; '.join(problems)}")


@check("validate", "invalid_referrals")
def validate_invalid_referrals(client: Client) -> None:
    """``$validate`` refuses each invalid referral of the corpus with an error naming the bad element."""
    _need_validate(client)
    problems = []
    for item in _corpus(False):
        _, outcome = _validate(client, item)
        errors = _error_issues(outcome)
        wanted = item["expression"]
        named = [x for i in errors for x in i.get("expression", []) or []]
        if not errors:
            problems.append(f"{item['file']} ({item['why']}): no error issue")
        elif not any(x.startswith(wanted) for x in named):
            problems.append(f"{item['file']} ({item['why']}): no error names {wanted}; expressions {named}")
    expect(not problems, f"invalid referrals not caught by $validate: {'; '.join(problems)}")


# -- the referral flow -------------------------------------------------------------------------------------


def _org_chain_orgnrs(client: Client, reference: dict) -> list[str]:
    """Organisation numbers of the Organization ``reference`` names and of its partOf parents (3 levels).

    A literal reference decides (the Organization is read); a logical identifier counts only without one.
    """
    out: list[str] = []
    ref: dict | None = reference
    for _ in range(3):
        if not ref:
            break
        target = ref.get("reference")
        if not target:
            ident = ref.get("identifier") or {}
            if ident.get("system") == ORGNR_SYSTEM:
                out.append(ident.get("value"))
            break
        if target.split("/")[-2:-1] != ["Organization"]:
            break
        r = client.get(target)
        if r.status_code != 200:
            break
        org = client.json_of(r)
        out += [i.get("value") for i in org.get("identifier", []) if i.get("system") == ORGNR_SYSTEM]
        ref = org.get("partOf")
    return out


def _declares_routing(caps: dict) -> bool:
    task = next((r for r in rest_of(caps).get("resource", []) or [] if r.get("type") == "Task"), {})
    return ROUTING_TASK_PROFILE in [p.split("|")[0] for p in task.get("supportedProfile", []) or []]


@check("referral", "flow")
def referral_flow(client: Client) -> None:
    """Submit a referral transaction → a routed Task (owner Helse Vest or its HF) → the region finds it → accepts."""
    caps = client.capabilities()
    _need_routing(client)
    if "transaction" not in {i.get("code") for i in rest_of(caps).get("interaction", []) or []}:
        skip("the CapabilityStatement does not declare the transaction interaction (the referral door)")
    missing = {"search-type", "update"} - interactions_of(caps, "Task")
    if missing:
        skip(f"the CapabilityStatement does not declare {', '.join(sorted(missing))} on Task")
    tag = client.new_tag()
    bundle = copy.deepcopy(load("referrals/valid-referral-bundle.json"))
    for entry in bundle["entry"]:
        tagged(entry["resource"], tag)
    sr = bundle["entry"][3]["resource"]
    referral_key = f"ck-{uuid.uuid4()}"
    sr["identifier"][0]["value"] = referral_key
    r = client.post("", bundle)
    body = client.expect_status(r, 200, 201, what="submit the referral transaction (POST [base])")
    for e in (body or {}).get("entry", []) or []:
        client.track((e.get("response") or {}).get("location"))
    client.track(r.headers.get("Location"))
    stored = entries(client.search("ServiceRequest", {"identifier": f"{REFERRAL_ID_SYSTEM}|{referral_key}"}))
    expect(
        len(stored) == 1, f"referral: after the submit, ServiceRequest?identifier=…|{referral_key} finds {len(stored)}"
    )
    sr_id = stored[0]["id"]
    client.track(f"ServiceRequest/{sr_id}")

    tasks = entries(client.search("Task", {"focus": f"ServiceRequest/{sr_id}"}))
    expect(
        len(tasks) == 1, f"referral: expected one routing Task with focus ServiceRequest/{sr_id}, found {len(tasks)}"
    )
    routed = tasks[0]
    client.track(f"Task/{routed['id']}")
    status = routed.get("status")
    expect(status in ("requested", "ready"), f"routing Task/{routed['id']}: status {status!r}, expected requested")
    owner = routed.get("owner") or {}
    expect(owner, f"routing Task/{routed['id']} has no owner")
    orgnrs = _org_chain_orgnrs(client, owner)
    expect(
        HELSE_VEST_ORGNR in orgnrs,
        f"routing: a patient in Bergen (4601) belongs to Helse Vest RHF {HELSE_VEST_ORGNR}; the Task owner "
        f"{owner} has organisation numbers {orgnrs}",
    )

    if owner.get("reference"):
        name, value = "owner", owner["reference"]
    else:
        name, value = "owner:identifier", f"{ORGNR_SYSTEM}|{owner['identifier']['value']}"
    queue = entries(client.search("Task", {name: value, "status": status, "focus": f"ServiceRequest/{sr_id}"}))
    expect(
        [t.get("id") for t in queue] == [routed["id"]],
        f"region pull Task?{name}={value}&status={status}: expected [{routed['id']}], "
        f"got {[t.get('id') for t in queue]}",
    )

    version = (routed.get("meta") or {}).get("versionId")
    headers = {"If-Match": f'W/"{version}"'} if version else {}
    r = client.put(f"Task/{routed['id']}", dict(routed, status="accepted"), headers=headers)
    client.expect_status(r, 200, what="the region accepts the Task (PUT status accepted)")
    after = client.expect_status(client.get(f"Task/{routed['id']}"), 200, what="read the accepted Task")
    expect(after.get("status") == "accepted", f"accepted Task reads back with status {after.get('status')!r}")


def _need_routing(client: Client) -> None:
    caps = client.capabilities()
    if not _declares_routing(caps):
        skip(f"the CapabilityStatement does not declare the routing Task profile {ROUTING_TASK_PROFILE} on Task")


def _corpus_referral(name: str, tag: str) -> tuple[dict, str]:
    """A corpus referral Bundle, tagged, with a fresh referral identifier (returned too)."""
    bundle = copy.deepcopy(load(f"referrals/{name}"))
    for entry in bundle["entry"]:
        tagged(entry["resource"], tag)
    key = f"ck-{uuid.uuid4()}"
    bundle["entry"][3]["resource"]["identifier"][0]["value"] = key
    return bundle, key


@check("referral", "idempotent")
def referral_idempotent(client: Client) -> None:
    """The same referral submitted twice gives one ServiceRequest and one routing Task."""
    _need_routing(client)
    bundle, key = _corpus_referral("valid-referral-bundle.json", client.new_tag())
    for attempt in ("first", "second"):
        r = client.post("", bundle)
        body = client.expect_status(r, 200, 201, what=f"{attempt} submit of the same referral")
        for e in (body or {}).get("entry", []) or []:
            client.track((e.get("response") or {}).get("location"))
    stored = entries(client.search("ServiceRequest", {"identifier": f"{REFERRAL_ID_SYSTEM}|{key}"}))
    expect(len(stored) == 1, f"the same referral submitted twice: expected 1 ServiceRequest, found {len(stored)}")
    tasks = entries(client.search("Task", {"focus": f"ServiceRequest/{stored[0]['id']}"}))
    for task in tasks:
        client.track(f"Task/{task.get('id')}")
    expect(len(tasks) == 1, f"the same referral submitted twice: expected 1 routing Task, found {len(tasks)}")


@check("referral", "invalid_refused")
def referral_invalid_refused(client: Client) -> None:
    """A referral with an invalid fødselsnummer, sent with strict handling, is refused (4xx) naming the
    identifier, and nothing is stored (without strict handling a lenient hub takes it with a warning)."""
    _need_routing(client)
    bundle, key = _corpus_referral("invalid-fodselsnummer-bundle.json", client.new_tag())
    r = client.post("", bundle, headers={"Prefer": "handling=strict"})
    if r.status_code < 300:
        for e in client.json_of(r).get("entry", []) or []:
            client.track((e.get("response") or {}).get("location"))
    expect(400 <= r.status_code < 500, f"referral with fødselsnummer 12345678901: expected 4xx; {client.describe(r)}")
    outcome = client.json_of(r)
    named = [x for i in _error_issues(outcome) for x in i.get("expression", []) or []]
    wanted = "Bundle.entry[0].resource.identifier[0]"
    expect(any(x.startswith(wanted) for x in named), f"refused referral: no error names {wanted}; expressions {named}")
    stored = entries(client.search("ServiceRequest", {"identifier": f"{REFERRAL_ID_SYSTEM}|{key}"}))
    expect(not stored, f"a refused referral stored its ServiceRequest ({len(stored)} found)")


# -- pathways ------------------------------------------------------------------------------------------------


def _referral_for(client: Client, tag: str, subject_id: str) -> dict:
    """A referral ServiceRequest (the corpus one) about ``Patient/subject_id``, created on the server."""
    referral = tagged(copy.deepcopy(load("referrals/valid-servicerequest.json")), tag)
    referral["subject"] = {"reference": f"Patient/{subject_id}"}
    referral["identifier"][0]["value"] = f"ck-{uuid.uuid4()}"
    return client.create(referral)


def _plan_to_apply(client: Client, referral: dict) -> dict:
    """The plan ``$suggest-pathway`` proposes for ``referral`` when declared, else the first active PlanDefinition."""
    if declares_operation(client.capabilities(), "suggest-pathway", "ServiceRequest"):
        r = client.get(f"ServiceRequest/{referral['id']}/$suggest-pathway")
        params = client.expect_status(r, 200, what="ServiceRequest/[id]/$suggest-pathway") or {}
        canonicals = [
            part.get("valueCanonical")
            for p in params.get("parameter", []) or []
            for part in p.get("part", []) or []
            if part.get("name") == "pathway" and part.get("valueCanonical")
        ]
        expect(
            canonicals, f"$suggest-pathway proposed no pathway for a depression referral (F32.1); {client.describe(r)}"
        )
        plans = entries(client.search("PlanDefinition", {"url": canonicals[0].split("|")[0]}))
        expect(
            len(plans) == 1, f"$suggest-pathway proposed {canonicals[0]}, but PlanDefinition?url= finds {len(plans)}"
        )
        return plans[0]
    plans = entries(client.search("PlanDefinition", {"status": "active", "_count": "1"}))
    if not plans:
        skip("the server holds no active PlanDefinition to apply")
    return plans[0]


@check("pathways", "apply")
def pathways_apply(client: Client) -> None:
    """``PlanDefinition/[id]/$apply`` (subject, referral) returns a CarePlan (or RequestGroup/Bundle) for them."""
    if not declares_operation(client.capabilities(), "apply", "PlanDefinition"):
        skip("the CapabilityStatement declares no $apply operation on PlanDefinition")
    tag = client.new_tag()
    subject = client.create(patient(tag, family="Forlop"))
    referral = _referral_for(client, tag, subject["id"])
    plan = _plan_to_apply(client, referral)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": f"Patient/{subject['id']}"},
            {"name": "referral", "valueReference": {"reference": f"ServiceRequest/{referral['id']}"}},
        ],
    }
    r = client.post(f"PlanDefinition/{plan['id']}/$apply", params)
    result = client.expect_status(r, 200, what=f"PlanDefinition/{plan['id']}/$apply")
    expect(
        result and result.get("resourceType") in ("CarePlan", "RequestGroup", "Bundle"),
        f"$apply: expected a CarePlan, RequestGroup or Bundle; {client.describe(r)}",
    )
    care_plan = result
    if result.get("resourceType") == "Bundle":
        care_plan = next(
            (e for e in entries(result, None) if e.get("resourceType") in ("CarePlan", "RequestGroup")), {}
        )
        expect(care_plan, f"$apply: the Bundle holds no CarePlan or RequestGroup; {client.describe(r)}")
    ref = (care_plan.get("subject") or {}).get("reference", "")
    expect(
        ref.endswith(f"Patient/{subject['id']}"), f"$apply: subject.reference {ref!r}, expected Patient/{subject['id']}"
    )
    if plan.get("url") and care_plan.get("resourceType") == "CarePlan":
        canon = [c.split("|")[0] for c in care_plan.get("instantiatesCanonical", []) or []]
        if plan["url"] not in canon:
            raise CheckFailed(f"$apply: CarePlan.instantiatesCanonical {canon} does not name the plan {plan['url']}")
