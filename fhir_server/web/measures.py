"""The figures of the measures page: per region, the share of referrals assessed within the legal deadline,
and the open referrals past it; and the SVG bar chart that shows them (server-side, no script).

The figures are counts, no person's data: they are computed with the server's own access so that a region
sees its figures beside the others' (as published waiting-time statistics are), and cached for a minute.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from html import escape

from fhir_server.core.storage import access
from fhir_server.domain.calendar import fhir_oslo_date, oslo_today
from fhir_server.domain.referral.intake import EXT_ASSESSMENT_DEADLINE
from fhir_server.web.i18n import NO_VALUE
from fhir_server.web.worklist import Worklist, extension_value, resource_json

#: Assessed Tasks read per region (the most recently changed) for the within-deadline share.
ASSESSED_WINDOW = 1000
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class RegionFigures:
    region: str
    orgnr: str
    routed: int
    assessed: int
    assessed_in_time: int
    open_overdue: int

    @property
    def share(self) -> float | None:
        """Assessed within the deadline, of those assessed (None when none was)."""
        return self.assessed_in_time / self.assessed if self.assessed else None


class Measures:
    def __init__(self, worklist: Worklist) -> None:
        self.worklist = worklist
        self._cached: tuple[float, list[RegionFigures]] | None = None
        self._lock = threading.Lock()

    def figures(self) -> list[RegionFigures]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
        with access.acting_as(access.SYSTEM):
            figures = [self._region(r.code, r.name, r.orgnr) for r in self.worklist.regions()]
        with self._lock:
            self._cached = (time.monotonic(), figures)
        return figures

    def forget(self) -> None:
        """Drop the cache (after an action that changes the figures)."""
        with self._lock:
            self._cached = None

    def _region(self, code: str, name: str, orgnr: str) -> RegionFigures:
        service = self.worklist.service
        owner = ("owner", f"Organization/{code}")
        routed = service.search_window("Task", [owner, ("_count", "0")]).total or 0
        today = oslo_today().isoformat()
        overdue = service.search_window(
            "Task",
            [
                owner,
                ("status", "requested"),
                ("focus:ServiceRequest.assessment-deadline", f"lt{today}"),
                ("_count", "0"),
            ],
        ).total
        page = service.search_window(
            "Task",
            [
                owner,
                ("status", "accepted,rejected"),
                ("_sort", "-_lastUpdated"),
                ("_count", str(ASSESSED_WINDOW)),
                ("_include", "Task:focus"),
            ],
        )
        referrals = {f"{r.resource_type}/{r.id}": resource_json(r) for r in page.included}
        in_time = 0
        for stored in page.matches:
            task = resource_json(stored)
            referral = referrals.get((task.get("focus") or {}).get("reference", ""), {})
            deadline = fhir_oslo_date(extension_value(referral, EXT_ASSESSMENT_DEADLINE))
            done = fhir_oslo_date(task.get("lastModified")) or fhir_oslo_date(stored.last_updated)
            if deadline is None or (done is not None and done <= deadline):
                in_time += 1
        return RegionFigures(name, orgnr, routed, len(page.matches), in_time, overdue or 0)


def bar_chart(figures: list[RegionFigures], title: str, highlight: str | None = None) -> str:
    """An accessible SVG bar chart (role img, title and description) of each region's share in time."""
    bar_height, gap, label_width, width = 28, 12, 190, 640
    plot = width - label_width - 70
    height = len(figures) * (bar_height + gap) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title chart-desc" '
        f'viewBox="0 0 {width} {height}" width="100%" class="chart">',
        f'<title id="chart-title">{escape(title)}</title>',
        '<desc id="chart-desc">' + escape("; ".join(f"{f.region}: {_percent(f.share)}" for f in figures)) + "</desc>",
    ]
    for tick in (0, 50, 100):
        x = label_width + plot * tick / 100
        parts.append(f'<line x1="{x:.0f}" y1="10" x2="{x:.0f}" y2="{height - 24}" class="grid"/>')
        parts.append(f'<text x="{x:.0f}" y="{height - 6}" class="tick" text-anchor="middle">{tick} %</text>')
    for n, f in enumerate(figures):
        y = 14 + n * (bar_height + gap)
        bar = plot * (f.share or 0)
        css = "bar own" if f.orgnr == highlight else "bar"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.68:.0f}" text-anchor="end" class="label">'
            f"{escape(f.region)}</text>"
        )
        parts.append(f'<rect x="{label_width}" y="{y}" width="{bar:.1f}" height="{bar_height}" class="{css}"/>')
        parts.append(
            f'<text x="{label_width + bar + 6:.1f}" y="{y + bar_height * 0.68:.0f}" class="value">'
            f"{_percent(f.share)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _percent(share: float | None) -> str:
    return NO_VALUE if share is None else f"{share * 100:.0f} %"
