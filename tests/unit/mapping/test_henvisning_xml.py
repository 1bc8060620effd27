"""Henvisning XML v1.1 / v2.0 -> FHIR transaction Bundle: the official examples and broken messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.core.issues import Issue, has_errors
from fhir_server.core.validation import validate_resource
from fhir_server.core.validation.identifiers import identity_number_in
from fhir_server.domain.referral.mapping import MappedReferral, normalise_referral, parse_henvisning
from fhir_server.domain.referral.mapping.model import REFERRAL_ID_SYSTEM

XML_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "no-henvisning-xml"
FNR, DNR, HPR, HER = (
    "urn:oid:2.16.578.1.12.4.1.4.1",
    "urn:oid:2.16.578.1.12.4.1.4.2",
    "urn:oid:2.16.578.1.12.4.1.4.4",
    "urn:oid:2.16.578.1.12.4.1.2",
)
ICD10, ICPC2 = "urn:oid:2.16.578.1.12.4.1.1.7110", "urn:oid:2.16.578.1.12.4.1.1.7170"
H20 = "MsgHead/Document/RefDoc/Content/Henvisning"

#: example file -> (action, message_type, priority)
REFERRAL_EXAMPLES = {
    "Henvisning_ny_tilstand_v2-0_Ny.xml": ("create", "new", "routine"),
    "Henvisning_ny_tilstand_v2-0_Endring.xml": ("update", "change", "routine"),
    "Henvisning_ny_tilstand_v2-0_Kansellering.xml": ("revoke", "cancel", "routine"),
    "Henvisning_ny_tilstand_v2-0_Test_mange_elementer.xml": ("create", "new", "routine"),
    "Henvisning_ny_tilstand_v2-0_Uten_rettighetsvurdering_Ny.xml": ("create", "new", "routine"),
    "Henvisning_ny_tilstand_v2-0_Uten_rettighetsvurdering_Endring.xml": ("update", "change", "routine"),
    "Henvisning_ny_tilstand_v2-0_Uten_rettighetsvurdering_Kansellering.xml": ("revoke", "cancel", "routine"),
    "Viderehenvisning_v2-0_Rettighetsvurdert_etter_ventetid_pakkeforlop_Ny.xml": ("create", "new", "urgent"),
    "Viderehenvisning_v2-0_Rettighetsvurdert_etter_ventetid_pakkeforlop_Endring.xml": ("update", "change", "urgent"),
    "Viderehenvisning_v2-0_Rettighetsvurdert_etter_ventetid_pakkeforlop_Kansellering.xml": (
        "revoke",
        "cancel",
        "urgent",
    ),
    "Viderehenvisning_v2-0_Uten_rettighetsvurdering_Ny.xml": ("create", "new", "routine"),
    "Viderehenvisning_v2-0_Uten_rettighetsvurdering_Endring.xml": ("update", "change", "routine"),
    "Viderehenvisning_v2-0_Uten_rettighetsvurdering_Kansellering.xml": ("revoke", "cancel", "routine"),
    "henvisning_v1.1_n.xml": ("create", "new", "urgent"),
    "henvisning_v1.1_m.xml": ("update", "change", "urgent"),
    "henvisning_v1.1_c.xml": ("revoke", "cancel", "urgent"),
    "henvisning strukturert_v1.1_n.xml": ("create", "new", "stat"),
}
NOT_REFERRALS = [
    "Status_paa_henvisning-InnkaltEtterViderehenvisning.xml",
    "ebmx-3-0-ebxml-header.Henvisning20.xml",
    "Henvisning-2.0-metadata.xml",
]


def example(name: str) -> bytes:
    path = XML_DIR / name
    if not path.is_file():
        pytest.skip(f"reference example {name} not found in ../shared/reference/no-henvisning-xml (not in the repo)")
    return path.read_bytes()


def resources(mapped: MappedReferral, rtype: str) -> list[dict]:
    return [e["resource"] for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == rtype]


def service_request(mapped: MappedReferral) -> dict:
    (sr,) = resources(mapped, "ServiceRequest")
    return sr


def entry_of(mapped: MappedReferral, reference: str) -> dict:
    return next(e["resource"] for e in mapped.bundle["entry"] if e["fullUrl"] == reference)


# --- a small message of our own (no dependency on ../shared) ---------------------------------------------------

V20 = """<?xml version="1.0" encoding="UTF-8"?>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
 <MsgInfo>
  <Type V="{msg_type}" DN="Henvisning"/>
  <MIGversion>v1.2 2006-05-24</MIGversion>
  <GenDate>2026-11-20T10:00:00</GenDate>
  <MsgId>11111111-2222-3333-4444-555555555555</MsgId>
  <Sender><Organisation><OrganisationName>Legesenteret</OrganisationName>
   <Ident><Id>56704</Id><TypeId V="HER" DN="HER-id" S="2.16.578.1.12.4.1.1.9051"/></Ident>
   <Ident><Id>983974724</Id><TypeId V="ENH" DN="Orgnr" S="2.16.578.1.12.4.1.1.9051"/></Ident>
  </Organisation></Sender>
  <Receiver><Organisation><OrganisationName>Helse Bergen HF</OrganisationName>
   <Ident><Id>59</Id><TypeId V="HER" DN="HER-id" S="2.16.578.1.12.4.1.1.9051"/></Ident>
  </Organisation></Receiver>
  <Patient>
   <FamilyName>Nordmann</FamilyName><GivenName>Kari</GivenName><DateOfBirth>1985-03-15</DateOfBirth>
   <Sex V="2" DN="Kvinne"/>
   {ident}
   <Address><Type V="H" DN="Bostedsadresse"/><StreetAdr>Storgata 1</StreetAdr><PostalCode>3015</PostalCode>
    <City>Drammen</City><County V="{kommune}" DN="Drammen"/></Address>
  </Patient>
 </MsgInfo>
 <Document><RefDoc><MsgType V="XML" DN="XML-instans"/><Content>
  <Henvisning xmlns="http://ehelse.no/xmlstds/henvisning/2017-11-30"
              xmlns:po="http://ehelse.no/xmlstds/po/poKomponent/2017-11-30"
              xmlns:fk1="http://www.kith.no/xmlstds/felleskomponent1">
   <ServType V="{serv_type}" DN="Ny"/>
   <IssueDate>2026-11-20T09:30:00</IssueDate>
   <DocumentId>ref-42</DocumentId>
   <po:AnsvarForRapport><po:AnsvarligRapport>
     <fk1:TypeHealthcareProfessional V="LE" DN="Lege"/><fk1:FamilyName>Lege</fk1:FamilyName>
     <fk1:GivenName>Ola</fk1:GivenName>
     <fk1:Ident><fk1:Id>9144889</fk1:Id><fk1:TypeId V="HPR" DN="HPR-nummer" S="2.16.578.1.12.4.1.1.8116"/></fk1:Ident>
    </po:AnsvarligRapport><po:TypeRelasjon V="HHE" S="2.16.578.1.12.4.1.1.8254" DN="Henvisende helsepersonell"/>
   </po:AnsvarForRapport>
   <po:TypeInnholdIMelding><po:TypeInnhold V="10" S="2.16.578.1.12.4.1.1.8455" DN="Utredning/behandling"/>
   </po:TypeInnholdIMelding>
   <ReasonAsText><Heading V="PROB" DN="Aktuell problemstilling"/>
    <TextResultValue>Tungsinn</TextResultValue></ReasonAsText>
   <PatientPrecaution><Precaution>Gravid</Precaution></PatientPrecaution>
   <Diagnosis><Concept V="F32.1" S="2.16.578.1.12.4.1.1.7110" DN="Moderat depressiv episode"/></Diagnosis>
   <ReqServ><ServType V="N" DN="Ny"/><Priority V="{priority}" DN="x"/></ReqServ>
  </Henvisning>
 </Content></RefDoc></Document>
</MsgHead>
"""
GOOD_IDENT = '<Ident><Id>{number}</Id><TypeId V="{kind}" DN="Fødselsnummer" S="2.16.578.1.12.4.1.1.8116"/></Ident>'


def message(
    *,
    msg_type: str = "HENVISNING",
    serv_type: str = "N",
    priority: str = "3",
    number: str = "15038512363",
    kind: str = "FNR",
    kommune: str = "3301",
    ident: str | None = None,
) -> bytes:
    ident = GOOD_IDENT.format(number=number, kind=kind) if ident is None else ident
    return V20.format(msg_type=msg_type, serv_type=serv_type, priority=priority, ident=ident, kommune=kommune).encode(
        "utf-8"
    )


# --- official examples -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REFERRAL_EXAMPLES))
def test_official_example_maps_to_a_valid_bundle(name: str) -> None:
    mapped = parse_henvisning(example(name), test_mode=True)
    action, message_type, priority = REFERRAL_EXAMPLES[name]
    assert not has_errors(mapped.issues), [i.diagnostics for i in mapped.issues]
    # the published examples carry no municipality number (Address/County): a warning, routing will triage
    assert {i.rule for i in mapped.issues} <= {"henvisning-municipality", "henvisning-diagnosis-system"}
    assert (mapped.action, mapped.message_type) == (action, message_type)
    assert mapped.bundle["type"] == "transaction"
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in mapped.bundle["entry"])
    assert validate_resource(mapped.bundle) == []
    sr = service_request(mapped)
    assert sr["priority"] == priority
    assert sr["status"] == ("revoked" if action == "revoke" else "active")
    assert sr["intent"] == "order"
    assert sr["category"][0]["coding"][0]["code"] == "3457005"
    assert mapped.referral_identifier == (REFERRAL_ID_SYSTEM, sr["identifier"][0]["value"])
    (patient,) = resources(mapped, "Patient")
    assert patient["identifier"][0]["system"] == FNR
    assert entry_of(mapped, sr["subject"]["reference"]) is patient
    assert entry_of(mapped, sr["requester"]["reference"])["identifier"][0]["system"] == HPR
    assert entry_of(mapped, sr["performer"][0]["reference"])["resourceType"] == "Organization"
    assert mapped.sender_her_id and mapped.receiver_her_id


def test_v20_new_referral_fields() -> None:
    mapped = parse_henvisning(example("Henvisning_ny_tilstand_v2-0_Ny.xml"))
    assert mapped.source_format == "2.0"
    assert mapped.message_id == "76665c90-3198-11e8-b566-0800200c9a66"
    assert mapped.message_function == "HENVISNING_NYTILSTAND"
    assert (mapped.sender_her_id, mapped.receiver_her_id) == ("91096", "59")
    assert mapped.referral_identifier == (REFERRAL_ID_SYSTEM, "cf4efb50-3198-11e8-b566-0800200c9a66")
    (patient,) = resources(mapped, "Patient")
    assert patient["name"] == [{"family": "Danser", "given": ["Line"]}]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1969-11-13")
    sr = service_request(mapped)
    assert sr["authoredOn"] == "2018-03-30T09:15:00+02:00"  # local time given Norway's summer offset
    assert sr["reasonCode"][0]["coding"][0] == {
        "system": ICPC2,
        "code": "L88",
        "display": "Reumatoid artritt/reumatisk sykdom",
    }
    assert sr["code"]["coding"][0]["system"] == "urn:oid:2.16.578.1.12.4.1.1.8455"
    assert {"system": "urn:oid:2.16.578.1.12.4.1.1.8306", "code": "N", "display": "Elektiv/Ordinær (elektiv)"} in [
        d["coding"][0] for d in sr["orderDetail"]
    ]
    performer = entry_of(mapped, sr["performer"][0]["reference"])
    assert performer["name"] == "Ortopedisk kirurgi"
    assert entry_of(mapped, performer["partOf"]["reference"])["identifier"] == [{"system": HER, "value": "59"}]
    (condition,) = resources(mapped, "Condition")
    assert condition["code"]["coding"][0]["code"] == "L88"
    assert sr["reasonReference"] == [
        {"reference": next(e["fullUrl"] for e in mapped.bundle["entry"] if e["resource"] is condition)}
    ]
    assert any("Fraskilt" in n["text"] for n in sr["note"])
    # the fastlege (RoleToPatient 6) becomes generalPractitioner
    gp = entry_of(mapped, patient["generalPractitioner"][0]["reference"])
    assert gp["identifier"] == [{"system": HPR, "value": "9144897"}]


def test_v11_new_referral_fields() -> None:
    mapped = parse_henvisning(example("henvisning_v1.1_n.xml"))
    assert mapped.source_format == "1.1"
    assert (mapped.sender_her_id, mapped.receiver_her_id) == ("56704", "59")
    (patient,) = resources(mapped, "Patient")
    assert patient["name"] == [{"family": "Danser", "given": ["Line"]}]
    sr = service_request(mapped)
    assert sr["orderDetail"][0]["coding"][0]["system"] == "urn:oid:2.16.578.1.12.4.1.1.8304"
    assert entry_of(mapped, sr["requester"]["reference"])["identifier"] == [{"system": HPR, "value": "9144900"}]


def test_pathway_referral_keeps_pk_and_pathway_codes_and_dates() -> None:
    mapped = parse_henvisning(example("Viderehenvisning_v2-0_Rettighetsvurdert_etter_ventetid_pakkeforlop_Ny.xml"))
    sr = service_request(mapped)
    details = [d["coding"][0] for d in sr["orderDetail"]]
    assert {"PK", "A16A", "A16S", "A16CK"} <= {c["code"] for c in details}
    urls = {e["url"]: e["valueDateTime"] for e in sr["extension"]}
    assert urls["http://helsenorge.no/fhir/StructureDefinition/no-ansiennitets-dato"] == "2017-12-20"
    # the published example codes ICD-10 C61 with the ATC code system (7180): warned, kept as sent
    (warning,) = [i for i in mapped.issues if i.rule == "henvisning-diagnosis-system"]
    assert warning.severity == "warning"
    assert warning.expression == f"{H20}/Diagnosis/Concept[1]/@S"
    assert sr["reasonCode"][0]["coding"][0] | {"display": None} == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.7180",
        "code": "C61",
        "display": None,
    }
    (condition,) = resources(mapped, "Condition")
    assert condition["code"] == sr["reasonCode"][0]


@pytest.mark.parametrize("name", NOT_REFERRALS)
def test_examples_that_are_not_referrals_give_an_issue(name: str) -> None:
    mapped = parse_henvisning(example(name))
    assert mapped.bundle == {} and mapped.action is None
    assert [i.code for i in mapped.issues] == ["not-supported"]


# --- our own messages: valid and broken --------------------------------------------------------------------------


def test_own_message_maps_municipality_pregnancy_and_orgnr() -> None:
    mapped = parse_henvisning(message())
    assert mapped.issues == []
    assert validate_resource(mapped.bundle) == []
    (patient,) = resources(mapped, "Patient")
    coding = patient["address"][0]["_district"]["extension"][0]["valueCoding"]
    assert (coding["system"], coding["code"]) == ("urn:oid:2.16.578.1.12.4.1.1.3402", "3301")
    (observation,) = resources(mapped, "Observation")
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "77386006"
    sr = service_request(mapped)
    assert sr["reasonCode"][0]["coding"][0]["system"] == ICD10
    assert sr["priority"] == "urgent"
    requester_org = next(o for o in resources(mapped, "Organization") if o["name"] == "Legesenteret")
    assert {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "983974724"} in requester_org["identifier"]


def test_missing_municipality_is_a_warning_at_the_address() -> None:
    mapped = parse_henvisning(message(kommune="").replace(b'<County V="" DN="Drammen"/>', b""))
    where = "MsgHead/MsgInfo/Patient/Address/County"
    assert [(i.severity, i.expression) for i in mapped.issues] == [("warning", where)]


def test_pre2024_municipality_from_xml_is_normalised_afterwards() -> None:
    mapped = parse_henvisning(message(kommune="3005"))
    bundle, issues = normalise_referral(mapped.bundle)
    (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["address"][0]["_district"]["extension"][0]["valueCoding"]["code"] == "3301"
    assert [i.rule for i in issues] == ["pre2024-municipality"]


def test_d_number_gets_the_d_number_system() -> None:
    mapped = parse_henvisning(message(number="49079023425", kind="DNR"))
    (patient,) = resources(mapped, "Patient")
    assert patient["identifier"] == [{"system": DNR, "value": "49079023425"}]
    assert not has_errors(mapped.issues)


def test_malformed_xml_gives_an_issue_not_an_exception() -> None:
    mapped = parse_henvisning(b"<MsgHead><MsgInfo></MsgHead>")
    assert mapped.bundle == {} and mapped.action is None
    assert [(i.severity, i.code) for i in mapped.issues] == [("error", "structure")]
    assert parse_henvisning(b"").issues[0].code == "structure"


def test_entities_are_refused_and_never_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<Message xmlns="http://www.kith.no/xmlstds/henvisning/2012-02-15"><MsgId>&x;</MsgId></Message>'
    ).encode()
    mapped = parse_henvisning(xxe)
    assert mapped.bundle == {} and mapped.issues[0].code == "security"
    assert "TOPSECRET" not in repr(mapped)


def test_missing_patient_id_is_an_error_at_the_xml_location_unless_name_and_birth_date_identify() -> None:
    mapped = parse_henvisning(message(ident=""))  # Ident is minOccurs=0 in MsgHead: name and birth date suffice
    (issue,) = [i for i in mapped.issues if i.rule == "henvisning-patient-id"]
    assert (issue.severity, issue.code, issue.expression) == ("warning", "required", "MsgHead/MsgInfo/Patient/Ident")
    unnamed = message(ident="").replace(b"<DateOfBirth>1985-03-15</DateOfBirth>", b"")
    (issue,) = [i for i in parse_henvisning(unnamed).issues if i.rule == "henvisning-patient-id"]
    assert (issue.severity, issue.code, issue.expression) == ("error", "required", "MsgHead/MsgInfo/Patient/Ident")


def test_unknown_message_type_is_not_supported() -> None:
    mapped = parse_henvisning(message(msg_type="DIALOG_HELSEFAGLIG"))
    assert mapped.bundle == {} and mapped.action is None
    (issue,) = mapped.issues
    assert (issue.code, issue.expression) == ("not-supported", "MsgHead/MsgInfo/Type/@V")


def test_wrong_priority_code_is_an_error_and_no_priority_is_guessed() -> None:
    mapped = parse_henvisning(message(priority="X9"))
    (issue,) = [i for i in mapped.issues if i.rule == "henvisning-priority"]
    assert (issue.severity, issue.code) == ("error", "code-invalid")
    assert issue.expression == f"{H20}/ReqServ/Priority/@V"
    assert "priority" not in service_request(mapped)


def test_unknown_serv_type_is_an_error() -> None:
    mapped = parse_henvisning(message(serv_type="H"))
    assert [i.expression for i in mapped.issues if i.rule == "henvisning-servtype"] == [f"{H20}/ServType/@V"]
    assert mapped.action is None


def test_cancel_and_change_messages_update_by_identifier() -> None:
    for serv_type, action in (("C", "revoke"), ("M", "update")):
        mapped = parse_henvisning(message(serv_type=serv_type))
        entry = next(e for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
        assert mapped.action == action
        assert entry["request"] == {"method": "PUT", "url": f"ServiceRequest?identifier={REFERRAL_ID_SYSTEM}|ref-42"}


def test_bad_fodselsnummer_is_reported_at_the_xml_path_and_masked() -> None:
    mapped = parse_henvisning(message(number="15038512364"))
    (issue,) = [i for i in mapped.issues if i.rule == "no-fnr-checksum"]
    assert issue.expression == "MsgHead/MsgInfo/Patient/Ident[1]/Id"
    assert "15038512364" not in issue.diagnostics + (issue.diagnostics_nb or "")
    assert "150385*****" in issue.diagnostics


def test_synthetic_number_needs_test_mode() -> None:
    tenor = "15838510075"  # month + 80, valid check digits (Skatteetaten Tenor test number)
    assert [i.rule for i in parse_henvisning(message(number=tenor)).issues] == ["no-fnr-synthetic"]
    assert parse_henvisning(message(number=tenor), test_mode=True).issues == []


def test_no_issue_text_contains_a_whole_fodselsnummer() -> None:
    broken = [
        message(number="15038512364"),
        message(ident=""),
        message(priority="X9"),
        message(number="15038512363", kind="HPR"),
        b"<a>15038512363</b>",
    ]
    for xml in broken:
        for issue in parse_henvisning(xml).issues:
            text = f"{issue.diagnostics} {issue.diagnostics_nb} {issue.expression}"
            assert "15038512363" not in text and "15038512364" not in text
            assert not identity_number_in(text)


def test_v11_message_wrapped_in_msghead_is_read() -> None:
    inner = example("henvisning_v1.1_n.xml").split(b"?>", 1)[1]
    wrapped = (
        b'<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo/><Document><RefDoc>'
        b"<Content>" + inner + b"</Content></RefDoc></Document></MsgHead>"
    )
    mapped = parse_henvisning(wrapped)
    assert (mapped.source_format, mapped.action) == ("1.1", "create")
    assert service_request(mapped)["priority"] == "urgent"


def test_text_instead_of_bytes_is_an_issue() -> None:
    assert parse_henvisning("<Message/>").issues[0].code == "structure"  # type: ignore[arg-type]


def test_issues_about_the_bundle_are_located_at_the_xml_elements_they_came_from() -> None:
    mapped = parse_henvisning(message())
    index = next(i for i, e in enumerate(mapped.bundle["entry"]) if e["resource"]["resourceType"] == "ServiceRequest")
    patient = next(i for i, e in enumerate(mapped.bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    found = mapped.located_in_input(
        [
            Issue(
                "warning",
                "required",
                f"Bundle.entry[{index}].resource.reasonCode: missing",
                f"Bundle.entry[{index}].resource.reasonCode",
            ),
            Issue("error", "required", "no sender", f"Bundle.entry[{index}].resource.requester"),
            Issue("warning", "value", "check digit", f"Bundle.entry[{patient}].resource.identifier[0].value"),
            Issue("warning", "value", "address", f"Bundle.entry[{patient}].resource.address"),
            Issue("error", "not-found", "unknown referral", "ServiceRequest.identifier"),
        ]
    )
    assert [i.expression for i in found] == [
        H20,  # the referral's own element: the FHIR element has no XML element of its own
        found[1].expression,
        "MsgHead/MsgInfo/Patient/Ident[1]/Id",
        "MsgHead/MsgInfo/Patient",
        f"{H20}/DocumentId",
    ]
    assert found[1].expression and found[1].expression.startswith("MsgHead/")
    assert found[0].diagnostics == "ServiceRequest.reasonCode: missing"  # no internal Bundle path in the text
