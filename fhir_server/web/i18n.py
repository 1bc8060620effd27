"""The app's words in Norwegian bokmål (the default) and English: one table, looked up by key."""

from __future__ import annotations

LANGUAGES = ("nb", "en")
#: What a page shows where there is no value (an en dash).
NO_VALUE = "\u2013"

#: key → (bokmål, English)
TEXTS: dict[str, tuple[str, str]] = {
    "app.title": ("Henvisningsnavet", "Referral hub"),
    "skip": ("Hopp til innholdet", "Skip to content"),
    "nav.label": ("Hovedmeny", "Main menu"),
    "nav.triage": ("Manuell triage", "Manual triage"),
    "nav.queue": ("Regional kø", "Regional queue"),
    "nav.measures": ("Måltall", "Measures"),
    "signed.in.as": ("Innlogget som", "Signed in as"),
    "logout": ("Logg ut", "Sign out"),
    "language": ("English", "Norsk"),
    "login.title": ("Logg inn", "Sign in"),
    "login.dev": (
        "Utviklingsmodus: den lokale utviklingsutstederen. Bruk aldri med ekte data.",
        "Development mode: the local development issuer. Never use with real data.",
    ),
    "login.name": ("Navn", "Name"),
    "login.ident": ("HPR-nummer eller brukernavn", "HPR number or user name"),
    "login.org": ("Organisasjon", "Organisation"),
    "login.role": ("Rolle", "Role"),
    "role.coordinator": ("Inntakskoordinator", "Referral coordinator"),
    "role.admin": ("Administrator (ser alt, også manuell triage)", "Administrator (sees everything, manual triage)"),
    "login.submit": ("Logg inn", "Sign in"),
    "login.oidc": ("Logg inn med HelseID", "Sign in with HelseID"),
    "triage.title": ("Manuell triage", "Manual triage"),
    "triage.intro": (
        "Henvisninger ingen regel kunne rute, med tidligste frist først. Velg region (og helseforetak) for å rute.",
        "Referrals no rule could route, the earliest deadline first. Choose the region (and health trust) to route.",
    ),
    "triage.empty": ("Ingen henvisninger venter på manuell triage.", "No referrals wait for manual triage."),
    "triage.reason": ("Årsak", "Reason"),
    "triage.warning": ("Advarsel", "Warning"),
    "triage.route": ("Rut", "Route"),
    "triage.region": ("Region", "Region"),
    "triage.hf": ("Helseforetak (valgfritt)", "Health trust (optional)"),
    "triage.none": ("(ikke valgt)", "(not chosen)"),
    "queue.title": ("Regional kø", "Regional queue"),
    "queue.empty": ("Ingen henvisninger passer filteret.", "No referrals match the filter."),
    "queue.order": (
        "Etter frist for vurdering: tidligste først, de over fristen øverst.",
        "By assessment deadline: the earliest first, those past it on top.",
    ),
    "filter.title": ("Filter", "Filter"),
    "filter.region": ("Region", "Region"),
    "filter.hf": ("Helseforetak", "Health trust"),
    "filter.pathway": ("Pakkeforløp", "Pathway"),
    "filter.status": ("Status", "Status"),
    "filter.overdue": ("Bare over fristen", "Only past the deadline"),
    "filter.all": ("Alle", "All"),
    "filter.apply": ("Vis", "Show"),
    "col.patient": ("Pasient", "Patient"),
    "col.status": ("Status", "Status"),
    "col.received": ("Mottatt", "Received"),
    "col.deadline": ("Frist for vurdering", "Assessment deadline"),
    "col.days": ("Virkedager igjen", "Working days left"),
    "col.pathway": ("Foreslått forløp", "Suggested pathway"),
    "col.routing": ("Ruting", "Routing"),
    "col.actions": ("Handlinger", "Actions"),
    "status.requested": ("Mottatt", "Requested"),
    "status.accepted": ("Akseptert", "Accepted"),
    "status.rejected": ("Avvist", "Rejected"),
    "status.forwarded": ("Videresendt", "Forwarded"),
    "status.cancelled": ("Kansellert", "Cancelled"),
    "overdue": ("over fristen", "past the deadline"),
    "action.accept": ("Aksepter", "Accept"),
    "action.accept.code": ("Vurdering", "Assessment"),
    "action.reject": ("Avvis", "Reject"),
    "action.reject.reason": ("Begrunnelse", "Reason"),
    "action.forward": ("Videresend", "Forward"),
    "action.forward.to": ("Til region", "To region"),
    "action.done": ("Lagret.", "Saved."),
    "action.conflict": (
        "Henvisningen ble endret av noen andre i mellomtiden; se den oppdaterte listen.",
        "Someone else changed the referral meanwhile; see the updated list.",
    ),
    "page.prev": ("Forrige side", "Previous page"),
    "page.next": ("Neste side", "Next page"),
    "page.n": ("Side {page}", "Page {page}"),
    "page.nav": ("Sider", "Pages"),
    "referral.title": ("Henvisning", "Referral"),
    "referral.patient": ("Pasient", "Patient"),
    "referral.born": ("Født", "Born"),
    "referral.requester": ("Henvisende", "Referred by"),
    "referral.reasons": ("Årsak til henvisning", "Reasons for referral"),
    "referral.diagnoses": ("Diagnoser", "Diagnoses"),
    "referral.text": ("Fritekst", "Free text"),
    "referral.routing": ("Ruting", "Routing"),
    "referral.rule": ("Regel", "Rule"),
    "referral.owner": ("Eier", "Owner"),
    "referral.history": ("Historikk", "History"),
    "referral.when": ("Når", "When"),
    "referral.version": ("Versjon", "Version"),
    "referral.who": ("Hvem", "Who"),
    "referral.timeline": ("Forløp", "Pathway timeline"),
    "referral.no.careplan": ("Ingen forløpsplan ennå.", "No pathway plan yet."),
    "milestone.due": ("Forfaller", "Due"),
    "milestone.done": ("Utført", "Done"),
    "state.done-on-time": ("utført i tide", "done on time"),
    "state.done-late": ("utført for sent", "done late"),
    "state.due": ("pågår", "due"),
    "state.overdue": ("over fristen", "overdue"),
    "state.not-yet-due": ("ikke startet", "not yet due"),
    "measures.title": ("Måltall", "Measures"),
    "measures.intro": (
        "Regionens tall ved siden av de andre regionenes, fra prosjektets Measure-ressurser "
        "($evaluate-measure). Under hver graf står tabellen med tallene.",
        "The region's figures beside the other regions', from the project's Measure resources "
        "($evaluate-measure). The table under each chart holds the figures.",
    ),
    "measures.period": ("Periode", "Period"),
    "measures.period.12m": ("Siste 12 måneder", "Last 12 months"),
    "measures.period.year": ("I år", "This year"),
    "measures.period.last-year": ("I fjor", "Last year"),
    "measures.shown": ("Perioden {start} til {end}.", "The period {start} to {end}."),
    "measures.masking": (
        "Regioner med færre enn {n} pasienter i et tall vises som «skjult» (små tall skjermes).",
        "Regions with fewer than {n} patients in a figure show as “hidden” (small numbers are protected).",
    ),
    "measures.higher": ("Høyere er bedre.", "Higher is better."),
    "measures.lower": ("Lavere er bedre.", "Lower is better."),
    "measures.region": ("Region", "Region"),
    "measures.all": ("Alle regioner", "All regions"),
    "measures.unrouted": ("Ikke rutet ennå", "Not routed yet"),
    "measures.masked": ("skjult", "hidden"),
    "measures.days": ("{days} dager", "{days} days"),
    "measures.denominator": ("Nevner", "Denominator"),
    "measures.numerator": ("Teller", "Numerator"),
    "measures.share": ("Andel", "Share"),
    "measures.started": ("Startet helsehjelp", "Care started"),
    "measures.measured": ("Med målt ventetid", "With a measured wait"),
    "measures.value": ("Dager", "Days"),
    "measure.vurdert-innen-frist": (
        "Henvisninger vurdert innen fristen (10 virkedager)",
        "Referrals assessed within the deadline (10 working days)",
    ),
    "measure.forlopstid-forste-fremmote": (
        "Forløp med første fremmøte innen forløpstiden",
        "Pathways with the first attendance within the time target",
    ),
    "measure.forlopstid-klinisk-beslutning": (
        "Forløp med klinisk beslutning innen forløpstiden",
        "Pathways with the clinical decision within the time target",
    ),
    "measure.forlopstid-forste-evaluering": (
        "Forløp med første evaluering innen forløpstiden",
        "Pathways with the first evaluation within the time target",
    ),
    "measure.ventetid-median": (
        "Ventetid til helsehjelp startet, median",
        "Waiting time until care started, median",
    ),
    "measure.ventetid-gjennomsnitt": (
        "Ventetid til helsehjelp startet, gjennomsnitt",
        "Waiting time until care started, mean",
    ),
    "measure.fristbrudd": (
        "Fristbrudd: helsehjelp ikke startet innen den individuelle fristen",
        "Missed deadlines: care not started by the individual deadline",
    ),
    "error.title": ("Noe gikk galt", "Something went wrong"),
    "error.forbidden": ("Du har ikke tilgang til dette.", "You may not see this."),
    "error.csrf": (
        "Skjemaet var utløpt. Prøv igjen.",
        "The form had expired. Please try again.",
    ),
}


def pick_language(asked: str | None, accept_language: str | None) -> str:
    """``?lang=``, else the session's choice (passed as ``asked``), else the browser's Accept-Language, else nb."""
    if asked in LANGUAGES:
        return asked
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith(("nb", "no", "nn")):
            return "nb"
        if tag.startswith("en"):
            return "en"
    return "nb"


def translate(lang: str, key: str, **values: object) -> str:
    pair = TEXTS.get(key)
    if pair is None:
        return key
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**values) if values else text
