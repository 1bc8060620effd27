"""A simple JSON referral form for EHRs that do not speak FHIR, validated by :class:`ReferralFormSchema`.

Shape (see ``mappings/examples/referral-form-example.json``)::

    {"referralId": "...", "date": "2026-11-20" | "2026-11-20T10:00:00+01:00", "priority": "routine|urgent|stat",
     "patient": {"fnr" | "dnr": "...", "family": "...", "given": ["..."], "birthDate": "YYYY-MM-DD",
                 "gender": "female|male|other|unknown",
                 "address": {"line": ["..."], "postalCode": "...", "city": "...", "kommunenummer": "4601"}},
     "referrer": {"hpr": "...", "family": "...", "given": ["..."],
                  "organisation": {"orgnr": "...", "herId": "...", "name": "..."}},
     "receiver": {"orgnr": "...", "herId": "...", "name": "..."},          (optional: free choice)
     "diagnoses": [{"system": "icd10|icpc2", "code": "...", "display": "..."}],
     "reason": "free text", "pregnant": true | false}                      (pregnant optional)

:func:`form_to_bundle` maps a form to the same transaction Bundle as the XML door. Schema errors become
issues whose ``expression`` is the field path (``patient.fnr``, ``diagnoses[0].code``); no issue text
contains a whole personal number.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from fhir_server.core.issues import Issue
from fhir_server.core.validation.identifiers import mask_identity_numbers, validate_identifiers
from fhir_server.domain.referral.mapping.bundle_builder import build_bundle
from fhir_server.domain.referral.mapping.henvisning_xml import fhir_datetime
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
from fhir_server.domain.referral.mapping.volven import ICD10_SYSTEM, ICPC2_SYSTEM
from fhir_server.naming import DNR_SYSTEM, FNR_SYSTEM, HER_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM

DIAGNOSIS_SYSTEMS = {"icd10": ICD10_SYSTEM, "icpc2": ICPC2_SYSTEM}

_ELEVEN = validate.Regexp(r"^\d{11}$", error="must be 11 digits")
_DIGITS = validate.Regexp(r"^[1-9]\d*$", error="must be a positive whole number (digits only)")
_ORGNR = validate.Regexp(r"^\d{9}$", error="must be 9 digits")
_NOT_BLANK = validate.Length(min=1, error="must not be empty")


def _when(value: str) -> bool:
    return fhir_datetime(value) is not None


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class AddressSchema(_Strict):
    line = fields.List(fields.String(validate=_NOT_BLANK))
    postalCode = fields.String(validate=validate.Regexp(r"^\d{4}$", error="must be 4 digits"))
    city = fields.String(validate=_NOT_BLANK)
    kommunenummer = fields.String(required=True, validate=validate.Regexp(r"^\d{4}$", error="must be 4 digits"))


class PatientSchema(_Strict):
    fnr = fields.String(validate=_ELEVEN)
    dnr = fields.String(validate=_ELEVEN)
    family = fields.String(required=True, validate=_NOT_BLANK)
    given = fields.List(fields.String(validate=_NOT_BLANK))
    birthDate = fields.Date()
    gender = fields.String(validate=validate.OneOf(["female", "male", "other", "unknown"]))
    address = fields.Nested(AddressSchema, required=True)

    @validates_schema(skip_on_field_errors=False)
    def _one_number(self, data: dict, **_: object) -> None:
        if bool(data.get("fnr")) == bool(data.get("dnr")):
            raise ValidationError("give exactly one of fnr (fødselsnummer) or dnr (D-nummer)", "fnr")


class OrganisationSchema(_Strict):
    orgnr = fields.String(validate=_ORGNR)
    herId = fields.String(validate=_DIGITS)
    name = fields.String(validate=_NOT_BLANK)

    @validates_schema(skip_on_field_errors=False)
    def _one_id(self, data: dict, **_: object) -> None:
        if not data.get("orgnr") and not data.get("herId"):
            raise ValidationError("give orgnr or herId", "orgnr")


class ReferrerSchema(_Strict):
    hpr = fields.String(required=True, validate=_DIGITS)
    family = fields.String(required=True, validate=_NOT_BLANK)
    given = fields.List(fields.String(validate=_NOT_BLANK))
    organisation = fields.Nested(OrganisationSchema)


class DiagnosisSchema(_Strict):
    system = fields.String(required=True, validate=validate.OneOf(sorted(DIAGNOSIS_SYSTEMS)))
    code = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Z][0-9A-Z.]{1,7}$", error="must be an ICD-10 or ICPC-2 code, e.g. F32.1"),
    )
    display = fields.String(validate=_NOT_BLANK)


class ReferralFormSchema(_Strict):
    """The JSON referral form (marshmallow). ``load`` returns the data with dates as ``datetime.date``."""

    referralId = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Za-z0-9.\-_]{1,64}$", error="1-64 letters, digits, '.', '-', '_'")
    )
    date = fields.String(required=True)  # checked in _date: a FHIR date or dateTime
    priority = fields.String(required=True, validate=validate.OneOf(["routine", "urgent", "stat"]))
    patient = fields.Nested(PatientSchema, required=True)
    referrer = fields.Nested(ReferrerSchema, required=True)
    receiver = fields.Nested(OrganisationSchema)
    diagnoses = fields.List(fields.Nested(DiagnosisSchema), required=True, validate=validate.Length(min=1))
    reason = fields.String(required=True, validate=_NOT_BLANK)
    pregnant = fields.Boolean()

    @validates_schema(skip_on_field_errors=False)
    def _date(self, data: dict, **_: object) -> None:
        if "date" in data and not _when(data["date"]):
            raise ValidationError(
                "must be a date (YYYY-MM-DD) or a date-time (YYYY-MM-DDThh:mm:ss, offset optional)", "date"
            )


def _flatten(messages: object, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict -> [(field path, message)]."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if isinstance(key, int):
                child = f"{path}[{key}]"
            elif key == "_schema":
                child = path
            else:
                child = f"{path}.{key}" if path else str(key)
            out.extend(_flatten(value, child))
    elif isinstance(messages, list):
        for item in messages:
            out.extend(_flatten(item, path))
    else:
        out.append((path, str(messages)))
    return out


def _schema_issues(error: ValidationError) -> list[Issue]:
    issues = []
    for path, message in _flatten(error.messages):
        text = mask_identity_numbers(message)
        issues.append(
            Issue(
                "error",
                "required" if message == "Missing data for required field." else "invalid",
                f"{path or 'form'}: {text}",
                path or None,
                f"{path or 'skjema'}: {text}",
                "referral-form-schema",
            )
        )
    return issues


def _org(data: dict | None, where: str) -> OrgFacts | None:
    if not data:
        return None
    idents = []
    if data.get("orgnr"):
        idents.append(Ident(ORGNR_SYSTEM, data["orgnr"], f"{where}.orgnr"))
    if data.get("herId"):
        idents.append(Ident(HER_SYSTEM, data["herId"], f"{where}.herId"))
    return OrgFacts(data.get("name"), idents)


def _facts(form: dict) -> ReferralFacts:
    p = form["patient"]
    number = ("fnr", FNR_SYSTEM) if p.get("fnr") else ("dnr", DNR_SYSTEM)
    address = p["address"]
    patient = PersonFacts(
        identifiers=[Ident(number[1], p[number[0]], f"patient.{number[0]}")],
        family=p["family"],
        given=list(p.get("given") or []),
        birth_date=p["birthDate"].isoformat() if p.get("birthDate") else None,
        gender=p.get("gender"),
        addresses=[
            AddressFacts(
                use="home",
                lines=list(address.get("line") or []),
                postal_code=address.get("postalCode"),
                city=address.get("city"),
                municipality=address["kommunenummer"],
            )
        ],
    )
    ref = form["referrer"]
    referrer = PersonFacts(
        identifiers=[Ident(HPR_SYSTEM, ref["hpr"], "referrer.hpr")],
        family=ref["family"],
        given=list(ref.get("given") or []),
    )
    return ReferralFacts(
        referral_id=form["referralId"],
        action="create",
        status="active",
        authored_on=fhir_datetime(form["date"]),
        priority=form["priority"],
        patient=patient,
        referrer=referrer,
        requester_org=_org(ref.get("organisation"), "referrer.organisation"),
        receiver_org=_org(form.get("receiver"), "receiver"),
        diagnoses=[
            DiagnosisFacts(DIAGNOSIS_SYSTEMS[d["system"]], d["code"], d.get("display"), f"diagnoses[{i}]")
            for i, d in enumerate(form["diagnoses"])
        ],
        notes=[form["reason"]],
        pregnant=form.get("pregnant"),
    )


def form_to_bundle(data: dict, *, test_mode: bool = False) -> MappedReferral:
    """Validate a referral form and map it to a transaction Bundle; problems are issues at the field path.

    ``test_mode`` accepts synthetic test person numbers, as the identifier checks do.
    """
    if not isinstance(data, dict):
        return MappedReferral(
            None,
            {},
            None,
            [
                Issue(
                    "error",
                    "structure",
                    "The form must be a JSON object.",
                    None,
                    "Skjemaet må være et JSON-objekt.",
                    "referral-form-schema",
                )
            ],
            source_format="form",
        )
    try:
        form = ReferralFormSchema().load(data)
    except ValidationError as exc:
        return MappedReferral(None, {}, None, _schema_issues(exc), source_format="form")
    facts = _facts(form)
    bundle, sources = build_bundle(facts)
    issues = []
    for issue in validate_identifiers(bundle, test_mode=test_mode):
        where = sources.get(issue.expression or "", issue.expression)
        issues.append(Issue(issue.severity, issue.code, issue.diagnostics, where, issue.diagnostics_nb, issue.rule))
    her = next(
        (i.value for i in (facts.receiver_org.identifiers if facts.receiver_org else []) if i.system == HER_SYSTEM),
        None,
    )
    sender = next(
        (i.value for i in (facts.requester_org.identifiers if facts.requester_org else []) if i.system == HER_SYSTEM),
        None,
    )
    return MappedReferral(
        "create",
        bundle,
        (REFERRAL_ID_SYSTEM, facts.referral_id) if facts.referral_id else None,
        issues,
        message_type="new",
        source_format="form",
        sender_her_id=sender,
        receiver_her_id=her,
    )
