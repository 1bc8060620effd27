"""Measures over HTTP (issue 18): a known set of referrals, assessments, CarePlans and milestone completions in
two regions, then ``Measure/[id]/$evaluate-measure`` as an administrator, a region and national statistics.

Referrals are received today (the intake stamps the date); their CarePlans count from 1 March 2031 and their
first attendances happen in 2031, so the 2031 reports of the milestone, waiting-time and fristbrudd measures
hold this module's referrals only. The assessment measure counts referrals received today: it is checked as
the difference this module's referrals make.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.api.fhirhttp import Fhir
from tests.api.test_referral_intake import HN, HV, referral, submit, task_of

RECEIVED_EXT = "http://helsenorge.no/fhir/StructureDefinition/no-mottatt-dato"
CARE_DEADLINE_EXT = "http://helsenorge.no/fhir/StructureDefinition/no-frist-for-helsehjelp"
COMPLETED_EXT = "https://fhir.referral-hub.no/StructureDefinition/milestone-completed"
HELSE_BERGEN = "983974724"
PERIOD = "periodStart=2031-01-01&periodEnd=2031-12-31"
MEASURE_SCOPES = ["system/Measure.rs"]
TODAY = datetime.now(ZoneInfo("Europe/Oslo")).date()


@dataclass
class Case:
    """One referral of the data set: where it goes, its care deadline, what happens to it."""

    name: str
    municipality: str
    care_deadline: str | None
    careplan: bool = True
    first_attendance: str | None = None
    assessed: str | None = None  # recorded on the CarePlan ($apply assessedDate)
    accepted_today: bool = False  # the region accepts the routing Task today, without a CarePlan


YESTERDAY = (TODAY - timedelta(days=1)).isoformat()
CASES = [
    Case("v1", "4601", "2031-04-01", first_attendance="2031-03-05", assessed=TODAY.isoformat()),
    Case("v2", "4601", "2031-04-01", first_attendance="2031-03-08"),
    Case("v3", "4601", "2031-04-01", first_attendance="2031-03-20", assessed="2031-03-01"),
    Case("v4", "4601", "2031-04-01", first_attendance="2031-04-10"),
    Case("v5", "4601", YESTERDAY, careplan=False, accepted_today=True),
    Case("v6", "4601", YESTERDAY, careplan=False),
    Case("n1", "5501", "2031-04-01", first_attendance="2031-03-06"),
    Case("n2", "5501", None),
]


def _report(api: Fhir, measure: str, query: str = PERIOD) -> dict:
    r = api.get(f"Measure/{measure}/$evaluate-measure?{query}")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["resourceType"] == "MeasureReport" and report["status"] == "complete"
    return report


def counts(part: dict) -> dict[str, int | None]:
    return {p["code"]["coding"][0]["code"]: p.get("count") for p in part["population"]}


def strata(report: dict, stratifier: str) -> dict[str, dict]:
    group = report["group"][0]
    found = next(s for s in group["stratifier"] if s["code"][0]["text"] == stratifier)
    return {s["value"]["text"]: s for s in found["stratum"]}


def score(part: dict) -> float | None:
    return part.get("measureScore", {}).get("value")


def _complete(careplan: dict, milestone: str, on: str) -> None:
    """What a client does to record a milestone: status completed and the date it was reached."""
    detail = next(a for a in careplan["activity"] if a.get("id") == milestone)["detail"]
    detail["status"] = "completed"
    detail["extension"] = [*detail.get("extension", []), {"url": COMPLETED_EXT, "valueDate": on}]


@pytest.fixture(scope="module")
def world(fhir):  # type: ignore[no-untyped-def]
    """The data set, and the assessment report before and after it."""
    api = Fhir(fhir)
    today = f"periodStart={TODAY.isoformat()}&periodEnd={TODAY.isoformat()}"
    before = _report(api, "vurdert-innen-frist", today)
    base = f"{int(datetime.now().timestamp() * 1000) % 10**11:011x}"
    received: dict[str, date] = {}
    for n, case in enumerate(CASES):
        unique = f"{base}{n:x}"
        bundle = referral(unique, case.municipality)
        service_request = bundle["entry"][5]["resource"]
        if case.care_deadline:
            service_request.setdefault("extension", []).append(
                {"url": CARE_DEADLINE_EXT, "valueDateTime": f"{case.care_deadline}T23:59:59+01:00"}
            )
        submit(api, bundle)
        task = task_of(api, unique)
        sr_ref = task["focus"]["reference"]
        stored = api.get(sr_ref).json()
        stamp = next(e["valueDateTime"] for e in stored["extension"] if e["url"] == RECEIVED_EXT)
        received[case.name] = (
            datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(ZoneInfo("Europe/Oslo")).date()
        )
        if case.accepted_today:
            task["status"] = "accepted"
            task["lastModified"] = datetime.now(ZoneInfo("Europe/Oslo")).isoformat(timespec="seconds")
            r = api.put(f"Task/{task['id']}", task)
            assert r.status_code == 200, r.text
        if not case.careplan:
            continue
        params = [
            {"name": "subject", "valueString": task["for"]["reference"]},
            {"name": "referral", "valueString": sr_ref},
            {"name": "receivedDate", "valueDate": "2031-03-01"},
        ]
        if case.assessed:
            params.append({"name": "assessedDate", "valueDate": case.assessed})
        r = api.post(
            "PlanDefinition/psykoselidelser/$apply?persist=true", {"resourceType": "Parameters", "parameter": params}
        )
        assert r.status_code == 201, r.text
        careplan = r.json()
        if case.first_attendance:
            _complete(careplan, "first-attendance", case.first_attendance)
            r = api.put(f"CarePlan/{careplan['id']}", careplan)
            assert r.status_code == 200, r.text
    after = _report(api, "vurdert-innen-frist", today)
    return {"api": api, "received": received, "before": before, "after": after}


def test_milestone_within_its_time_target_per_region(world):
    report = _report(world["api"], "forlopstid-forste-fremmote")
    group = report["group"][0]
    # due 8 March 2031 (psykose: 7 days): v1, v2, n1 on time; v3, v4 late; n2 not reached and not due yet
    assert counts(group) == {"initial-population": 6, "denominator": 5, "numerator": 3}
    assert score(group) == 0.6
    regions = strata(report, "region")
    assert set(regions) == {HV, HN}
    assert counts(regions[HV]) == {"initial-population": 4, "denominator": 4, "numerator": 2}
    assert score(regions[HV]) == 0.5
    assert counts(regions[HN]) == {"initial-population": 2, "denominator": 1, "numerator": 1}
    assert score(regions[HN]) == 1.0
    assert counts(strata(report, "pathway")["psykoselidelser"])["initial-population"] == 6
    assert report["period"] == {"start": "2031-01-01", "end": "2031-12-31"}
    assert report["measure"] == "https://fhir.referral-hub.no/Measure/forlopstid-forste-fremmote"


def test_waiting_time_median_and_mean(world):
    received = world["received"]
    waits = {
        c.name: (date.fromisoformat(c.first_attendance) - received[c.name]).days for c in CASES if c.first_attendance
    }
    median = _report(world["api"], "ventetid-median")
    group = median["group"][0]
    assert counts(group) == {"initial-population": 5, "measure-population": 5, "measure-observation": 5}
    assert score(group) == statistics.median(waits.values())
    assert group["measureScore"]["code"] == "d"
    vest = [waits[n] for n in ("v1", "v2", "v3", "v4")]
    assert score(strata(median, "region")[HV]) == statistics.median(vest)
    assert score(strata(median, "region")[HN]) == waits["n1"]
    mean = _report(world["api"], "ventetid-gjennomsnitt")
    assert score(mean["group"][0]) == round(statistics.mean(waits.values()), 2)


def test_share_of_missed_care_deadlines(world):
    report = _report(world["api"], "fristbrudd")
    group = report["group"][0]
    # started in 2031: v1-v4, n1 (v4 after its deadline); waiting at the end: v5, v6 (deadline passed); n2 has none
    assert counts(group) == {"initial-population": 7, "denominator": 7, "numerator": 3}
    assert score(group) == round(3 / 7, 4)
    regions = strata(report, "region")
    assert counts(regions[HV]) == {"initial-population": 6, "denominator": 6, "numerator": 3}
    assert score(regions[HV]) == 0.5
    assert counts(regions[HN]) == {"initial-population": 1, "denominator": 1, "numerator": 0}
    assert counts(strata(report, "health-trust")[HELSE_BERGEN])["initial-population"] == 6
    pathways = strata(report, "pathway")  # the CarePlan's pathway, else the suggested one (F32.1, adult)
    assert counts(pathways["psykoselidelser"])["initial-population"] == 5
    assert counts(pathways["psykisk-helsevern-voksne"])["initial-population"] == 2
    assert counts(strata(report, "sex")["male"])["initial-population"] == 7


def test_assessed_within_the_legal_deadline(world):
    before, after = world["before"], world["after"]

    def delta(region: str) -> dict[str, int]:
        old = strata(before, "region").get(region)
        new = strata(after, "region")[region]
        return {k: v - (counts(old)[k] if old else 0) for k, v in counts(new).items()}

    # Helse Vest: six received; assessed v1 (today, on time), v3 (2031, late), v5 (its Task accepted today)
    assert delta(HV) == {"initial-population": 6, "denominator": 3, "numerator": 2}
    # Helse Nord: two received, neither assessed, their deadlines still ahead
    assert delta(HN) == {"initial-population": 2, "denominator": 0, "numerator": 0}


def test_a_region_sees_its_own_figures_with_small_strata_masked(world, fhir):
    vest = Fhir(fhir, fhir.token(MEASURE_SCOPES, HV, client_id="helse-vest-measures"))
    report = _report(vest, "fristbrudd")
    group = report["group"][0]
    assert counts(group) == {"initial-population": 6, "denominator": 6, "numerator": 3}
    assert set(strata(report, "region")) == {HV}  # nothing of Helse Nord
    assert counts(strata(report, "region")[HV])["initial-population"] == 6  # six patients: shown
    pathways = strata(report, "pathway")  # four and two patients: masked
    for stratum in pathways.values():
        assert all("count" not in p for p in stratum["population"])
        assert stratum["measureScore"]["extension"][0]["valueCode"] == "masked"
    # the region's health trust sees its region's figures too
    bergen = Fhir(fhir, fhir.token(MEASURE_SCOPES, HELSE_BERGEN, client_id="helse-bergen-measures"))
    assert counts(_report(bergen, "fristbrudd")["group"][0])["initial-population"] == 6
    # an administrator sees every stratum unmasked
    admin = strata(_report(Fhir(fhir), "fristbrudd"), "pathway")
    assert counts(admin["psykisk-helsevern-voksne"])["numerator"] == 2


def test_national_statistics_see_all_regions_masked(world, fhir):
    scopes = [*MEASURE_SCOPES, "system/ServiceRequest.rs", "referral-hub:statistics"]
    token = fhir.token(scopes, "983544622", client_id="statistics")
    report = _report(Fhir(fhir, token), "fristbrudd")
    regions = strata(report, "region")
    assert set(regions) == {HV, HN}
    assert counts(regions[HV])["initial-population"] == 6
    assert "count" not in regions[HN]["population"][0]  # one patient: masked
    # the scope shows figures, not resources: the referrals stay out of sight
    assert Fhir(fhir, token).search("ServiceRequest?_summary=count")["total"] == 0


def test_subject_list_and_refusals(world, fhir):
    api = world["api"]
    report = _report(api, "fristbrudd", PERIOD + "&reportType=subject-list")
    lists = {c["id"]: c for c in report["contained"]}
    assert len(lists["numerator"]["entry"]) == 3
    assert report["type"] == "subject-list"
    r = api.get("Measure/fristbrudd/$evaluate-measure?periodStart=2031-01-01")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["periodEnd"]
    assert api.get(f"Measure/nope/$evaluate-measure?{PERIOD}").status_code == 404
    no_scope = Fhir(fhir, fhir.token(["system/Task.rs"], HV, client_id="no-measure-scope"))
    assert no_scope.get(f"Measure/fristbrudd/$evaluate-measure?{PERIOD}").status_code == 403
    measure = Fhir(fhir, fhir.token(MEASURE_SCOPES, HV, client_id="reader")).get("Measure/fristbrudd")
    assert measure.status_code == 200 and measure.json()["scoring"]["coding"][0]["code"] == "proportion"
