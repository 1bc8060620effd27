"""The people's app: a server-rendered web view for those who work the queues (``/app``).

Manual triage, the regional queue with its legal deadlines, a referral's page with its history and
pathway timeline, and the measures, in Norwegian bokmål with English available. It reads and writes
through the same core and the same access rules as the FHIR API; every page and action is audited.
"""

from __future__ import annotations

from flask import Flask

from fhir_server.components import Components
from fhir_server.security.gate import SecurityGate

URL_PREFIX = "/app"


def install(app: Flask, components: Components, gate: SecurityGate) -> None:
    """Register the web app's blueprint on ``app`` (the security gate is already installed)."""
    from fhir_server.web import auth, views
    from fhir_server.web.measures import MeasuresView
    from fhir_server.web.worklist import Worklist

    worklist = Worklist(components.service, components.intake.tables, components.pathways)
    app.extensions["fhir_worklist"] = worklist
    app.extensions["fhir_measures"] = MeasuresView(components.measures, components.db, worklist.regions())
    auth.configure_sessions(app, components.settings)
    app.register_blueprint(views.bp, url_prefix=URL_PREFIX)
