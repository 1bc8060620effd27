"""ConformanceRegistry: folders (JSON and XML), npm packages, resolution, suppressions."""

from __future__ import annotations

import io
import json
import tarfile

from profiles_testkit import el, profile

from fhir_server.core.conformance.packages import (
    SUPPRESSIONS_FILE,
    ConformanceRegistry,
    Suppressions,
    xml_to_json,
)

XML_SD = """<?xml version="1.0" encoding="utf-8"?>
<StructureDefinition xmlns="http://hl7.org/fhir">
  <id value="x-patient"/>
  <url value="http://example.org/fhir/StructureDefinition/x-patient"/>
  <version value="1.0.0"/>
  <name value="XPatient"/>
  <status value="draft"/>
  <fhirVersion value="4.0.1"/>
  <kind value="resource"/>
  <abstract value="false"/>
  <type value="Patient"/>
  <baseDefinition value="http://hl7.org/fhir/StructureDefinition/Patient"/>
  <derivation value="constraint"/>
  <differential>
    <element id="Patient.identifier">
      <path value="Patient.identifier"/>
      <min value="1"/>
    </element>
    <element id="Patient.gender">
      <path value="Patient.gender"/>
      <fixedCode value="female"/>
    </element>
  </differential>
</StructureDefinition>
"""


def test_xml_is_converted_with_arrays_and_primitive_types():
    sd = xml_to_json(XML_SD)
    assert sd["abstract"] is False
    elements = sd["differential"]["element"]
    assert isinstance(elements, list) and elements[0] == {
        "id": "Patient.identifier",
        "path": "Patient.identifier",
        "min": 1,
    }
    assert elements[1]["fixedCode"] == "female"


def test_xml_primitive_extensions_and_narrative():
    xml = """<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>
      <div xmlns="http://www.w3.org/1999/xhtml"><p>Kari</p></div></text>
      <active value="true"/>
      <address><district value="Oslo"><extension url="http://e/x">
      <valueCoding><code value="0301"/></valueCoding></extension></district>
      <line value="a"/><line value="b"/></address></Patient>"""
    pat = xml_to_json(xml)
    assert pat["active"] is True
    assert pat["text"]["div"].startswith("<div") and "Kari" in pat["text"]["div"]
    address = pat["address"][0]
    assert address["line"] == ["a", "b"]
    assert address["_district"] == {"extension": [{"url": "http://e/x", "valueCoding": {"code": "0301"}}]}


def test_load_folder_reads_json_and_xml_and_reports_bad_files(tmp_path):
    (tmp_path / "a.xml").write_text(XML_SD, encoding="utf-8")
    vs = {"resourceType": "ValueSet", "url": "http://example.org/vs", "version": "2", "status": "active"}
    (tmp_path / "vs.json").write_text(json.dumps(vs), encoding="utf-8")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "broken.xml").write_text("<Patient", encoding="utf-8")
    (tmp_path / "example.json").write_text(json.dumps({"resourceType": "Patient", "id": "1"}), encoding="utf-8")
    reg = ConformanceRegistry()
    problems = reg.load_folder(tmp_path)
    assert sorted(p.source.rsplit("/", 1)[-1] for p in problems) == ["broken.json", "broken.xml"]
    assert reg.resolve("http://example.org/fhir/StructureDefinition/x-patient")["name"] == "XPatient"
    assert reg.value_set("http://example.org/vs")["version"] == "2"
    assert reg.load_folder(tmp_path / "missing")[0].message == "folder not found"


def test_resolve_versions_and_core_definitions():
    reg = ConformanceRegistry()
    old = profile("p", "Patient", el("Patient.birthDate", min=1))
    new = dict(old, version="1.10")
    reg.add(old)
    reg.add(new)
    url = old["url"]
    assert reg.resolve(url)["version"] == "1.10"  # 1.10 > 1 (numeric comparison)
    assert reg.resolve(url, "1")["version"] == "1"
    assert reg.resolve(f"{url}|1")["version"] == "1"
    assert reg.resolve(f"{url}|9") is None
    assert reg.resolve("http://hl7.org/fhir/StructureDefinition/Patient")["type"] == "Patient"
    assert reg.resolve("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1") is not None
    assert reg.resolve("http://hl7.org/fhir/StructureDefinition/NoSuchType") is None
    assert reg.value_set("http://hl7.org/fhir/ValueSet/administrative-gender") is not None
    assert reg.code_system("http://hl7.org/fhir/administrative-gender") is not None


def test_code_system_found_by_oid_identifier():
    reg = ConformanceRegistry()
    reg.add(
        {
            "resourceType": "CodeSystem",
            "url": "http://example.org/cs/9060",
            "status": "active",
            "content": "complete",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.578.1.12.4.1.1.9060"}],
        }
    )
    assert reg.code_system("urn:oid:2.16.578.1.12.4.1.1.9060")["url"] == "http://example.org/cs/9060"
    assert reg.code_system("urn:oid:2.16.578.1.12.4.1.1.1") is None


def test_naming_systems_are_indexed_by_unique_id():
    reg = ConformanceRegistry()
    reg.add(
        {
            "resourceType": "NamingSystem",
            "name": "HPR",
            "status": "active",
            "kind": "identifier",
            "date": "2020",
            "uniqueId": [
                {"type": "oid", "value": "2.16.578.1.12.4.1.4.4"},
                {"type": "uri", "value": "http://hl7.no/fhir/NamingSystem/HPR"},
            ],
        }
    )
    assert reg.resolve("urn:oid:2.16.578.1.12.4.1.4.4")["name"] == "HPR"
    assert reg.resolve("http://hl7.no/fhir/NamingSystem/HPR")["name"] == "HPR"
    assert reg.resolve("urn:oid:2.16.578.1.12.4.1.4.5") is None


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_load_package(tmp_path):
    sd = profile("pkg", "Patient")
    package = _tgz(
        {
            "package/package.json": json.dumps({"name": "example.pkg", "version": "1.0.0"}).encode(),
            "package/StructureDefinition-pkg.json": json.dumps(sd).encode(),
            "package/example/Patient-1.json": json.dumps({"resourceType": "Patient"}).encode(),
            "package/bad.json": b"{",
        }
    )
    path = tmp_path / "example.pkg-1.0.0.tgz"
    path.write_bytes(package)
    reg = ConformanceRegistry()
    problems = reg.load_package(path)
    assert [p.source.rsplit(":", 1)[-1] for p in problems] == ["package/bad.json"]
    assert reg.structure_definition(sd["url"]) is not None


def test_load_package_reports_a_non_package(tmp_path):
    path = tmp_path / "x.tgz"
    path.write_bytes(_tgz({"readme.txt": b"hello"}))
    assert "package.json is missing" in ConformanceRegistry().load_package(path)[0].message
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tar")
    assert "cannot read package" in ConformanceRegistry().load_package(junk)[0].message


def test_suppressions_are_documented():
    data = json.loads(SUPPRESSIONS_FILE.read_text("utf-8"))
    entries = data["suppressions"]
    assert {e["action"] for e in entries} <= set(data["actions"])
    for entry in entries:
        for key in ("id", "url", "file", "action", "why", "source"):
            assert entry.get(key), (entry.get("id"), key)
    loaded = Suppressions.load()
    url = "http://hl7.no/fhir/StructureDefinition/no-basis-AppointmentResponse"
    assert loaded.ignores_invariant(url, "inv-1") is not None
    assert loaded.ignores_invariant(url, "app-1") is None
    assert Suppressions().ignores_invariant(url, "inv-1") is None


def test_xml_resources_inside_resources_and_decimal_precision():
    xml = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry><fullUrl value="urn:uuid:1"/>'
        '<resource><ServiceRequest><contained><Patient><id value="p"/></Patient></contained>'
        '<status value="active"/><intent value="order"/><subject><reference value="#p"/></subject>'
        '<quantityQuantity><value value="1.50"/></quantityQuantity></ServiceRequest></resource></entry></Bundle>'
    )
    bundle = xml_to_json(xml)
    sr = bundle["entry"][0]["resource"]
    assert sr["contained"] == [{"resourceType": "Patient", "id": "p"}]
    assert str(sr["quantityQuantity"]["value"]) == "1.50"
