"""fhir_server.naming: the identifier systems come from terminology/NamingSystem-*.json, the canonical URLs
the code claims exist in the data folders."""

from __future__ import annotations

import json

import pytest

from fhir_server import naming
from fhir_server.core.conformance.package_builder import PACKAGE_TYPES
from fhir_server.core.conformance.packages import ConformanceRegistry
from fhir_server.core.conformance.seed import read_data_resources
from fhir_server.core.validation.identifiers import ALIASES, SYSTEMS
from fhir_server.data import data_folder, data_folders
from fhir_server.domain.referral import intake, routing_task

#: The published national OIDs (Volven/NHN): a data file that drifted from them is caught here.
PUBLISHED = {
    "FNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.1",
    "DNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.2",
    "FHN_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.3",
    "HPR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.4",
    "DUF_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.5",
    "ORGNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.101",
    "RESH_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.102",
    "AKO_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.107",
    "HER_SYSTEM": "urn:oid:2.16.578.1.12.4.1.2",
    "HNR_SYSTEM": "HNR",
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_system_constant_is_its_naming_system_files_preferred_id(name: str):
    assert getattr(naming, name) == PUBLISHED[name]
    national = next(n for n in naming.NATIONAL_SYSTEMS.values() if n.system == PUBLISHED[name])
    resource = json.loads((data_folder("terminology") / f"NamingSystem-{national.file}.json").read_text("utf-8"))
    preferred = [u for u in resource["uniqueId"] if u.get("preferred")]
    assert len(preferred) == 1 and PUBLISHED[name].removeprefix("urn:oid:") == preferred[0]["value"]


def test_every_naming_system_file_is_named_and_known_to_the_identifier_checks():
    files = {p.stem.removeprefix("NamingSystem-") for p in data_folder("terminology").glob("NamingSystem-*.json")}
    assert files == set(naming.NATIONAL_SYSTEMS)
    assert set(SYSTEMS) == {n.system for n in naming.NATIONAL_SYSTEMS.values()}
    # the aliases are the files' other uniqueIds, e.g. Brønnøysund's URI for organisasjonsnummer
    assert ALIASES["http://data.brreg.no/begrep/28155"] == naming.ORGNR_SYSTEM
    assert ALIASES["http://hl7.no/fhir/NamingSystem/FNR"] == naming.FNR_SYSTEM
    assert naming.with_aliases(naming.ORGNR_SYSTEM) == {naming.ORGNR_SYSTEM, "http://data.brreg.no/begrep/28155"}


def test_the_registry_indexes_the_naming_systems_by_the_same_systems():
    registry = ConformanceRegistry()
    registry.load_folder(data_folder("terminology"))
    for national in naming.NATIONAL_SYSTEMS.values():
        found = registry.resolve(national.system)
        assert found is not None and found["id"] == national.file
        for alias in national.aliases:
            assert registry.resolve(alias)["id"] == national.file


def test_the_canonical_urls_the_code_claims_are_defined_in_the_data_folders():
    defined = {r.get("url") for r in read_data_resources(data_folders()) if r["resourceType"] in PACKAGE_TYPES}
    claimed = [
        *intake.PROFILES.values(),
        routing_task.TASK_PROFILE,
        naming.code_system("routing-rule"),
        naming.code_system("hub-task-input"),
        naming.code_system("pathway-milestone"),
    ]
    assert [url for url in claimed if url not in defined] == []
    assert all(url.startswith(naming.BASE + "/") for url in claimed)
