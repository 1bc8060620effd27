"""Generate the project's geography and catchment JSON (CodeSystems, ConceptMaps, Organizations).

Reads the offline reference data in ``/work/shared/reference/geo`` (third-party data; never copied into the
repository) and writes the project's own FHIR R4 JSON:

* ``terminology/CodeSystem-kommunenummer-2024.json``: the 357 municipalities of 2024, each with its county;
* ``terminology/CodeSystem-fylkesnummer-2024.json``: the 15 counties of 2024;
* ``terminology/ConceptMap-kommunenummer-pre2024-to-2024.json``: 2020-2023 numbers to 2024 numbers;
* ``mappings/ConceptMap-fylke-to-rhf.json``: county to RHF, plus municipality-level exceptions (Bindal);
* ``mappings/ConceptMap-kommune-to-hf-phv.json`` / ``-tsb.json``: municipality to HF (mental health / TSB);
* ``mappings/Organization-rhf-*.json`` and ``mappings/Organization-hf-*.json``.

Sources (see ``/work/shared/reference/geo/SOURCES.md``):

* ``kommuner-2024-derived.csv``: derived from ``robhop/fylker-og-kommuner`` @ ae87825 (Kartverket data, CC BY 4.0);
* ``kommune-2024-til-hf-phv-tsb-derived.csv``: 2024 numbers joined to SSB's 2020 PHV/TSB catchment tables
  (``statisticsnorway/speshelse`` @ 0031f77, ``OPPTAK_PHV_2020.xlsx`` / ``OPPTAK_TSB_2020.xlsx``, MIT);
* the county-to-RHF table, the organisation numbers and names, and the Bindal exception: the project's research
  notes ``/work/shared/docs/pathways-and-routing.md`` sections 3.1-3.4 (marked verified there).

Usage: ``python scripts/build_geography.py [--geo DIR] [--out REPO_ROOT]``. The output is deterministic
(sorted, two-space indent, UTF-8) so a re-run without source changes gives no diff.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

BASE = "https://fhir.referral-hub.no"
KOMMUNE_CS = f"{BASE}/CodeSystem/kommunenummer-2024"
KOMMUNE_2020_CS = f"{BASE}/CodeSystem/kommunenummer-2020"
FYLKE_CS = f"{BASE}/CodeSystem/fylkesnummer-2024"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
SERVICE_LINE_PROPERTY = f"{BASE}/routing/service-line"
HF_PRODUCT_PROPERTY = f"{BASE}/routing/health-trust"
NO_BASIS_ORGANIZATION = "http://hl7.no/fhir/StructureDefinition/no-basis-Organization"
DATE = "2024-01-01"

# --- Facts from /work/shared/docs/pathways-and-routing.md section 3.1 (verified there) -----------------------
RHFS: dict[str, dict] = {
    "991324968": {
        "slug": "helse-sor-ost",
        "name": "Helse Sør-Øst RHF",
        "counties": ["03", "31", "32", "33", "34", "39", "40", "42"],
    },
    "983658725": {"slug": "helse-vest", "name": "Helse Vest RHF", "counties": ["11", "46"]},
    "983658776": {"slug": "helse-midt-norge", "name": "Helse Midt-Norge RHF", "counties": ["15", "50"]},
    "883658752": {"slug": "helse-nord", "name": "Helse Nord RHF", "counties": ["18", "55", "56"]},
}

# --- Section 3.2: health trusts and the two private hospitals with catchment areas (names as written there) ----
HEALTH_TRUSTS: dict[str, str] = {
    "983971636": "Akershus universitetssykehus HF",
    "993467049": "Oslo universitetssykehus HF",
    "983971709": "Sykehuset Innlandet HF",
    "983971768": "Sykehuset Østfold HF",
    "983975259": "Sykehuset i Vestfold HF",
    "983975267": "Sykehuset Telemark HF",
    "983975240": "Sørlandet sykehus HF",
    "894166762": "Vestre Viken HF",
    "965985166": "Lovisenberg Diakonale Sykehus AS",
    "982791952": "Diakonhjemmet Sykehus AS",
    "983974678": "Helse Stavanger HF",
    "983974694": "Helse Fonna HF",
    "983974724": "Helse Bergen HF",
    "983974732": "Helse Førde HF",
    "997005562": "Helse Møre og Romsdal HF",
    "883974832": "St. Olavs hospital HF",
    "983974791": "Helse Nord-Trøndelag HF",
    "983974880": "Finnmarkssykehuset HF",
    "983974899": "Universitetssykehuset Nord-Norge HF",
    "983974910": "Nordlandssykehuset HF",
    "983974929": "Helgelandssykehuset HF",
}
#: Private non-profit hospitals: they have a catchment area and an agreement with the RHF, but are not owned by it.
PRIVATE_WITH_CATCHMENT = {"965985166", "982791952"}

# --- Section 3.4: municipality-level exceptions to the county default ------------------------------------------
EXCEPTIONS = [
    {
        "kommune": "1811",
        "rhf": "983658776",
        "hf": "983974791",
        "service_line": "somatic",
        "comment": (
            "Bindal (Nordland): by a royal resolution (kongelig resolusjon) of the 1960s, still in force per the "
            "municipality in 2022, residents use Sykehuset Namsos (Helse Nord-Trøndelag HF, Helse Midt-Norge) for "
            "somatic hospital care; Helse Nord keeps the responsibility and pays. Applies to somatic care only: "
            "SSB's 2020 PHV and TSB catchment tables put Bindal under Helgelandssykehuset HF / Helse Nord. "
            "Source: project notes pathways-and-routing.md section 3.4 (local press); check KLASS 629/630/631."
        ),
    },
]
#: Extra notes on the PHV/TSB catchment of single municipalities (shown by the router with its decision).
HF_NOTES = {
    "1811": (
        "Bindal: routed to Helse Nord per SSB 2020 for PHV/TSB; Sykehuset Namsos (Helse Nord-Trøndelag HF, "
        "Helse Midt-Norge) is a plausible provider because Bindal uses it for somatic care. Unverified for 2024 "
        "(check SSB KLASS 630/631)."
    ),
    "1580": "Haram was split off from Ålesund in 2024; its catchment is inherited from Ålesund's 2020 row (1507).",
}


def mod11_orgnr_ok(orgnr: str) -> bool:
    """Organisation number check digit (weights 3,2,7,6,5,4,3,2; 11 -> 0; 10 invalid)."""
    if not re.fullmatch(r"\d{9}", orgnr):
        return False
    rest = sum(int(d) * w for d, w in zip(orgnr[:8], (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    check = 11 - rest
    if check == 11:
        check = 0
    return check != 10 and check == int(orgnr[8])


def slug(text: str) -> str:
    """ASCII slug for ids and file names (æ->ae, ø->o, å->a)."""
    text = text.lower().replace("æ", "ae").replace("ø", "o").replace("å", "a")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def org_id(orgnr: str) -> str:
    """The project's own id (and code) of a health trust or RHF: its Organization.id."""
    if orgnr in RHFS:
        return "rhf-" + RHFS[orgnr]["slug"]
    name = HEALTH_TRUSTS[orgnr]
    return "hf-" + slug(re.sub(r"\s+(HF|AS)$", "", name))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def publisher_fields() -> dict:
    return {"status": "active", "experimental": False, "date": DATE, "publisher": "fhir-referral-hub (project)"}


def build_fylke_cs(kommuner: list[dict[str, str]]) -> dict:
    names: dict[str, tuple[str, str]] = {}
    for row in kommuner:
        names[row["fylkesnummer"]] = (row["fylke"], row["fylkesnavn_offisielt"])
    concepts = []
    for code in sorted(names):
        short, official = names[code]
        concept: dict = {"code": code, "display": short}
        if official != short:
            concept["designation"] = [
                {
                    "language": "no",
                    "use": {"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"},
                    "value": official,
                }
            ]
        concepts.append(concept)
    return {
        "resourceType": "CodeSystem",
        "id": "fylkesnummer-2024",
        "url": FYLKE_CS,
        "version": "2024",
        "name": "Fylkesnummer2024",
        "title": "Fylkesnummer (counties of Norway), 2024 structure",
        **publisher_fields(),
        "description": (
            "The project's own code system of the 15 Norwegian counties (fylker) in force from 1 January 2024, "
            "coded by their official two-digit fylkesnummer. The canonical URL is the project's own: the Volven "
            "code list 3404 (fylke) also carries historical counties and its official name is unverified, so it "
            "is not claimed here. Source: county properties of Fylker-S.geojson / Kommuner-S.geojson "
            "(robhop/fylker-og-kommuner @ ae87825, Kartverket data, CC BY 4.0). Generated by "
            "scripts/build_geography.py."
        ),
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }


def build_kommune_cs(kommuner: list[dict[str, str]]) -> dict:
    concepts = [
        {
            "code": row["kommunenummer"],
            "display": row["kommunenavn"],
            "property": [{"code": "fylke", "valueCode": row["fylkesnummer"]}],
        }
        for row in sorted(kommuner, key=lambda r: r["kommunenummer"])
    ]
    return {
        "resourceType": "CodeSystem",
        "id": "kommunenummer-2024",
        "url": KOMMUNE_CS,
        "version": "2024",
        "name": "Kommunenummer2024",
        "title": "Kommunenummer (municipalities of Norway), 2024 structure",
        **publisher_fields(),
        "description": (
            "The project's own code system of the 357 Norwegian municipalities in force from 1 January 2024, "
            "coded by their official four-digit kommunenummer (the first two digits are the fylkesnummer). The "
            "codes are the same as in the national kommunenummer lists (Volven 3402, "
            "urn:oid:2.16.578.1.12.4.1.1.3402; Kartverket/geonorge), but those lists span all years, so this "
            "2024 snapshot has a canonical URL of the project's own. Property 'fylke' gives the county "
            "(CodeSystem fylkesnummer-2024). Source: Kommuner-S.geojson (robhop/fylker-og-kommuner @ ae87825, "
            "Kartverket data, CC BY 4.0). Generated by scripts/build_geography.py."
        ),
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "property": [
            {"code": "fylke", "uri": f"{FYLKE_CS}#fylke", "description": "County (fylkesnummer, 2024)", "type": "code"}
        ],
        "concept": concepts,
    }


def build_pre2024_map(hf_rows: list[dict[str, str]], names_2024: dict[str, str]) -> dict:
    targets: dict[str, list[str]] = defaultdict(list)
    for row in hf_rows:
        if row["kommunenummer_2020"] != row["kommunenummer_2024"]:
            targets[row["kommunenummer_2020"]].append(row["kommunenummer_2024"])
    elements = []
    for old in sorted(targets):
        new_codes = sorted(targets[old])
        split = len(new_codes) > 1
        element_targets = []
        for new in new_codes:
            equivalence = "narrower" if split else "equivalent"
            target: dict = {"code": new, "display": names_2024[new], "equivalence": equivalence}
            if split:
                target["comment"] = (
                    f"{old} was split in 2024; its area now lies in {' and '.join(new_codes)}. The county is the same, "
                    "so the RHF is not affected; the exact new municipality needs the address."
                )
            element_targets.append(target)
        elements.append({"code": old, "target": element_targets})
    return {
        "resourceType": "ConceptMap",
        "id": "kommunenummer-pre2024-to-2024",
        "url": f"{BASE}/ConceptMap/kommunenummer-pre2024-to-2024",
        "version": "2024",
        "name": "KommunenummerPre2024To2024",
        "title": "Kommunenummer 2020-2023 to kommunenummer 2024",
        **publisher_fields(),
        "description": (
            "The project's own map of municipality numbers valid 2020-2023 that changed on 1 January 2024 (the "
            "split of Viken 30xx into 31xx/32xx/33xx, Vestfold og Telemark 38xx into 39xx/40xx, Troms og Finnmark "
            "54xx into 55xx/56xx, and Ålesund 1507 into Ålesund 1508 and Haram 1580) to their 2024 numbers. Numbers "
            "that did not change are not listed: they are codes of kommunenummer-2024 as they are. Numbers from "
            "before 2020 are not covered (not in the source data). Source: the 2020 numbers of "
            "kommune-2024-til-hf-phv-tsb-derived.csv (2024 numbers joined by name within the old county to SSB's "
            "2020 list, gardenberg/kommunekoder); the binding source is SSB KLASS 131 correspondence tables. "
            "Generated by scripts/build_geography.py."
        ),
        "group": [{"source": KOMMUNE_2020_CS, "target": KOMMUNE_CS, "element": elements}],
    }


def build_fylke_to_rhf(names_2024: dict[str, str], fylker: dict[str, str]) -> dict:
    county_elements = []
    for code in sorted(fylker):
        rhf = next(orgnr for orgnr, info in RHFS.items() if code in info["counties"])
        county_elements.append(
            {
                "code": code,
                "display": fylker[code],
                "target": [{"code": rhf, "display": RHFS[rhf]["name"], "equivalence": "wider"}],
            }
        )
    exception_elements = []
    for exc in EXCEPTIONS:
        exception_elements.append(
            {
                "code": exc["kommune"],
                "display": names_2024[exc["kommune"]],
                "target": [
                    {
                        "code": exc["rhf"],
                        "display": RHFS[exc["rhf"]]["name"],
                        "equivalence": "inexact",
                        "comment": exc["comment"],
                        "dependsOn": [{"property": SERVICE_LINE_PROPERTY, "value": exc["service_line"]}],
                        "product": [
                            {
                                "property": HF_PRODUCT_PROPERTY,
                                "system": ORGNR_SYSTEM,
                                "value": exc["hf"],
                                "display": HEALTH_TRUSTS[exc["hf"]],
                            }
                        ],
                    }
                ],
            }
        )
    return {
        "resourceType": "ConceptMap",
        "id": "fylke-to-rhf",
        "url": f"{BASE}/ConceptMap/fylke-to-rhf",
        "version": "2024",
        "name": "FylkeToRhf",
        "title": "County (2024) to regional health authority (RHF), with municipality-level exceptions",
        **publisher_fields(),
        "description": (
            "The project's own routing map. Group 1: each of the 15 counties of 2024 to the RHF responsible for its "
            "residents, the target coded by the RHF's organisasjonsnummer (urn:oid:2.16.578.1.12.4.1.4.101). "
            "Group 2: municipality-level exceptions that override the county default; each target names, in "
            "dependsOn, the service line it applies to (property " + SERVICE_LINE_PROPERTY + ": somatic | phv | "
            "tsb) and, in product, the health trust (HF) that receives the patient. Source: project notes "
            "pathways-and-routing.md sections 3.1, 3.3 and 3.4 (counties and organisation numbers verified there; "
            "the Bindal exception from local press). SSB's 2020 PHV and TSB catchment tables agree with group 1 "
            "for every municipality. Generated by scripts/build_geography.py."
        ),
        "group": [
            {"source": FYLKE_CS, "target": ORGNR_SYSTEM, "element": county_elements},
            {"source": KOMMUNE_CS, "target": ORGNR_SYSTEM, "element": exception_elements},
        ],
    }


def build_hf_map(hf_rows: list[dict[str, str]], line: str) -> dict:
    label = {"phv": "mental health care (psykisk helsevern, PHV)", "tsb": "substance-use treatment (TSB)"}[line]
    elements = []
    for row in sorted(hf_rows, key=lambda r: r["kommunenummer_2024"]):
        orgnrs = row[f"{line}_hf_orgnr"].split("|")
        split = len(orgnrs) > 1
        targets = []
        for orgnr in orgnrs:
            target: dict = {
                "code": orgnr,
                "display": HEALTH_TRUSTS[orgnr],
                "equivalence": "inexact" if split else "wider",
            }
            if split:
                target["comment"] = (
                    "The municipality is split between several health trusts at grunnkrets level (SSB KLASS "
                    f"{'630' if line == 'phv' else '631'}); the source data has no bydel/grunnkrets detail."
                )
            targets.append(target)
        element: dict = {"code": row["kommunenummer_2024"], "display": row["kommunenavn"], "target": targets}
        note = HF_NOTES.get(row["kommunenummer_2024"])
        if note:
            for target in targets:
                target["comment"] = (target.get("comment", "") + " " + note).strip()
        elements.append(element)
    klass = "630" if line == "phv" else "631"
    return {
        "resourceType": "ConceptMap",
        "id": f"kommune-to-hf-{line}",
        "url": f"{BASE}/ConceptMap/kommune-to-hf-{line}",
        "version": "2020-catchment-2024-numbers",
        "name": f"KommuneToHf{line.upper()}",
        "title": f"Municipality (2024) to health trust (HF) catchment, {label}",
        **publisher_fields(),
        "description": (
            f"The project's own map of each 2024 municipality to the health trust(s) whose catchment area "
            f"(opptaksområde) for {label} covers it, the target coded by organisasjonsnummer "
            "(urn:oid:2.16.578.1.12.4.1.4.101). Equivalence 'wider': the whole municipality lies in that trust's "
            "area; 'inexact': the municipality is split between several trusts (Oslo, Holmestrand) and the split "
            "cannot be decided from the municipality alone. Source: SSB's 2020 catchment table "
            f"(statisticsnorway/speshelse @ 0031f77, OPPTAK_{line.upper()}_2020.xlsx, MIT) joined to 2024 numbers "
            "(kommune-2024-til-hf-phv-tsb-derived.csv). This is the 2020 picture: check against SSB KLASS "
            f"{klass} (grunnkrets level) before production use. Generated by scripts/build_geography.py."
        ),
        "group": [{"source": KOMMUNE_CS, "target": ORGNR_SYSTEM, "element": elements}],
    }


def build_organization(orgnr: str, rhf_of_hf: dict[str, str]) -> dict:
    if orgnr in RHFS:
        name = RHFS[orgnr]["name"]
        kind = "RHF"
    else:
        name = HEALTH_TRUSTS[orgnr]
        kind = "private" if orgnr in PRIVATE_WITH_CATCHMENT else "HF"
    org: dict = {
        "resourceType": "Organization",
        "id": org_id(orgnr),
        "meta": {"profile": [NO_BASIS_ORGANIZATION]},
        "identifier": [{"use": "official", "system": ORGNR_SYSTEM, "value": orgnr}],
        "active": True,
        "name": name,
    }
    if kind == "HF":
        rhf = rhf_of_hf[orgnr]
        org["partOf"] = {
            "reference": f"Organization/{org_id(rhf)}",
            "identifier": {"system": ORGNR_SYSTEM, "value": rhf},
            "display": RHFS[rhf]["name"],
        }
    elif kind == "private":
        rhf = rhf_of_hf[orgnr]
        # Not owned by the RHF (no partOf): a private non-profit hospital with an agreement and a catchment area.
        org["type"] = [{"text": f"Private non-profit hospital with a catchment area in {RHFS[rhf]['name']}"}]
    return org


def write_json(path: Path, resource: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(resource, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--geo", type=Path, default=root.parent / "shared" / "reference" / "geo")
    parser.add_argument("--out", type=Path, default=root)
    args = parser.parse_args()

    kommuner = read_csv(args.geo / "kommuner-2024-derived.csv")
    hf_rows = read_csv(args.geo / "kommune-2024-til-hf-phv-tsb-derived.csv")
    names_2024 = {row["kommunenummer"]: row["kommunenavn"] for row in kommuner}
    fylker = {row["fylkesnummer"]: row["fylke"] for row in kommuner}
    fylke_of = {row["kommunenummer"]: row["fylkesnummer"] for row in kommuner}

    # Consistency checks: refuse to write anything the sources contradict.
    assert len(names_2024) == 357, f"expected 357 municipalities, got {len(names_2024)}"
    assert len(fylker) == 15, f"expected 15 counties, got {len(fylker)}"
    assert all(code[:2] == fylke_of[code] for code in fylke_of), "kommunenummer prefix differs from its county"
    assert sorted(c for info in RHFS.values() for c in info["counties"]) == sorted(fylker), "county/RHF table"
    assert {row["kommunenummer_2024"] for row in hf_rows} == set(names_2024), "HF table and 2024 list differ"
    assert all(mod11_orgnr_ok(n) for n in [*RHFS, *HEALTH_TRUSTS]), "organisation number fails mod 11"
    rhf_of_county = {c: orgnr for orgnr, info in RHFS.items() for c in info["counties"]}
    rhf_of_hf: dict[str, str] = {}
    for row in hf_rows:
        assert row["rhf_orgnr"] == rhf_of_county[fylke_of[row["kommunenummer_2024"]]], row["kommunenummer_2024"]
        for line in ("phv", "tsb"):
            for orgnr in row[f"{line}_hf_orgnr"].split("|"):
                assert orgnr in HEALTH_TRUSTS, f"unknown HF {orgnr}"
                previous = rhf_of_hf.setdefault(orgnr, row["rhf_orgnr"])
                assert previous == row["rhf_orgnr"], f"HF {orgnr} in two regions"
    assert set(rhf_of_hf) == set(HEALTH_TRUSTS), "an HF of the docs has no catchment in the data"
    assert Counter(len(r["phv_hf_orgnr"].split("|")) > 1 for r in hf_rows)[True] >= 1

    terminology = args.out / "terminology"
    mappings = args.out / "mappings"
    write_json(terminology / "CodeSystem-fylkesnummer-2024.json", build_fylke_cs(kommuner))
    write_json(terminology / "CodeSystem-kommunenummer-2024.json", build_kommune_cs(kommuner))
    write_json(terminology / "ConceptMap-kommunenummer-pre2024-to-2024.json", build_pre2024_map(hf_rows, names_2024))
    write_json(mappings / "ConceptMap-fylke-to-rhf.json", build_fylke_to_rhf(names_2024, fylker))
    for line in ("phv", "tsb"):
        write_json(mappings / f"ConceptMap-kommune-to-hf-{line}.json", build_hf_map(hf_rows, line))
    for orgnr in [*RHFS, *HEALTH_TRUSTS]:
        org = build_organization(orgnr, rhf_of_hf)
        write_json(mappings / f"Organization-{org['id']}.json", org)
    print(
        f"wrote {len(names_2024)} municipalities, {len(fylker)} counties, "
        f"{len(RHFS)} RHF and {len(HEALTH_TRUSTS)} HF organizations to {terminology} and {mappings}"
    )


if __name__ == "__main__":
    main()
