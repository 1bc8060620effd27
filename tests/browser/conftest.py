"""The web app's browser tests: a real server (``fhir-server serve --dev`` on SQLite) with referrals sent
through the FHIR API, and Debian's Chromium driven headless by selenium. Skipped, saying why, when
chromium, chromedriver, selenium or axe-core (``scripts/browser.sh install``) are missing."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fhir_server.data import DATA_FOLDERS, data_folder
from tests.browser.referrals import referral_bundle
from tests.conftest import ADMIN_SCOPES, ROOT, RunningServer, start_server, stop_server

SCREENSHOTS = ROOT / "docs" / "screenshots"
#: The sender's organisation (a GP office; the project's own test number).
GP_ORG = "999888777"
HELSE_VEST = "983658725"
#: Who the referrals are for, and where they live: (family name, municipality; None: manual triage), and
#: the diagnosis when not the sample's F32.1 (the adult mental-health pathway).
PATIENTS = [
    ("Triagesen", None, None),
    ("Bergensen", "4601", None),
    ("Vestlie", "4601", None),
    ("Stavanger", "1103", None),
    ("Tromsø", "5501", None),
    # sent last, but the substance-use pathway's deadline is shorter in the test data: first in the queue
    ("Rusdal", "4601", ("F10.2", "Psykiske lidelser og atferdsforstyrrelser som skyldes bruk av alkohol")),
]
#: The test server's pathway data: the substance-use pathway (TSB) assessed within 3 working days
#: (the shipped data says 10 for every pathway), so deadlines differ from the order of receipt.
SHORT_DEADLINE_PLAN = "tsb"
SHORT_DEADLINE_DAYS = 3
WORKING_DAYS = "https://fhir.referral-hub.no/StructureDefinition/deadline-working-days"


def _axe_path() -> Path | None:
    try:
        out = subprocess.run([str(ROOT / "scripts" / "browser.sh"), "axe"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(out.stdout.strip())
    return path if path.is_file() else None


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/browser.sh install: Debian's chromium and chromium-driver)"
    if _axe_path() is None:
        return "axe-core is not installed (scripts/browser.sh install: npm install axe-core into the cache)"
    return None


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("web")
    server = start_server(
        f"sqlite:///{tmp / 'web.sqlite3'}",
        tmp,
        workers=1,
        access_log=False,
        env_overrides={"FHIR_SERVER_DATA_DIR": str(_data_with_a_short_deadline(tmp / "data"))},
    )
    token = server.token(["system/*.cruds"], GP_ORG)
    for n, (family, municipality, diagnosis) in enumerate(PATIENTS):
        answer = requests.post(
            server.url(),
            json=referral_bundle(n, family, municipality, diagnosis=diagnosis),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
            timeout=30,
        )
        assert answer.status_code in (200, 201), answer.text
    _plan_for(server, "Bergensen")
    try:
        yield server
    finally:
        stop_server(server)


def _data_with_a_short_deadline(folder: Path) -> Path:
    """A copy of the shipped data folders whose TSB plan is assessed within :data:`SHORT_DEADLINE_DAYS`."""
    for name in DATA_FOLDERS:
        shutil.copytree(data_folder(name), folder / name)
    path = folder / "pathways" / f"PlanDefinition-{SHORT_DEADLINE_PLAN}.json"
    plan = json.loads(path.read_text(encoding="utf-8"))
    for action in plan["action"][0]["action"]:
        for ext in action.get("extension", []):
            if action["id"] == "referral-assessed" and ext["url"] == WORKING_DAYS:
                ext["valueInteger"] = SHORT_DEADLINE_DAYS
    path.write_text(json.dumps(plan), encoding="utf-8")
    return folder


def _plan_for(server: RunningServer, family: str) -> None:
    """The region applies the adult mental-health pathway to a referral: a CarePlan with milestones."""
    headers = {"Authorization": f"Bearer {server.token(['system/*.cruds'], HELSE_VEST)}"}
    found = requests.get(server.url(f"ServiceRequest?subject.family={family}"), headers=headers, timeout=30).json()
    referral = found["entry"][0]["resource"]
    answer = requests.get(
        server.url("PlanDefinition/psykisk-helsevern-voksne/$apply"),
        params={
            "subject": referral["subject"]["reference"],
            "referral": f"ServiceRequest/{referral['id']}",
            "persist": "true",
        },
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


@pytest.fixture(scope="session")
def app_url(web_server: RunningServer) -> str:
    return web_server.base.removesuffix("/fhir") + "/app"


@pytest.fixture(scope="session")
def admin_headers(web_server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {web_server.token(ADMIN_SCOPES, '999999999')}"}


@pytest.fixture(scope="session")
def axe_source() -> str:
    path = _axe_path()
    assert path is not None
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def browser(web_server: RunningServer) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=nb"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
