"""The measures page in process, on a real SQLite database through the whole Flask request path: every chart
is a Measure evaluated per region by the domain's evaluation (the operation's code), a region's person sees
every region with small strata masked, an administrator sees them unmasked, and the period is chosen."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from fhir_server.core.storage import access
from fhir_server.domain.measures.audience import Audience
from fhir_server.web.i18n import NO_VALUE
from fhir_server.web.measures import CHARTS, MeasuresView, period_of
from fhir_server.web.worklist import Person, Worklist
from tests.browser.referrals import referral_bundle

HELSE_VEST = "983658725"
HELSE_NORD = "883658752"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Six Helse Vest referrals: five received 30 days ago (two accepted today, late; three still waiting past
    their deadline) and one received and accepted today (in time); one Helse Nord referral received today."""
    from fhir_server.app import create_app
    from fhir_server.components import build_server
    from fhir_server.config import load_settings
    from fhir_server.core.conformance.seed import seed

    folder: Path = tmp_path_factory.mktemp("measures-page")
    settings = load_settings(
        database_url=f"sqlite:///{folder / 'db.sqlite3'}",
        auth_mode="development",
        dev_key_path=str(folder / "key.json"),
        delivery_worker=False,
        measure_min_stratum_patients=3,
    )
    components = build_server(settings)
    month_ago = datetime.now(UTC) - timedelta(days=30)
    with access.acting_as(access.SYSTEM):
        seed(components.service)
        for n in range(5):
            components.intake.submit(referral_bundle(40 + n, f"Vest{n}", "4601"), received=month_ago)
        components.intake.submit(referral_bundle(45, "Nylig", "4601"))
        components.intake.submit(referral_bundle(46, "Nord", "5501"))
        worklist = Worklist(components.service, components.intake.tables, components.pathways)
        vest = worklist.tables.organizations[HELSE_VEST]
        kari = Person("Kari", "kari", HELSE_VEST)
        rows = worklist.queue(vest).rows
        for row in [r for r in rows if r.patient == "Ola Nylig"] + rows[:2]:
            worklist.accept(row.task_id, row.task_version, kari, "2")
    return create_app(settings, components)


def signed_in(app, orgnr: str, *, admin: bool = False) -> FlaskClient:  # type: ignore[no-untyped-def]
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/app/login").text).group(1)
    data = {"csrf_token": token, "org": orgnr, "name": "Mona Måltall", "ident": "mona"}
    if admin:
        data["role"] = "admin"
    assert client.post("/app/login", data=data).status_code == 302
    return client


def figures(view: MeasuresView, who: Audience, measure_id: str) -> dict[str | None, object]:
    today = date.today()
    start, end = period_of("12m", today)
    (chart,) = [c for c in view.charts(start, end, today, who) if c.measure_id == measure_id]
    return {f.orgnr: f for f in [*chart.figures, chart.overall]}


def test_the_statistics_view_masks_small_strata_and_the_administrator_sees_them(app) -> None:  # type: ignore[no-untyped-def]
    view: MeasuresView = app.extensions["fhir_measures"]
    masked = figures(view, Audience(None, 3), "vurdert-innen-frist")
    vest, nord, whole = masked[HELSE_VEST], masked[HELSE_NORD], masked[None]
    assert not vest.masked and vest.counts["denominator"] == 6  # assessed, or past the deadline unassessed
    assert vest.counts["numerator"] == 1 and vest.value == 0.1667  # only today's was assessed within its deadline
    assert nord.masked and nord.value is None and nord.counts == {}  # one patient: fewer than three
    assert whole.counts["initial-population"] == 7
    unmasked = figures(view, Audience(None, 0), "vurdert-innen-frist")
    assert not unmasked[HELSE_NORD].masked and unmasked[HELSE_NORD].counts["initial-population"] == 1


def test_the_page_shows_every_measure_as_a_chart_with_its_table(app) -> None:  # type: ignore[no-untyped-def]
    page = signed_in(app, HELSE_VEST).get("/app/measures").text
    sections = re.findall(r'<section class="measure" id="measure-([a-z-]+)".*?</section>', page, re.S)
    assert sections == list(CHARTS)
    for measure_id in CHARTS:
        section = re.search(rf'id="measure-{measure_id}".*?</section>', page, re.S).group(0)  # type: ignore[union-attr]
        assert section.index("<svg") < section.index("<table")  # the chart, then its table
        assert 'role="img"' in section and section.count("<tr") == 1 + 4 + 1  # head, four regions, all
    vest_row = re.search(
        r'id="measure-vurdert-innen-frist".*?<th scope="row">Helse Vest RHF</th>(.*?)</tr>', page, re.S
    )
    assert vest_row and "17 %" in vest_row.group(1)
    nord_row = re.search(
        r'id="measure-vurdert-innen-frist".*?<th scope="row">Helse Nord RHF</th>(.*?)</tr>', page, re.S
    )
    assert nord_row and "skjult" in nord_row.group(1)  # a region's person: the statistics view, masked


def test_an_administrator_sees_small_strata_and_chooses_the_period(app) -> None:  # type: ignore[no-untyped-def]
    admin = signed_in(app, HELSE_VEST, admin=True)
    page = admin.get("/app/measures?period=year&lang=en").text
    nord_row = re.search(
        r'id="measure-vurdert-innen-frist".*?<th scope="row">Helse Nord RHF</th>(.*?)</tr>', page, re.S
    )
    assert nord_row and "hidden" not in nord_row.group(1)
    assert f"The period {date.today().year}-01-01 to" in page
    last_year = admin.get("/app/measures?period=last-year").text  # nothing was received last year
    vest_row = re.search(
        r'id="measure-vurdert-innen-frist".*?<th scope="row">Helse Vest RHF</th>(.*?)</tr>', last_year, re.S
    )
    assert vest_row and "%" not in vest_row.group(1) and NO_VALUE in vest_row.group(1)


def test_periods() -> None:
    assert period_of("12m", date(2026, 12, 3)) == (date(2025, 12, 4), date(2026, 12, 3))
    assert period_of("12m", date(2028, 2, 29)) == (date(2027, 3, 1), date(2028, 2, 29))
    assert period_of("year", date(2026, 12, 3)) == (date(2026, 1, 1), date(2026, 12, 31))
    assert period_of("last-year", date(2026, 12, 3)) == (date(2025, 1, 1), date(2025, 12, 31))
