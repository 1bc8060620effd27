"""FHIR XML keeps each decimal's literal both ways, wherever it sits (contained, Bundle entries, extensions)."""

from __future__ import annotations

from fhir_server.api.formats import json_to_xml, xml_to_json
from fhir_server.core import jsonio

BUNDLE = (
    '{"resourceType":"Bundle","type":"searchset","total":1,"entry":[{"resource":{"resourceType":"Observation",'
    '"contained":[{"resourceType":"Observation","id":"c","status":"final","code":{"text":"q"},'
    '"valueQuantity":{"value":1.000}}],"status":"final","code":{"text":"x"},"valueQuantity":{"value":72.50},'
    '"component":[{"code":{"text":"y"},"valueQuantity":{"value":100}},'
    '{"code":{"text":"z"},"valueQuantity":{"extension":[{"url":"http://x","valueDecimal":3.10}],"value":1.0E+2}},'
    '{"code":{"text":"n"},"valueInteger":7}]}}]}'
)


def test_json_to_xml_writes_each_literal():
    xml = json_to_xml(jsonio.loads(BUNDLE))
    for literal in (b"1.000", b"72.50", b"100", b"3.10", b"1.0E+2", b"7"):
        assert b'value="' + literal + b'"/>' in xml
    assert b"100.0" not in xml and b'72.5"' not in xml and b'<total value="1"/>' in xml


def test_xml_to_json_keeps_each_literal():
    assert jsonio.dumps(xml_to_json(json_to_xml(jsonio.loads(BUNDLE)))) == jsonio.dumps(jsonio.loads(BUNDLE))
    back = xml_to_json(json_to_xml(jsonio.loads(BUNDLE)))
    assert type(back["total"]) is int and type(back["entry"][0]["resource"]["component"][2]["valueInteger"]) is int
