"""The web app's pages under ``/app``: sign-in, manual triage, regional queue, a referral, measures.

A door only: it reads the form, calls :class:`~fhir_server.web.worklist.Worklist` under the signed-in
person's access, and renders a template. Errors of the core (a stale version, a refused write) come back
as a message on the page, never as a stack trace.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from fhir_server.components import Components
from fhir_server.core.issues import FhirError
from fhir_server.core.storage import access
from fhir_server.domain.calendar import fhir_oslo_date, oslo_today
from fhir_server.domain.measures.audience import audience
from fhir_server.domain.pathways.state import milestone_states
from fhir_server.domain.referral.routing_task import ROUTING_RULE
from fhir_server.naming import HPR_SYSTEM
from fhir_server.security.gate import SecurityGate
from fhir_server.security.policy import RequestInfo
from fhir_server.web import auth
from fhir_server.web.i18n import NO_VALUE, pick_language, translate
from fhir_server.web.measures import PERIODS, Chart, ChartWords, Figure, MeasuresView, bar_chart, period_of
from fhir_server.web.oidc import OidcClient, SignInFailed
from fhir_server.web.worklist import (
    ACCEPT_CODES,
    STATUSES,
    VOLVEN_9148,
    WEB_USER_SYSTEM,
    Person,
    Worklist,
    person_name,
    task_status,
)

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

#: Pages a person reaches without signing in.
OPEN_ENDPOINTS = frozenset({"web.login", "web.callback", "web.static"})


def _parts() -> tuple[Components, SecurityGate, Worklist, MeasuresView]:
    ext = current_app.extensions
    return ext["fhir"], ext["fhir_gate"], ext["fhir_worklist"], ext["fhir_measures"]


@bp.before_request
def _before() -> ResponseReturnValue | None:
    asked = request.args.get("lang")
    if asked in ("nb", "en"):
        session["lang"] = asked
    g.lang = pick_language(session.get("lang"), request.headers.get("Accept-Language"))
    if request.endpoint == "web.static":
        return None
    person = auth.signed_in()
    g.person = person
    if person is None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))
    if request.method == "POST":
        auth.check_csrf()
    _components, gate, _worklist, _measures = _parts()
    g.access_token = access.enter(gate.policy.access(auth.caller_of(person, gate)))
    return None


@bp.after_request
def _after(response: Response) -> ResponseReturnValue:
    if request.endpoint != "web.static":
        auth.audit(current_app.extensions["fhir_gate"], response.status_code)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.teardown_request
def _teardown(_error: BaseException | None) -> None:
    token = g.pop("access_token", None)
    if token is not None:
        access.leave(token)


@bp.app_template_global()
def t(key: str, **values: object) -> str:
    return translate(g.get("lang", "nb"), key, **values)


@bp.app_template_global()
def csrf_token() -> str:
    return auth.csrf_token()


@bp.app_template_global()
def lang_url(lang: str) -> str:
    args = {k: v for k, v in request.args.items() if k != "lang"}
    return f"{request.path}?{urlencode({**args, 'lang': lang})}"


@bp.app_template_filter("day")
def _day(value: date | None) -> str:
    if value is None:
        return NO_VALUE
    return value.strftime("%d.%m.%Y") if g.get("lang") != "en" else value.isoformat()


@bp.app_template_filter("in_language")
def _in_language(text: str | None, first: str = "en") -> str:
    """The part of a two-language text in the page's language: "English / bokmål" (the routing
    explanations), or "bokmål / English" with ``first="nb"`` (the Measures' descriptions)."""
    one, sep, other = (text or "").partition(" / ")
    if not sep:
        return text or ""
    return one if (g.get("lang") == "en") == (first == "en") else other


@bp.app_template_global()
def party_name(resources: dict, reference: dict | None) -> str:
    """A Practitioner's or Organization's name (through a PractitionerRole), else the reference's display."""
    reference = reference or {}
    found = resources.get(reference.get("reference", ""), {})
    if found.get("resourceType") == "PractitionerRole":
        names = [party_name(resources, found.get(e)) for e in ("practitioner", "organization")]
        return ", ".join(n for n in names if n != NO_VALUE) or NO_VALUE
    name = found.get("name")
    if isinstance(name, str):
        return name
    if isinstance(name, list) and name:
        return person_name(found) or NO_VALUE
    return reference.get("display") or NO_VALUE


@bp.errorhandler(400)
def _bad_request(error: Exception) -> tuple[str, int]:
    message = t("error.csrf") if getattr(error, "description", "") == "csrf" else str(error)
    return render_template("error.html", message=message), 400


@bp.errorhandler(FhirError)
def _fhir_error(error: FhirError) -> tuple[str, int]:
    status = error.status
    message = t("error.forbidden") if status in (403, 404) else "; ".join(i.diagnostics for i in error.issues)
    if status == 412:
        message = t("action.conflict")
    return render_template("error.html", message=message), status


def _audit_as(interaction: str, resource_type: str | None = None, resource_id: str | None = None) -> None:
    g.audit_info = RequestInfo(interaction, resource_type, resource_id or "")


# -- sign-in ----------------------------------------------------------------------------------


def _oidc() -> OidcClient | None:
    settings = current_app.extensions["fhir"].settings
    if settings.auth_mode == "development" or not (settings.auth_issuer and settings.web_oidc_client_id):
        return None
    client = current_app.extensions.get("fhir_oidc")
    if client is None:
        client = OidcClient(
            settings.auth_issuer, settings.web_oidc_client_id, settings.web_oidc_client_secret, settings.web_oidc_scope
        )
        current_app.extensions["fhir_oidc"] = client
    return client


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue | str:
    components, _gate, worklist, _m = _parts()
    next_url = _safe_next(request.values.get("next"))
    if components.settings.auth_mode != "development":
        client = _oidc()
        if client is None:
            abort(503, description="the web app's OpenID Connect client is not configured (FHIR_SERVER_WEB_OIDC_*)")
        if request.method == "POST" or request.args.get("start"):
            url, saved = client.start(url_for("web.callback", _external=True))
            session["oidc"] = {**saved, "next": next_url}
            return redirect(url)
        return render_template("login.html", dev=False, next=next_url)
    if request.method == "POST":
        auth.check_csrf()
        orgnr = request.form.get("org", "")
        name = request.form.get("name", "").strip() or "Utvikler"
        ident = request.form.get("ident", "").strip() or "dev-user"
        if orgnr not in worklist.tables.organizations:
            abort(400, description="unknown organisation")
        system = HPR_SYSTEM if ident.isdigit() and not ident.startswith("0") else WEB_USER_SYSTEM
        person = Person(name, ident, orgnr, request.form.get("role") == "admin", system)
        auth.sign_in(person)
        g.person = person
        _audit_as("operation")
        return redirect(next_url or url_for("web.home"))
    orgs = sorted(worklist.tables.organizations.values(), key=lambda o: (o.rhf_orgnr, o.kind != "rhf", o.name))
    return render_template("login.html", dev=True, organisations=orgs, next=next_url)


@bp.route("/callback")
def callback() -> ResponseReturnValue:
    client = _oidc()
    if client is None:
        abort(404)
    saved = session.pop("oidc", None) or {}
    try:
        who = client.finish(dict(request.args), saved, url_for("web.callback", _external=True))
    except SignInFailed as exc:
        abort(400, description=str(exc))
    if not who.organisations:
        abort(400, description="the sign-in names no organisation (HelseID orgnr claims)")
    gate: SecurityGate = current_app.extensions["fhir_gate"]
    ident, system = (who.hpr, HPR_SYSTEM) if who.hpr else (who.subject, WEB_USER_SYSTEM)
    person = Person(who.name, ident, who.organisations[-1], gate.settings.auth_admin_scope in who.scopes, system)
    auth.sign_in(person)
    g.person = person
    _audit_as("operation")
    return redirect(saved.get("next") or url_for("web.home"))


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    _audit_as("operation")
    session.clear()
    return redirect(url_for("web.login"))


def _safe_next(value: str | None) -> str | None:
    """Only a path of this app (no open redirect)."""
    if value and value.startswith("/app/") and not value.startswith("//"):
        return value
    return None


# -- pages ------------------------------------------------------------------------------------


@bp.route("/")
def home() -> ResponseReturnValue:
    return redirect(url_for("web.triage" if g.person.admin else "web.queue"))


@bp.route("/triage")
def triage() -> str:
    _c, _g, worklist, _m = _parts()
    _audit_as("search-type", "Task")
    return render_template(
        "triage.html",
        listing=worklist.triage(_int(request.args.get("page"), 1)),
        regions=worklist.regions(),
        trusts=worklist.health_trusts(),
        page_url=lambda n: url_for("web.triage", page=n),
    )


@bp.route("/triage/<task_id>", methods=["POST"])
def route_task(task_id: str) -> ResponseReturnValue:
    _c, _g, worklist, measures = _parts()
    _audit_as("update", "Task", task_id)
    worklist.route(
        task_id,
        _version(),
        g.person,
        request.form.get("region", ""),
        request.form.get("hf") or None,
    )
    measures.forget()
    session["flash"] = "action.done"
    return redirect(url_for("web.triage"))


@bp.route("/queue")
def queue() -> str:
    _c, _g, worklist, _m = _parts()
    region = _region_of_view(worklist)
    status = request.args.get("status", "requested")
    page = _int(request.args.get("page"), 1)
    listing = worklist.queue(
        region,
        health_trust=request.args.get("hf") or None,
        pathway=request.args.get("pathway") or None,
        status=status if status in STATUSES else None,
        overdue=request.args.get("overdue") == "1",
        page=page,
    )
    _audit_as("search-type", "Task")
    args = {k: v for k, v in request.args.items() if k not in ("page",)}
    return render_template(
        "queue.html",
        region=region,
        listing=listing,
        regions=worklist.regions(),
        trusts=worklist.health_trusts(region.orgnr),
        pathways=worklist.pathway_choices(),
        statuses=STATUSES,
        status=status,
        accept_codes=[(c, VOLVEN_9148[c]) for c in ACCEPT_CODES],
        page_url=lambda n: url_for("web.queue", **args, page=n),  # type: ignore[arg-type]
        flash=session.pop("flash", None),
    )


@bp.route("/tasks/<task_id>", methods=["POST"])
def act(task_id: str) -> ResponseReturnValue:
    _c, _g, worklist, measures = _parts()
    _audit_as("update", "Task", task_id)
    action, version = request.form.get("action"), _version()
    if action == "accept":
        worklist.accept(task_id, version, g.person, request.form.get("code", "2"))
    elif action == "reject":
        worklist.reject(task_id, version, g.person, request.form.get("reason", ""))
    elif action == "forward":
        worklist.forward(task_id, version, g.person, request.form.get("to", ""))
    else:
        abort(400, description="unknown action")
    measures.forget()
    session["flash"] = "action.done"
    back = _safe_next(request.form.get("back"))
    return redirect(back or url_for("web.queue"))


@bp.route("/referrals/<referral_id>")
def referral(referral_id: str) -> str:
    _c, _g, worklist, _m = _parts()
    _audit_as("read", "ServiceRequest", referral_id)
    view = worklist.referral(referral_id)
    today = oslo_today()
    timelines = [
        {"title": cp.get("title") or cp.get("id"), "milestones": milestone_states(cp, today)}
        for cp in view["careplans"]
    ]
    history = [
        {
            "version": h["_version"],
            "who": h.get("_who"),
            "when": h.get("lastModified") or h["_when"],
            "status": task_status(h),
            "owner": (h.get("owner") or {}).get("display") or (h.get("owner") or {}).get("reference"),
            "reason": (h.get("statusReason") or {}).get("text"),
        }
        for h in view["history"]
    ]
    rules = [
        c.get("code")
        for task in view["tasks"]
        for c in (task.get("reasonCode") or {}).get("coding") or []
        if c.get("system") == ROUTING_RULE
    ]
    return render_template(
        "referral.html",
        view=view,
        sr=view["referral"],
        resources=view["resources"],
        history=history,
        timelines=timelines,
        rules=rules,
        task_status=task_status,
        oslo_date=fhir_oslo_date,
    )


@bp.route("/measures")
def measures_page() -> str:
    components, gate, worklist, measures = _parts()
    _audit_as("operation", "Measure")
    choice = request.args.get("period", PERIODS[0])
    choice = choice if choice in PERIODS else PERIODS[0]
    today = oslo_today()
    start, end = period_of(choice, today)
    caller = auth.caller_of(g.person, gate)
    who = audience(
        access.current(),
        statistics=gate.settings.auth_statistics_scope in caller.raw_scopes,
        min_patients=components.settings.measure_min_stratum_patients,
    )
    own = worklist.region_of(g.person.orgnr)
    shown = []
    for chart in measures.charts(start, end, today, who):
        words = ChartWords(t(f"measure.{chart.measure_id}"), _figure_label, _figure_value)
        shown.append((chart, bar_chart(chart, words, own.orgnr if own else None)))
    return render_template(
        "measures.html",
        charts=shown,
        periods=PERIODS,
        period=choice,
        start=start,
        end=min(end, today),
        who=who,
        label=_figure_label,
        value=_figure_value,
    )


def _figure_label(figure: Figure) -> str:
    if figure.orgnr is None:
        return t("measures.all")
    if not figure.orgnr:
        return t("measures.unrouted")
    org = current_app.extensions["fhir_worklist"].tables.organizations.get(figure.orgnr)
    return org.name if org else figure.orgnr


def _figure_value(chart: Chart, figure: Figure) -> str:
    """A figure's score as the page's language writes it: a share in per cent, days with one decimal."""
    if figure.masked:
        return t("measures.masked")
    if figure.value is None:
        return NO_VALUE
    if chart.is_share:
        return f"{figure.value * 100:.0f} %"
    days = f"{figure.value:.1f}"
    return t("measures.days", days=days if g.get("lang") == "en" else days.replace(".", ","))


# -- helpers ----------------------------------------------------------------------------------


def _region_of_view(worklist: Worklist):  # type: ignore[no-untyped-def]
    """The person's region; an administrator may look at any region (``?region=orgnr``)."""
    person: Person = g.person
    asked = request.args.get("region")
    if person.admin and asked and asked in worklist.tables.organizations:
        return worklist.region_of(asked)
    own = worklist.region_of(person.orgnr)
    if own is None:
        if person.admin:
            return worklist.regions()[0]
        abort(403)
    return own


def _version() -> int:
    version = _int(request.form.get("version"), 0)
    if version < 1:
        abort(400, description="the form names no version of the Task")
    return version


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default
