"""Inbound Henvisning XML (v1.1 ``Message``, v2.0 inside ``MsgHead``) to a FHIR transaction Bundle.

:func:`parse_henvisning` detects the version by namespace, reads the fields named in
``mappings/henvisning-xml-fieldmap.json`` (XPath -> FHIR element), maps the codes through the Volven
ConceptMaps and builds the Bundle with :mod:`.bundle_builder`. Every problem becomes an :class:`Issue` whose
``expression`` is an XPath-like location in the message (e.g.
``MsgHead/Document/RefDoc/Content/Henvisning/ReqServ/Priority/@V``); malformed XML, a DOCTYPE, or a message
that is not a referral give issues, never an exception. The parser resolves no entities and reads no network.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from lxml import etree

from fhir_server.core.issues import Issue, is_error
from fhir_server.core.validation.identifiers import mask_identity_numbers, validate_identifiers
from fhir_server.domain.calendar import OSLO
from fhir_server.domain.referral.mapping import volven
from fhir_server.domain.referral.mapping.bundle_builder import build_bundle
from fhir_server.domain.referral.mapping.model import (
    REFERRAL_ID_SYSTEM,
    AddressFacts,
    DiagnosisFacts,
    Ident,
    MappedReferral,
    OrgFacts,
    PersonFacts,
    ReferralFacts,
)

MAX_BYTES = 20 * 1024 * 1024
_PREFIX = re.compile(r"\b[a-z0-9]+:(?=[A-Za-z])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _error(code: str, en: str, nb: str, where: str | None, rule: str) -> Issue:
    return Issue("error", code, en, where, nb, rule)


def _failed(issues: list[Issue], **known: Any) -> MappedReferral:
    return MappedReferral(None, {}, None, issues, **known)


class _Reader:
    """XPath access to one message with the field map of its version; locations without prefixes."""

    def __init__(self, root: etree._Element, version: str) -> None:
        self.root = root
        self.version = version
        fmap = volven.field_map()
        self.conf = fmap["versions"][version]
        self.ns = fmap["namespaces"]
        self.content = self.conf.get("content", "")

    def _xp(self, xpath: str) -> str:
        return xpath.replace("$H", self.content)

    def loc(self, xpath: str) -> str:
        return _PREFIX.sub("", self._xp(xpath)).lstrip("/")

    def nodes(self, xpath: str, node: etree._Element | None = None) -> list:
        return (node if node is not None else self.root).xpath(self._xp(xpath), namespaces=self.ns)

    def text(self, xpath: str, node: etree._Element | None = None) -> str | None:
        found = self.nodes(xpath, node)
        if not found:
            return None
        value = found[0] if isinstance(found[0], str) else found[0].text
        value = (value or "").strip()
        return value or None

    def field(self, name: str) -> str | None:
        spec = self.conf["fields"].get(name)
        return self.text(spec["xpath"]) if spec else None

    def field_loc(self, name: str) -> str:
        return self.loc(self.conf["fields"][name]["xpath"])

    def items(self, name: str) -> list[tuple[str, etree._Element, dict]]:
        """(location, node, spec) for each node of a list in the field map."""
        spec = self.conf["lists"].get(name)
        if not spec:
            return []
        base = self.loc(spec["xpath"])
        base = re.sub(r"\[[^\]]*\]$", "", base)
        return [(f"{base}[{i}]", n, spec) for i, n in enumerate(self.nodes(spec["xpath"]), start=1)]


def _version(root: etree._Element, issues: list[Issue]) -> tuple[str | None, etree._Element]:
    """The field-map version of the message and the element its XPaths start from.

    A v1.1 ``Message`` wrapped in a MsgHead is read on its own (its XPaths are written for a bare Message).
    """
    fmap = volven.field_map()
    tag = root.tag if isinstance(root.tag, str) else ""
    for version, conf in fmap["versions"].items():
        if tag == conf["root"]:
            if version == "2.0" and not root.xpath(conf["content"], namespaces=fmap["namespaces"]):
                break
            return version, root
    inner = root.xpath(fmap["wrappedV11"], namespaces=fmap["namespaces"])
    if tag == fmap["versions"]["2.0"]["root"] and inner:
        return "1.1", etree.fromstring(etree.tostring(inner[0]), _parser())
    namespaces = {etree.QName(el).namespace for el in root.iter() if isinstance(el.tag, str)}
    known = [name for ns, name in fmap["knownUnsupportedNamespaces"].items() if ns in namespaces]
    what = known[0] if known else f"root element {etree.QName(root).localname} ({etree.QName(root).namespace})"
    issues.append(
        _error(
            "not-supported",
            f"The message is not a supported referral: {what}. Supported: Henvisning v1.1 (Message, namespace "
            "http://www.kith.no/xmlstds/henvisning/2012-02-15) and Henvisning v2.0 in MsgHead (namespace "
            "http://ehelse.no/xmlstds/henvisning/2017-11-30).",
            f"Meldingen er ikke en henvisning som støttes: {what}. Støttet: Henvisning v1.1 og Henvisning v2.0 i "
            "Hodemelding.",
            etree.QName(root).localname,
            "henvisning-version",
        )
    )
    return None, root


def fhir_datetime(value: str | None) -> str | None:
    """An XML date/dateTime as FHIR: a local time without offset gets Norway's offset (Europe/Oslo)."""
    if not value:
        return None
    value = value.strip()
    if _DATE.fullmatch(value):
        return value
    if not _DATETIME.fullmatch(value):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=OSLO)
    return parsed.isoformat()


def _split_name(text: str | None) -> tuple[str | None, list[str], str | None]:
    """v1.1 ``Name``: 'Family, Given' -> (family, [given], None); anything else -> (None, [], text)."""
    if not text:
        return None, [], None
    if "," in text:
        family, given = (p.strip() for p in text.split(",", 1))
        return family or None, given.split() if given else [], None
    return None, [], text


def _idents(
    r: _Reader, node: etree._Element, spec: dict, where: str, systems: dict, what: str, issues: list[Issue]
) -> list[Ident]:
    out: list[Ident] = []
    rel = spec.get("idents", ".")
    for i, ident_node in enumerate(r.nodes(rel, node), start=1):
        value, type_code = r.text(spec["id"], ident_node), r.text(spec["type"], ident_node)
        loc = where if rel == "." else f"{where}/{r.loc(rel)}[{i}]"
        if not value:
            continue
        system = systems.get(type_code or "")
        if system is None:
            issues.append(
                Issue(
                    "warning",
                    "code-invalid",
                    f"The {what} identifier type '{type_code}' is not known; the identifier is left out.",
                    f"{loc}/{r.loc(spec['type'])}",
                    f"Identifikatortypen '{type_code}' for {what} er ukjent; identifikatoren er utelatt.",
                    "henvisning-id-type",
                )
            )
            continue
        out.append(Ident(system, value, f"{loc}/{r.loc(spec['id'])}"))
    return out


def _party(r: _Reader, name: str) -> tuple[etree._Element, dict, str] | None:
    """The first candidate node of a party (e.g. the referrer), its spec and its location."""
    for cand in r.conf["parties"][name]["candidates"]:
        found = r.nodes(cand["xpath"])
        if found:
            return found[0], cand, re.sub(r"\[[^\]]*\]", "", r.loc(cand["xpath"]))
    return None


def _person(r: _Reader, name: str, issues: list[Issue]) -> PersonFacts | None:
    hit = _party(r, name)
    if not hit:
        return None
    node, spec, where = hit
    person = PersonFacts(where=where)
    systems = volven.field_map()["personIdSystems"]
    person.identifiers = _idents(r, node, spec, where, systems, "health professional", issues)
    if "name" in spec:
        person.family, person.given, person.text = _split_name(r.text(spec["name"], node))
    else:
        person.family = r.text(spec["family"], node)
        person.given = [g for g in [r.text(spec["given"], node)] if g]
    person.profession = r.text(spec["profession"], node) if "profession" in spec else None
    return person


def _org(r: _Reader, node: etree._Element, spec: dict, where: str, issues: list[Issue]) -> OrgFacts:
    systems = volven.field_map()["organisationIdSystems"]
    org = OrgFacts(
        r.text(spec["name"], node), _idents(r, node, spec, where, systems, "organisation", issues), where=where
    )
    dept_nodes = r.nodes(spec["department"], node) if "department" in spec else []
    if dept_nodes:
        dept_where = f"{where}/{r.loc(spec['department'])}"
        org.department = OrgFacts(
            r.text(spec["name"], dept_nodes[0]),
            _idents(r, dept_nodes[0], spec, dept_where, systems, "organisation", issues),
            where=dept_where,
        )
    return org


def _her_id(org: OrgFacts | None) -> str | None:
    her = volven.field_map()["organisationIdSystems"]["HER"]
    return next((i.value for i in (org.identifiers if org else []) if i.system == her), None)


def _patient(r: _Reader, issues: list[Issue]) -> PersonFacts:
    fmap = volven.field_map()
    ids = re.sub(r"\[[^\]]*\]", "", r.loc(r.conf["lists"]["patientIds"]["xpath"]))
    patient = PersonFacts(where=ids if ids.endswith("/Patient") else ids.rsplit("/", 1)[0])
    for where, node, spec in r.items("patientIds"):
        value, type_code = r.text(spec["id"], node), r.text(spec["type"], node)
        system = fmap["personIdSystems"].get(type_code or "")
        if not value:
            continue
        if system is None or type_code in ("HPR", "HER"):
            issues.append(
                _error(
                    "code-invalid",
                    f"The patient identifier type '{type_code}' is not a Norwegian "
                    "person number type (FNR, DNR, FHN, HNR, DUF).",
                    f"Identifikatortypen '{type_code}' for pasienten er ikke en norsk "
                    "personidentifikator (FNR, DNR, FHN, HNR, DUF).",
                    f"{where}/{r.loc(spec['type'])}",
                    "henvisning-patient-id-type",
                )
            )
            continue
        patient.identifiers.append(Ident(system, value, f"{where}/{r.loc(spec['id'])}"))
    if r.version == "1.1":
        patient.family, patient.given, patient.text = _split_name(r.field("patientName"))
    else:
        patient.family = r.field("patientFamily")
        patient.given = [g for g in (r.field("patientGiven"), r.field("patientMiddle")) if g]
    birth = r.field("patientBirthDate")
    if birth and _DATE.fullmatch(birth):
        patient.birth_date = birth
    elif birth:
        issues.append(
            Issue(
                "warning",
                "value",
                f"The birth date '{birth}' is not a date (YYYY-MM-DD); left out.",
                r.field_loc("patientBirthDate"),
                f"Fødselsdatoen '{birth}' er ikke en dato; utelatt.",
                "henvisning-birthdate",
            )
        )
    if not patient.identifiers:  # Ident is optional in MsgHead: name and birth date identify the patient too
        spec = r.conf["lists"]["patientIds"]
        named = bool((patient.family or patient.given or patient.text) and patient.birth_date)
        issues.append(
            Issue(
                "warning" if named else "error",
                "required",
                "The referral has no patient identifier (fødselsnummer, D-nummer or another national person "
                "number)"
                + (
                    "; the patient is identified by name and birth date."
                    if named
                    else " and no name and birth date; the patient cannot be identified."
                ),
                re.sub(r"\[[^\]]*\]", "", r.loc(spec["xpath"])),
                "Henvisningen mangler pasientens identifikator (fødselsnummer, D-nummer eller annet nasjonalt "
                "personnummer)"
                + (
                    "; pasienten identifiseres ved navn og fødselsdato."
                    if named
                    else " og navn og fødselsdato; pasienten kan ikke identifiseres."
                ),
                "henvisning-patient-id",
            )
        )
    patient.gender = fmap["sex3101"].get(r.field("patientSex") or "")
    for where, node, spec in r.items("patientAddresses"):
        municipality = r.text(spec["municipality"], node)
        if municipality and not re.fullmatch(r"\d{4}", municipality):
            issues.append(
                Issue(
                    "warning",
                    "value",
                    f"The municipality number '{municipality}' is not 4 digits; left out.",
                    f"{where}/{r.loc(spec['municipality'])}",
                    f"Kommunenummeret '{municipality}' er ikke 4 sifre; utelatt.",
                    "henvisning-municipality",
                )
            )
            municipality = None
        patient.addresses.append(
            AddressFacts(
                use=fmap["addressUse3401"].get(r.text(spec["type"], node) or ""),
                lines=[x for x in [r.text(spec["line"], node)] if x],
                postal_code=r.text(spec["postalCode"], node),
                city=r.text(spec["city"], node),
                municipality=municipality,
                municipality_name=r.text(spec["municipalityName"], node) if municipality else None,
                bydel=r.text(spec["bydel"], node),
            )
        )
    if not any(a.municipality for a in patient.addresses):
        spec = r.conf["lists"]["patientAddresses"]
        issues.append(
            Issue(
                "warning",
                "required",
                "No address of the patient carries a municipality number "
                "(Address/County); the referral cannot be routed by home municipality and goes to manual "
                "triage.",
                r.loc(spec["xpath"]) + "/County",
                "Ingen av pasientens adresser har kommunenummer (Address/County); henvisningen kan ikke "
                "rutes etter hjemkommune og går til manuell fordeling.",
                "henvisning-municipality",
            )
        )
    return patient


def _status(r: _Reader, facts: ReferralFacts, issues: list[Issue]) -> None:
    serv_type = r.field("servType")
    action = volven.field_map()["servTypeActions"].get(serv_type or "")
    status = volven.status_map().lookup(serv_type)
    if not action or not status:
        issues.append(
            _error(
                "code-invalid",
                f"The message status (ServType, Volven 7309) '{serv_type}' is not N "
                "(new), M (change) or C (cancel); the server does not know what to do with it.",
                f"Meldingsstatus (ServType, Volven 7309) '{serv_type}' er ikke N (ny), M (endring) "
                "eller C (kansellering); tjeneren vet ikke hva den skal gjøre med meldingen.",
                r.field_loc("servType"),
                "henvisning-servtype",
            )
        )
        return
    facts.action, facts.status = action, status


def _priority(r: _Reader, facts: ReferralFacts, issues: list[Issue]) -> None:
    code = r.field("priority")
    system = r.conf["priorityCodeSystem"]
    if code is None:
        issues.append(
            Issue(
                "warning",
                "required",
                "The referral has no priority (ReqServ/Priority).",
                r.field_loc("priority"),
                "Henvisningen mangler prioritet (ReqServ/Priority).",
                "henvisning-priority",
            )
        )
        return
    priority = volven.priority_for(system, code)
    if priority is None:
        issues.append(
            _error(
                "code-invalid",
                f"The priority '{code}' is not a code of Volven "
                f"{system.rsplit('.', 1)[-1]} (e.g. N ordinær, 3 haster, 0 øyeblikkelig hjelp, "
                "PK pakkeforløp).",
                f"Prioriteten '{code}' er ikke en kode i Volven {system.rsplit('.', 1)[-1]} "
                "(f.eks. N ordinær, 3 haster, 0 øyeblikkelig hjelp, PK pakkeforløp).",
                r.field_loc("priority"),
                "henvisning-priority",
            )
        )
        return
    facts.priority = priority
    coding = {"system": system, "code": code}
    if display := r.field("priorityDisplay"):
        coding["display"] = display
    facts.order_details.append(coding)


def _diagnoses(r: _Reader, facts: ReferralFacts, issues: list[Issue]) -> None:
    systems = volven.field_map()["diagnosisSystems"]
    for where, node, spec in r.items("diagnoses"):
        code = r.text(spec["code"], node)
        raw_system = (r.text(spec["system"], node) or "").removeprefix("urn:oid:")
        display = r.text(spec["display"], node) or r.text(spec["text"], node)
        if not code:
            continue
        system = systems.get(raw_system) or (f"urn:oid:{raw_system}" if _OID.fullmatch(raw_system) else None)
        if raw_system not in systems:  # another code system (e.g. ATC, 7180): kept as sent, the region decides
            kept = "it is kept as sent" if system else "it is kept as text only"
            kept_nb = "den er tatt med slik den ble sendt" if system else "den er bare tatt med som tekst"
            issues.append(
                Issue(
                    "warning",
                    "code-invalid",
                    f"The diagnosis '{code}' is coded with code system {raw_system or '(none)'}, which is not ICD-10 "
                    f"(2.16.578.1.12.4.1.1.7110) or ICPC-2 (2.16.578.1.12.4.1.1.7170); {kept}.",
                    f"{where}/{r.loc(spec['system'])}",
                    f"Diagnosen '{code}' er kodet med kodeverk {raw_system or '(ingen)'}, som ikke er ICD-10 eller "
                    f"ICPC-2; {kept_nb}.",
                    "henvisning-diagnosis-system",
                )
            )
        facts.diagnoses.append(DiagnosisFacts(system, code, display, where))


def _texts(r: _Reader, facts: ReferralFacts) -> None:
    for label, name in (("Kommentar", "reqComment"), ("Kommentar til ønsket tjeneste", "reqServComment")):
        if value := r.field(name):
            facts.notes.append(f"{label}: {value}")
    for name in ("reasonTexts", "comments", "clinicalInfo"):
        for _, node, spec in r.items(name):
            text = r.text(spec["text"], node)
            if text:
                heading = r.text(spec["heading"], node)
                facts.notes.append(f"{heading}: {text}" if heading else text)
    for _, node, spec in r.items("precautions"):
        text = r.text(spec["text"], node)
        if text:
            facts.notes.append(f"Forholdsregel: {text}")
            if re.search(r"\bgravid", text, re.IGNORECASE):
                facts.pregnant = True


def _codes(r: _Reader, facts: ReferralFacts, issues: list[Issue]) -> None:
    if code := r.field("referralType"):
        coding = {"system": volven.VOLVEN_8455, "code": code}
        if display := r.field("referralTypeDisplay"):
            coding["display"] = display
        facts.code = coding
    for _, node, spec in r.items("pathwayCodes"):
        if code := r.text(spec["code"], node):
            coding = {"system": volven.VOLVEN_8480, "code": code}
            if display := r.text(spec["display"], node):
                coding["display"] = display
            facts.order_details.append(coding)
    date_types = volven.field_map()["dateTypes9147"]
    for where, node, spec in r.items("assessmentDates"):
        url, value = date_types.get(r.text(spec["type"], node) or ""), fhir_datetime(r.text(spec["date"], node))
        if url and value:
            facts.date_extensions.append((url, value))
        elif url:
            issues.append(
                Issue(
                    "warning",
                    "value",
                    "The date is not a valid date; left out.",
                    f"{where}/{r.loc(spec['date'])}",
                    "Datoen er ikke gyldig; utelatt.",
                    "henvisning-date",
                )
            )


def _identifier_issues(bundle: dict, sources: dict[str, str], test_mode: bool) -> list[Issue]:
    """Check-digit problems of the mapped identifiers, located in the XML (FHIR path in the text): warnings,
    as the intake's (they refuse a referral only when its patient cannot be identified, or on strict handling)."""
    out = []
    for issue in validate_identifiers(bundle, test_mode=test_mode):
        where = sources.get(issue.expression or "")
        fhir = f" (FHIR: {issue.expression})"
        out.append(
            Issue(
                "warning" if is_error(issue) else issue.severity,
                issue.code,
                issue.diagnostics + fhir,
                where or issue.expression,
                (issue.diagnostics_nb or issue.diagnostics) + fhir,
                issue.rule,
            )
        )
    return out


def parse_henvisning(xml: bytes, *, test_mode: bool = False) -> MappedReferral:
    """Map a Henvisning v1.1 or v2.0 (MsgHead) message to a transaction Bundle; problems become issues.

    ``test_mode`` accepts synthetic test person numbers (Tenor, SyntPop, NAV/Dolly), as the identifier checks do.
    """
    issues: list[Issue] = []
    if isinstance(xml, str):
        return _failed(
            [
                _error(
                    "structure",
                    "The message must be passed as bytes (its XML declaration names the encoding), not as text.",
                    "Meldingen må gis som bytes, ikke tekst.",
                    None,
                    "henvisning-xml",
                )
            ]
        )
    if not isinstance(xml, bytes | bytearray) or not xml.strip():
        return _failed([_error("structure", "The message is empty.", "Meldingen er tom.", None, "henvisning-xml")])
    if len(xml) > MAX_BYTES:
        return _failed(
            [
                _error(
                    "too-costly",
                    f"The message is larger than {MAX_BYTES // (1024 * 1024)} MB.",
                    f"Meldingen er større enn {MAX_BYTES // (1024 * 1024)} MB.",
                    None,
                    "henvisning-xml",
                )
            ]
        )
    try:
        doc = etree.fromstring(bytes(xml), _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        message = mask_identity_numbers(str(exc))
        return _failed(
            [
                _error(
                    "structure",
                    f"The message is not well-formed XML: {message}",
                    f"Meldingen er ikke velformet XML: {message}",
                    None,
                    "henvisning-xml",
                )
            ]
        )
    if doc.docinfo.doctype:
        return _failed(
            [
                _error(
                    "security",
                    "The message has a DOCTYPE declaration, which is not allowed.",
                    "Meldingen har en DOCTYPE-deklarasjon, som ikke er tillatt.",
                    None,
                    "henvisning-xml",
                )
            ]
        )
    version, root = _version(doc.getroot(), issues)
    if version is None:
        return _failed(issues)
    r = _Reader(root, version)
    known: dict = {
        "message_id": r.field("messageId"),
        "message_function": r.field("messageFunction"),
        "source_format": version,
        "conversation_id": r.field("conversationId"),
    }
    if known["message_function"] not in volven.field_map()["referralMessageTypes"]:
        issues.append(
            _error(
                "not-supported",
                f"The message type (MsgInfo/Type, Volven 8279) '{known['message_function']}' is not a referral.",
                f"Meldingstypen (Volven 8279) '{known['message_function']}' er ikke en henvisning.",
                r.field_loc("messageFunction"),
                "henvisning-message-type",
            )
        )
        return _failed(issues, **known)

    sender = r.conf["parties"]["requesterOrganization"]["candidates"][0]["xpath"]
    facts = ReferralFacts(
        where=r.field_loc("servType").rsplit("/", 2)[0], requester_where=re.sub(r"\[[^\]]*\]", "", r.loc(sender))
    )
    facts.referral_id = r.field("referralId")
    if not facts.referral_id:
        issues.append(
            _error(
                "required",
                "The referral has no id (DocumentId / Id); changes and cancellations could not find it.",
                "Henvisningen mangler id (DocumentId / Id); endringer og kanselleringer kan ikke finne den.",
                r.field_loc("referralId"),
                "henvisning-id",
            )
        )
    _status(r, facts, issues)
    issue_date = r.field("issueDate")
    facts.authored_on = fhir_datetime(issue_date)
    if facts.authored_on is None:
        issues.append(
            _error(
                "value",
                f"The referral date (IssueDate) '{issue_date or ''}' is missing or not a date/time.",
                f"Henvisningsdatoen (IssueDate) '{issue_date or ''}' mangler eller er ikke en dato/tid.",
                r.field_loc("issueDate"),
                "henvisning-date",
            )
        )
    _priority(r, facts, issues)
    facts.patient = _patient(r, issues)
    facts.referrer = _person(r, "referrer", issues)
    facts.general_practitioner = _person(r, "generalPractitioner", issues)
    for name in ("requesterOrganization", "receiverOrganization"):
        hit = _party(r, name)
        org = _org(r, *hit, issues) if hit else None
        if name == "requesterOrganization":
            facts.requester_org = org
        else:
            facts.receiver_org = org
    if facts.receiver_org is None:
        issues.append(
            Issue(
                "warning",
                "required",
                "The message names no receiving organisation.",
                None,
                "Meldingen har ingen mottakende virksomhet.",
                "henvisning-receiver",
            )
        )
    _codes(r, facts, issues)
    _diagnoses(r, facts, issues)
    _texts(r, facts)

    bundle, sources = build_bundle(facts)
    sources["ServiceRequest.identifier"] = r.field_loc("referralId")  # a change of a referral not received
    issues.extend(_identifier_issues(bundle, sources, test_mode))
    names = volven.field_map()["messageTypeNames"]
    return MappedReferral(
        facts.action,
        bundle,
        (REFERRAL_ID_SYSTEM, facts.referral_id) if facts.referral_id else None,
        issues,
        message_type=names.get(facts.action or ""),
        sender_her_id=_her_id(facts.requester_org),
        receiver_her_id=_her_id(facts.receiver_org),
        sources=sources,
        **known,
    )
