"""A person works the queues in a real browser: sign in, route a triage case, accept a referral and see it
leave the queue, open a referral's page, see the measures chart; no serious accessibility violation on any
page (axe-core); screenshots of each page to docs/screenshots/.

The tests run in order on one server and one browser session (each builds on the one before).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import requests

from fhir_server.web.measures import CHARTS as MEASURES
from tests.browser.conftest import GP_ORG, HELSE_VEST
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

HELSE_BERGEN = "983974724"
WAIT_SECONDS = 15


def _wait(driver):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS)


def _by(kind: str, value: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return (getattr(By, kind), value)


def _open(driver, url: str, heading: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(url)
    _wait(driver).until(ec.text_to_be_present_in_element(_by("TAG_NAME", "h1"), heading))


def _sign_in(driver, app_url: str, orgnr: str, *, admin: bool, name: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    driver.delete_all_cookies()
    _open(driver, f"{app_url}/login?lang=nb", "Logg inn")
    field = driver.find_element(*_by("ID", "name"))
    field.clear()
    field.send_keys(name)
    Select(driver.find_element(*_by("ID", "org"))).select_by_value(orgnr)
    driver.find_element(*_by("ID", "role-admin" if admin else "role-coordinator")).click()
    driver.find_element(*_by("ID", "sign-in")).click()
    _wait(driver).until(ec.text_to_be_present_in_element(_by("CLASS_NAME", "who"), name))


def _shot(driver, folder: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 160, 2600)))  # the window holds its toolbar too
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1280, 900)


def _axe(driver, source: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The serious and critical violations axe-core finds on the current page (WCAG 2.1 A and AA rules)."""
    driver.execute_script(source)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));"
    )
    return [v for v in result if v.get("impact") in ("serious", "critical")]


def _fhir(server: RunningServer, headers: dict, path: str) -> dict:
    answer = requests.get(server.url(path), headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _task_of(server: RunningServer, headers: dict, family: str) -> dict:
    bundle = _fhir(server, headers, f"Task?patient.family={family}")
    tasks = [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Task"]
    assert len(tasks) == 1, bundle
    return tasks[0]


def test_sign_in_is_required_and_the_session_cookie_is_http_only(web_server, app_url) -> None:
    answer = requests.get(f"{app_url}/queue", allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and "/app/login" in answer.headers["Location"]
    page = requests.Session()
    form = page.get(f"{app_url}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    refused = page.post(f"{app_url}/login", data={"org": HELSE_VEST, "name": "X", "ident": "1"}, timeout=10)
    assert refused.status_code == 400  # no CSRF token
    signed = page.post(
        f"{app_url}/login",
        data={"csrf_token": token, "org": HELSE_VEST, "name": "X", "ident": "1"},
        allow_redirects=False,
        timeout=10,
    )
    assert signed.status_code == 302
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/app" in cookie


def test_a_coordinator_routes_a_triage_case(web_server, app_url, browser, admin_headers, axe_source, screenshots):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    _sign_in(browser, app_url, HELSE_VEST, admin=True, name="Tora Triage")
    _open(browser, f"{app_url}/triage", "Manuell triage")
    task = _task_of(web_server, admin_headers, "Triagesen")
    card = browser.find_element(*_by("ID", f"task-{task['id']}"))
    assert "Unknown municipality number" in card.text or "kommunenummer" in card.text.lower()
    _shot(browser, screenshots, "triage")
    assert _axe(browser, axe_source) == []
    Select(card.find_element(*_by("NAME", "region"))).select_by_value(HELSE_VEST)
    Select(card.find_element(*_by("NAME", "hf"))).select_by_value(HELSE_BERGEN)
    card.find_element(*_by("TAG_NAME", "button")).click()
    _wait(browser).until(ec.presence_of_element_located(_by("CSS_SELECTOR", "p[role=status]")))
    assert not browser.find_elements(*_by("ID", f"task-{task['id']}"))

    routed = _task_of(web_server, admin_headers, "Triagesen")
    assert routed["owner"]["identifier"]["value"] == HELSE_VEST
    assert "statusReason" not in routed and "businessStatus" not in routed
    assert any(i.get("valueReference", {}).get("identifier", {}).get("value") == HELSE_BERGEN for i in routed["input"])
    provenance = _fhir(web_server, admin_headers, f"Provenance?target=Task/{task['id']}")
    who = [a["who"].get("display") for e in provenance["entry"] for a in e["resource"]["agent"]]
    assert "Tora Triage" in who
    # the region now sees the referral through the API, as the web app showed it
    region = {"Authorization": f"Bearer {web_server.token(['system/*.rs'], HELSE_VEST)}"}
    assert _fhir(web_server, region, f"Task/{task['id']}")["id"] == task["id"]


def test_the_queue_shows_the_earliest_deadline_first(web_server, app_url, browser, admin_headers) -> None:
    """Rusdal's referral came last, but its pathway's deadline is the shortest: it tops the queue."""
    _sign_in(browser, app_url, HELSE_VEST, admin=False, name="Kari Koordinator")
    _open(browser, f"{app_url}/queue", "Regional kø")
    rows = browser.find_elements(*_by("CSS_SELECTOR", "#queue-table tbody tr"))
    rusdal = _task_of(web_server, admin_headers, "Rusdal")
    assert rows[0].get_attribute("id") == f"task-{rusdal['id']}"
    deadlines = [
        date(*reversed([int(p) for p in r.find_elements(*_by("TAG_NAME", "td"))[2].text.split(".")])) for r in rows
    ]
    assert deadlines == sorted(deadlines) and deadlines[0] < deadlines[-1]
    referral = _fhir(web_server, admin_headers, rusdal["focus"]["reference"])
    stamped = [e["valueDateTime"] for e in referral["extension"] if e["url"].endswith("no-frist-for-vurdering")]
    assert stamped == [rusdal["restriction"]["period"]["end"]]  # the Task carries the referral's deadline


def test_accepting_a_referral_takes_it_off_the_queue(
    web_server, app_url, browser, admin_headers, axe_source, screenshots
):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    _sign_in(browser, app_url, HELSE_VEST, admin=False, name="Kari Koordinator")
    _open(browser, f"{app_url}/queue", "Regional kø")
    table = browser.find_element(*_by("ID", "queue-table"))
    assert "Bergensen" in table.text and "Vestlie" in table.text and "Triagesen" in table.text
    assert "Stavanger" in table.text  # Rogaland is Helse Vest too (Helse Stavanger HF)
    assert "Tromsø" not in table.text  # Helse Nord's
    _shot(browser, screenshots, "queue")
    assert _axe(browser, axe_source) == []
    task = _task_of(web_server, admin_headers, "Bergensen")
    row = browser.find_element(*_by("ID", f"task-{task['id']}"))
    row.find_element(*_by("TAG_NAME", "summary")).click()
    Select(row.find_element(*_by("NAME", "code"))).select_by_value("1")
    row.find_element(*_by("CSS_SELECTOR", "button.accept")).click()
    _wait(browser).until(ec.presence_of_element_located(_by("CSS_SELECTOR", "p[role=status]")))
    assert not browser.find_elements(*_by("ID", f"task-{task['id']}"))
    accepted = _task_of(web_server, admin_headers, "Bergensen")
    assert accepted["status"] == "accepted"
    assert accepted["businessStatus"]["coding"][0] == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.9148",
        "code": "1",
        "display": "Innkalles til helsehjelp",
    }
    Select(browser.find_element(*_by("ID", "f-status"))).select_by_value("accepted")
    browser.find_element(*_by("ID", "apply-filter")).click()
    _wait(browser).until(ec.presence_of_element_located(_by("ID", f"task-{task['id']}")))


def test_forwarding_moves_a_referral_to_another_region(web_server, app_url, browser, admin_headers):
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    _open(browser, f"{app_url}/queue?status=requested", "Regional kø")
    task = _task_of(web_server, admin_headers, "Vestlie")
    row = browser.find_element(*_by("ID", f"task-{task['id']}"))
    row.find_element(*_by("TAG_NAME", "summary")).click()
    Select(row.find_element(*_by("NAME", "to"))).select_by_visible_text("Helse Nord RHF")
    row.find_element(*_by("CSS_SELECTOR", "button.forward")).click()
    _wait(browser).until(ec.presence_of_element_located(_by("CSS_SELECTOR", "p[role=status]")))
    assert not browser.find_elements(*_by("ID", f"task-{task['id']}"))
    forwarded = _task_of(web_server, admin_headers, "Vestlie")
    assert forwarded["owner"]["display"] == "Helse Nord RHF"
    assert forwarded["businessStatus"]["coding"][0]["code"] == "3"


def test_a_referrals_page_shows_what_the_gp_wrote_and_its_history(
    web_server, app_url, browser, admin_headers, axe_source, screenshots
):
    from selenium.webdriver.support import expected_conditions as ec

    _open(browser, f"{app_url}/queue?status=accepted", "Regional kø")
    browser.find_element(*_by("LINK_TEXT", "Ola Bergensen")).click()
    _wait(browser).until(ec.presence_of_element_located(_by("ID", "history")))
    text = browser.find_element(*_by("TAG_NAME", "main")).text
    assert "Ola Bergensen" in text
    assert "økende depressive symptomer" in text  # the GP's free text
    assert "Moderat depressiv episode" in text  # reason and diagnosis
    rows = browser.find_elements(*_by("CSS_SELECTOR", "#history tbody tr"))
    assert len(rows) >= 2  # received, then accepted
    assert "Akseptert" in rows[-1].text and "Kari Koordinator" in rows[-1].text  # who did it, from the Provenance
    milestones = browser.find_elements(*_by("CSS_SELECTOR", ".timeline .milestone"))
    assert len(milestones) >= 3  # the pathway's milestones, from the CarePlan the region applied
    assert "utført i tide" in milestones[0].text  # referral received: done on the day
    assert "Kari Lege" in text  # who referred (the PractitionerRole's practitioner)
    _shot(browser, screenshots, "referral")
    assert _axe(browser, axe_source) == []


def _measure_row(browser, measure_id: str, region: str) -> str:  # type: ignore[no-untyped-def]
    section = browser.find_element(*_by("ID", f"measure-{measure_id}"))
    rows = section.find_elements(*_by("CSS_SELECTOR", "table tbody tr"))
    return {r.find_element(*_by("TAG_NAME", "th")).text: r.text for r in rows}[region]


def test_the_measures_page_shows_each_measure_as_a_chart_with_its_table(
    app_url, browser, axe_source, screenshots
) -> None:
    # a region's coordinator: every region side by side, small strata masked (Helse Vest has four patients)
    _open(browser, f"{app_url}/measures", "Måltall")
    sections = browser.find_elements(*_by("CSS_SELECTOR", "section.measure"))
    assert [s.get_attribute("id") for s in sections] == [f"measure-{m}" for m in MEASURES]
    for section in sections:
        chart = section.find_element(*_by("CSS_SELECTOR", "svg[role=img]"))
        table = section.find_element(*_by("TAG_NAME", "table"))
        assert chart.location["y"] < table.location["y"]  # the chart, its table under it
        regions = [th.text for th in table.find_elements(*_by("CSS_SELECTOR", "tbody th"))]
        assert regions[:4] == ["Helse Midt-Norge RHF", "Helse Nord RHF", "Helse Sør-Øst RHF", "Helse Vest RHF"]
    assert "skjult" in _measure_row(browser, "vurdert-innen-frist", "Helse Vest RHF")
    assert _axe(browser, axe_source) == []
    # an administrator sees the small strata: Bergensen accepted today, within the deadline
    _sign_in(browser, app_url, HELSE_VEST, admin=True, name="Tora Triage")
    _open(browser, f"{app_url}/measures?period=year", "Måltall")
    assert "100 %" in _measure_row(browser, "vurdert-innen-frist", "Helse Vest RHF")
    chart = browser.find_element(*_by("CSS_SELECTOR", "#measure-vurdert-innen-frist svg"))
    assert chart.find_elements(*_by("CSS_SELECTOR", "rect.bar.own"))  # the person's own region stands out
    _shot(browser, screenshots, "measures")
    assert _axe(browser, axe_source) == []


def test_english_is_one_click_away(app_url, browser) -> None:
    _open(browser, f"{app_url}/queue?lang=en", "Regional queue")
    assert browser.find_element(*_by("TAG_NAME", "html")).get_attribute("lang") == "en"
    _open(browser, f"{app_url}/measures", "Measures")  # the choice stays for the session
    _open(browser, f"{app_url}/queue?lang=nb", "Regional kø")


def test_every_page_and_action_is_audited_with_the_person(web_server, admin_headers) -> None:
    bundle = _fhir(web_server, admin_headers, "AuditEvent?_count=500")
    people = {
        a["who"].get("display")
        for e in bundle.get("entry", [])
        for a in e["resource"]["agent"]
        if "web app" in e["resource"].get("outcomeDesc", "")
    }
    assert {"Tora Triage", "Kari Koordinator"} <= people


def test_login_page_screenshot_and_accessibility(app_url, browser, axe_source, screenshots) -> None:
    browser.delete_all_cookies()
    _open(browser, f"{app_url}/login?lang=nb", "Logg inn")
    _shot(browser, screenshots, "login")
    assert _axe(browser, axe_source) == []


def test_a_region_does_not_see_another_regions_referrals(web_server, app_url) -> None:
    page = requests.Session()
    form = page.get(f"{app_url}/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    page.post(f"{app_url}/login", data={"csrf_token": token, "org": "991324968", "name": "Sør", "ident": "2"})
    queue = page.get(f"{app_url}/queue?status=all", timeout=10)
    assert queue.status_code == 200
    assert "Bergensen" not in queue.text and "Tromsø" not in queue.text
    triage = page.get(f"{app_url}/triage", timeout=10)
    assert "Triagesen" not in triage.text
    assert GP_ORG  # the sender's organisation is not an RHF: it has no regional queue
