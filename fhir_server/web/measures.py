"""The measures page's figures: the project's Measures per region, and the SVG charts that show them.

Each chart is one Measure of the ``measures/`` data folder, evaluated per region (its ``region``
stratifier only) by the domain's :func:`~fhir_server.domain.measures.evaluate`, the same code as
``Measure/[id]/$evaluate-measure``, for the audience the caller is
(:func:`~fhir_server.domain.measures.audience.audience`): a person of a region has the statistics view
(every region side by side, strata of fewer patients than the setting masked), an administrator sees
them unmasked. Evaluation reads the fact table only, one ``GROUP BY`` per Measure; the figures are kept a
minute per period and audience (and dropped after an action of the app).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape

from fhir_server.core.storage.db import Database
from fhir_server.domain.measures import MeasureCatalog, Request, evaluate
from fhir_server.domain.measures.audience import Audience, stratified_by
from fhir_server.domain.routing.tables import Org

#: The page's charts, in order: assessment in time, the pathways' time targets, waiting time, missed deadlines.
CHARTS = (
    "vurdert-innen-frist",
    "forlopstid-forste-fremmote",
    "forlopstid-klinisk-beslutning",
    "forlopstid-forste-evaluering",
    "ventetid-median",
    "ventetid-gjennomsnitt",
    "fristbrudd",
)
#: The periods a person may choose: the last twelve months (the default), this year, last year.
PERIODS = ("12m", "year", "last-year")
CACHE_SECONDS = 60.0


def period_of(choice: str, today: date) -> tuple[date, date]:
    """The first and last day of a period choice (:data:`PERIODS`; anything else: the last twelve months)."""
    if choice == "year":
        return date(today.year, 1, 1), date(today.year, 12, 31)
    if choice == "last-year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    day = min(today.day, 28) if today.month == 2 else today.day  # 29 February a year back: the 28th
    return date(today.year - 1, today.month, day) + timedelta(days=1), today


@dataclass(frozen=True)
class Figure:
    """One region's figure of one Measure."""

    #: the region (RHF orgnr); "" for the referrals no region owns yet (manual triage); None: every region
    orgnr: str | None
    #: the score: a share (0..1) for a proportion, days for a waiting time; None when there is none
    value: float | None
    #: small-number protection hid this stratum (no counts, no score)
    masked: bool = False
    #: population code → count (``denominator``, ``numerator``; ``measure-population``, ``measure-observation``)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Chart:
    """One Measure per region, as the page shows it."""

    measure_id: str
    #: ``proportion`` (a share) or ``continuous-variable`` (days)
    scoring: str
    lower_is_better: bool
    #: the Measure's description in the page's languages ("bokmål / English")
    description: str
    figures: list[Figure]
    overall: Figure

    @property
    def is_share(self) -> bool:
        return self.scoring == "proportion"


def _figure(orgnr: str | None, node: dict) -> Figure:
    """A Figure of a MeasureReport group or stratum."""
    score = node.get("measureScore") or {}
    masked = any(e.get("valueCode") == "masked" for e in score.get("extension") or [])
    counts = {p["code"]["coding"][0]["code"]: int(p["count"]) for p in node.get("population") or [] if "count" in p}
    value = score.get("value")
    return Figure(orgnr, float(value) if value is not None else None, masked, counts)


def chart_of(report: dict, measure_id: str, scoring: str, regions: list[Org], description: str) -> Chart:
    """A Chart of a MeasureReport stratified by region: one figure per region (none where it has no rows),
    and those of referrals no region owns yet (manual triage) when there are any."""
    group = report["group"][0]
    strata = (group.get("stratifier") or [{}])[0].get("stratum") or []
    by_region: dict[str, Figure] = {}
    for stratum in strata:
        codings = (stratum.get("value") or {}).get("coding") or []
        orgnr = str(codings[0].get("code")) if codings else ""
        by_region[orgnr] = _figure(orgnr, stratum)
    figures = [by_region.get(r.orgnr) or Figure(r.orgnr, None) for r in regions]
    if "" in by_region:
        figures.append(by_region[""])
    improvement = ((report.get("improvementNotation") or {}).get("coding") or [{}])[0].get("code")
    return Chart(measure_id, scoring, improvement == "decrease", description, figures, _figure(None, group))


class MeasuresView:
    """The charts of the measures page, evaluated on the database, kept a minute per period and audience."""

    def __init__(self, catalog: MeasureCatalog, db: Database, regions: list[Org]) -> None:
        self.measures = [stratified_by(catalog.by_id[m], "region") for m in CHARTS if m in catalog.by_id]
        self.db = db
        self.regions = [r for r in regions if r.kind == "rhf"]
        self._cached: dict[tuple, tuple[float, list[Chart]]] = {}
        self._lock = threading.Lock()

    def charts(self, start: date, end: date, today: date, who: Audience) -> list[Chart]:
        """Every chart of the page for the period ``start``..``end`` as ``who`` may see it."""
        key = (start, end, today, who)
        with self._lock:
            hit = self._cached.get(key)
            if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
        regions = [r for r in self.regions if who.regions is None or r.orgnr in who.regions]
        request = Request(start, end, min(end, today), regions=who.regions, min_patients=who.min_patients)
        charts = []
        with self.db.read.connect() as conn:
            for measure in self.measures:
                report = evaluate(conn, measure, request)
                description = str(measure.resource.get("description") or "")
                charts.append(chart_of(report, measure.id, measure.scoring, regions, description))
        with self._lock:
            self._cached = {k: v for k, v in self._cached.items() if time.monotonic() - v[0] < CACHE_SECONDS}
            self._cached[key] = (time.monotonic(), charts)
        return charts

    def forget(self) -> None:
        """Drop the kept figures (after an action that changes them)."""
        with self._lock:
            self._cached.clear()


@dataclass(frozen=True)
class ChartWords:
    """What a chart says in the page's language: its title, each figure's label, a value as text."""

    title: str
    label: Callable[[Figure], str]
    value: Callable[[Chart, Figure], str]


def bar_chart(chart: Chart, words: ChartWords, highlight: str | None = None) -> str:
    """An accessible SVG bar chart of one Chart (role img, a title, a description listing every value):
    a bar per region, the person's own region darker, the whole as a last bar; masked figures have none."""
    ident = escape(chart.measure_id)
    figures = [*chart.figures, chart.overall]
    bar_height, gap, label_width, width = 26, 10, 210, 640
    plot = width - label_width - 90
    height = len(figures) * (bar_height + gap) + 40
    longest = max([f.value or 0 for f in figures if not f.masked] + [0])
    top = 1.0 if chart.is_share else max(10, math.ceil(longest * 1.1 / 10) * 10)  # days: a multiple of ten
    ticks = (0, 0.5, 1.0) if chart.is_share else (0, top / 2, top)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="title-{ident} desc-{ident}" '
        f'viewBox="0 0 {width} {height}" width="100%" class="chart">',
        f'<title id="title-{ident}">{escape(words.title)}</title>',
        f'<desc id="desc-{ident}">'
        + escape("; ".join(f"{words.label(f)}: {words.value(chart, f)}" for f in figures))
        + "</desc>",
    ]
    for tick in ticks:
        x = label_width + plot * tick / top
        text = f"{tick * 100:.0f} %" if chart.is_share else f"{tick:.0f}"
        parts.append(f'<line x1="{x:.0f}" y1="10" x2="{x:.0f}" y2="{height - 24}" class="grid"/>')
        parts.append(f'<text x="{x:.0f}" y="{height - 6}" class="tick" text-anchor="middle">{text}</text>')
    for n, figure in enumerate(figures):
        y = 14 + n * (bar_height + gap)
        bar = plot * min(figure.value or 0, top) / top
        css = "bar all" if figure is chart.overall else "bar own" if figure.orgnr == highlight else "bar"
        baseline = f"{y + bar_height * 0.68:.0f}"
        parts.append(
            f'<text x="{label_width - 8}" y="{baseline}" text-anchor="end" class="label">'
            f"{escape(words.label(figure))}</text>"
        )
        if figure.value is not None and not figure.masked:
            parts.append(f'<rect x="{label_width}" y="{y}" width="{bar:.1f}" height="{bar_height}" class="{css}"/>')
        parts.append(
            f'<text x="{label_width + bar + 6:.1f}" y="{baseline}" class="value">'
            f"{escape(words.value(chart, figure))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
