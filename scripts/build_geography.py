"""Generate the project's geography and catchment JSON (CodeSystems, ConceptMaps, Organizations).

Reads the offline reference data in ``/work/shared/reference/geo`` (third-party data; never copied into the
repository) and writes the project's own FHIR R4 JSON:

* ``terminology/CodeSystem-kommunenummer-2024.json``: the 357 municipalities of 2024, each with its county;
* ``terminology/CodeSystem-fylkesnummer-2024.json``: the 15 counties of 2024;
* ``terminology/ConceptMap-kommunenummer-pre2024-to-2024.json``: 2020-2023 numbers to 2024 numbers;
* ``terminology/ConceptMap-kommunenummer-2013-2019-to-2024.json``: numbers of 2013-2019 to 2024 numbers (the
  2013-2020 change table composed with the 2020-2023 map above);
* ``mappings/ConceptMap-oslo-bydel-to-hf-phv.json``: Oslo bydel to the hospital for adult mental health care;
* ``mappings/ConceptMap-fylke-to-rhf.json``: county to RHF, plus municipality-level exceptions (Bindal);
* ``mappings/ConceptMap-kommune-to-hf-phv.json`` / ``-tsb.json``: municipality to HF (mental health / TSB);
* ``mappings/Organization-rhf-*.json`` and ``mappings/Organization-hf-*.json``.

Sources (see ``/work/shared/reference/geo/SOURCES.md``):

* ``kommuner-2024-derived.csv``: derived from ``robhop/fylker-og-kommuner`` @ ae87825 (Kartverket data, CC BY 4.0);
* ``kommune-2024-til-hf-phv-tsb-derived.csv``: 2024 numbers joined to SSB's 2020 PHV/TSB catchment tables
  (``statisticsnorway/speshelse`` @ 0031f77, ``OPPTAK_PHV_2020.xlsx`` / ``OPPTAK_TSB_2020.xlsx``, MIT);
* ``kommunenummer-2013-2020-wide.csv``: every municipality number of 2013, 2017, 2018, 2019 and 2020
  (``gardenberg/kommunekoder`` @ 9289c80, built from SSB KLASS 131 change lists, MIT);
* the Oslo bydel -> hospital facts for adult mental health care: issue #14 of the project (see ``OSLO_BYDELER``);
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
KOMMUNE_2013_2019_CS = f"{BASE}/CodeSystem/kommunenummer-2013-2019"
BYDEL_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.3403"
MINIMUM_AGE_PROPERTY = f"{BASE}/routing/minimum-age"
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


# --- Oslo bydeler (urban districts) -> hospital for adult mental health care (psykisk helsevern voksne) --------
#: Codes: Volven 3403 / SSB bydel classification (6 digits = kommunenummer 0301 + 2). 030105 Frogner is confirmed in
#: the project notes (norwegian-profiles.md, terminology/CodeSystem-volven-3403.json); the other numbers follow
#: SSB's numbering of Oslo's 15 bydeler (01-15) + Sentrum (16) + Marka (17) and are UNVERIFIED here
#: (no offline copy of SSB KLASS 103/919). Hospitals: issue #14 of the project ("Facts (adult psychiatric care)");
#: organisation numbers from pathways-and-routing.md section 3.2 (SSB 2020 data, all four in Oslo's PHV catchment).
OUS, AHUS, LOVISENBERG, DIAKONHJEMMET = "993467049", "983971636", "965985166", "982791952"
OSLO_BYDELER: dict[str, tuple[str, str]] = {
    "030101": ("Gamle Oslo", LOVISENBERG),
    "030102": ("Grünerløkka", LOVISENBERG),
    "030103": ("Sagene", OUS),
    "030104": ("St. Hanshaugen", LOVISENBERG),
    "030105": ("Frogner", DIAKONHJEMMET),
    "030106": ("Ullern", DIAKONHJEMMET),
    "030107": ("Vestre Aker", DIAKONHJEMMET),
    "030108": ("Nordre Aker", OUS),
    "030109": ("Bjerke", OUS),
    "030110": ("Grorud", AHUS),
    "030111": ("Stovner", AHUS),
    "030112": ("Alna", AHUS),
    "030113": ("Østensjø", OUS),
    "030114": ("Nordstrand", OUS),
    "030115": ("Søndre Nordstrand", OUS),
    "030116": ("Sentrum", LOVISENBERG),
    "030117": ("Marka", OUS),
}
#: Adult mental health care (psykisk helsevern voksne) starts at 18 (PHBU covers 0-18; notes section 1).
ADULT_AGE = 18


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


HISTORIC_YEARS = ("2013", "2017", "2018", "2019")


def historic_chains(
    wide: list[dict[str, str]], pre2024: dict[str, list[str]], names_2024: dict[str, str]
) -> dict[str, dict]:
    """Every municipality number of 2013-2019 that is neither a 2024 number nor a 2020-2023 number -> its chain.

    Each value: ``names`` (the names it had), ``changes`` (SSB's change notes along the way), ``codes_2020`` and
    ``codes_2024`` (sorted). A number whose rows lead to several 2020 numbers was split (Snillfjord, Tysfjord).
    """
    chains: dict[str, dict] = {}
    for row in wide:
        if row["kommunenummer_2013"] == "9999":  # "Uoppgitt": not a municipality
            continue
        code_2020 = row["kommunenummer_2020"]
        codes_2024 = pre2024.get(code_2020) or [code_2020]
        assert all(c in names_2024 for c in codes_2024), f"2020 number {code_2020} has no 2024 municipality"
        for year in HISTORIC_YEARS:
            code = row[f"kommunenummer_{year}"]
            # SSB's change notes from this year on (column endringsmerknad_<from>_<to>, two-digit years)
            notes = [
                row[k]
                for k in row
                if k.startswith("endringsmerknad_") and int(k.split("_")[1]) >= int(year[2:])
                if not row[k].startswith("uendret")
            ]
            if code in names_2024 or code in pre2024:
                # A current or 2020-2023 number: it must mean the same municipality in every year (no reuse).
                assert set(codes_2024) <= set(pre2024.get(code) or [code]), f"{code} reused for another municipality"
                continue
            empty: dict[str, set[str]] = {"names": set(), "changes": set(), "codes_2020": set(), "codes_2024": set()}
            chain = chains.setdefault(code, empty)
            chain["names"].add(row[f"kommunenavn_{year}"])
            chain["changes"].update(notes)
            chain["codes_2020"].add(code_2020)
            chain["codes_2024"].update(codes_2024)
    return {code: {key: sorted(value) for key, value in chain.items()} for code, chain in sorted(chains.items())}


def build_historic_map(chains: dict[str, dict], names_2024: dict[str, str]) -> dict:
    elements = []
    for old, chain in chains.items():
        new_codes = chain["codes_2024"]
        split = len(new_codes) > 1
        merged = any("slått sammen" in note for note in chain["changes"]) or len(chain["codes_2020"]) > 1
        via = ", ".join(chain["codes_2020"])
        targets = []
        for new in new_codes:
            if split:
                equivalence, how = (
                    "narrower",
                    (
                        f"its area now lies in {' and '.join(new_codes)}; the address must say which (else manual "
                        "triage, unless all parts have the same region and health trust)"
                    ),
                )
            elif merged:
                equivalence, how = "wider", "merged into a larger municipality"
            else:
                equivalence, how = "equivalent", "renumbered only"
            targets.append(
                {
                    "code": new,
                    "display": names_2024[new],
                    "equivalence": equivalence,
                    "comment": f"{old} {' / '.join(chain['names'])} -> {via} (2020) -> {new} (2024): {how}.",
                }
            )
        elements.append({"code": old, "display": chain["names"][-1], "target": targets})
    return {
        "resourceType": "ConceptMap",
        "id": "kommunenummer-2013-2019-to-2024",
        "url": f"{BASE}/ConceptMap/kommunenummer-2013-2019-to-2024",
        "version": "2024",
        "name": "Kommunenummer2013To2019To2024",
        "title": "Kommunenummer 2013-2019 to kommunenummer 2024",
        **publisher_fields(),
        "description": (
            "The project's own map of municipality numbers valid at some time from 2013 to 2019 that are neither "
            "2024 numbers nor 2020-2023 numbers (those are in kommunenummer-2024 and in the map "
            "kommunenummer-pre2024-to-2024) to the 2024 municipality or municipalities whose area they now lie in: "
            "the 2017 and 2018 mergers, the 2018 Trøndelag renumbering (16xx/17xx -> 50xx), the 2020 reform "
            "(e.g. Bergen 1201 -> 4601) and the 2024 county splits, composed. Equivalence 'equivalent': renumbered "
            "only; 'wider': merged into a larger municipality; 'narrower': split (Snillfjord 1613/5012, Tysfjord "
            "1850, and the five municipalities merged into Ålesund 1507 in 2020, which was split into Ålesund 1508 "
            "and Haram 1580 in 2024). Each target's comment gives the chain. Source: the municipality numbers of "
            "2013, 2017, 2018, 2019 and 2020 with SSB's change notes (gardenberg/kommunekoder @ 9289c80, "
            "alle_kommunenummer_fra2013_til2020_wide.csv, built from SSB KLASS 131 change lists, MIT), composed "
            "with the project's map kommunenummer-pre2024-to-2024; the binding source is SSB KLASS 131. "
            "Generated by scripts/build_geography.py."
        ),
        "group": [{"source": KOMMUNE_2013_2019_CS, "target": KOMMUNE_CS, "element": elements}],
    }


def build_bydel_map(phv_of_oslo: list[str]) -> dict:
    elements = []
    for code, (name, orgnr) in sorted(OSLO_BYDELER.items()):
        assert orgnr in phv_of_oslo, f"bydel {code}: {orgnr} is not in Oslo's PHV catchment"
        elements.append(
            {
                "code": code,
                "display": name,
                "target": [
                    {
                        "code": orgnr,
                        "display": HEALTH_TRUSTS[orgnr],
                        "equivalence": "wider",
                        "dependsOn": [
                            {"property": SERVICE_LINE_PROPERTY, "value": "phv"},
                            {"property": MINIMUM_AGE_PROPERTY, "value": str(ADULT_AGE)},
                        ],
                    }
                ],
            }
        )
    return {
        "resourceType": "ConceptMap",
        "id": "oslo-bydel-to-hf-phv",
        "url": f"{BASE}/ConceptMap/oslo-bydel-to-hf-phv",
        "version": "2024",
        "name": "OsloBydelToHfPhv",
        "title": "Oslo bydel (urban district) to the hospital for adult mental health care",
        **publisher_fields(),
        "description": (
            "The project's own map of Oslo's bydeler (Volven 3403 / SSB bydel codes, 0301 + 2 digits: the 15 "
            "bydeler, 16 Sentrum, 17 Marka) to the hospital whose catchment area for adult mental health care "
            "(psykisk helsevern voksne) covers it, the target coded by organisasjonsnummer "
            "(urn:oid:2.16.578.1.12.4.1.4.101). Each target depends on the service line (property "
            + SERVICE_LINE_PROPERTY
            + " = phv) and on the patient's age (property "
            + MINIMUM_AGE_PROPERTY
            + ": at least 18); children's mental health care and TSB keep Oslo's municipality-level catchment. "
            "Source: the facts of the project's issue #14 (Alna, Grorud, Stovner -> Akershus universitetssykehus; "
            "Frogner, Vestre Aker, Ullern -> Diakonhjemmet Sykehus; St. Hanshaugen, Gamle Oslo, Grünerløkka, "
            "Sentrum -> Lovisenberg Diakonale Sykehus; Bjerke, Nordre Aker, Sagene, Nordstrand, Søndre Nordstrand, "
            "Østensjø, Marka -> Oslo universitetssykehus); organisation numbers from the project notes "
            "pathways-and-routing.md section 3.2 (SSB 2020 data; all four are Oslo's PHV catchment trusts there). "
            "The bydel numbers other than 030105 Frogner are not confirmed by the project's reference data "
            "(unverified: check SSB KLASS). The binding source is SSB KLASS 630 at grunnkrets level. Generated by "
            "scripts/build_geography.py."
        ),
        "group": [{"source": BYDEL_SYSTEM, "target": ORGNR_SYSTEM, "element": elements}],
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
    with (args.geo / "kommunenummer-2013-2020-wide.csv").open(encoding="utf-8", newline="") as handle:
        wide = list(csv.DictReader(handle, delimiter=";"))
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
    pre2024_map = build_pre2024_map(hf_rows, names_2024)
    write_json(terminology / "ConceptMap-kommunenummer-pre2024-to-2024.json", pre2024_map)
    pre2024 = {e["code"]: [t["code"] for t in e["target"]] for g in pre2024_map["group"] for e in g["element"]}
    chains = historic_chains(wide, pre2024, names_2024)
    assert chains["1201"]["codes_2024"] == ["4601"], "Bergen 1201 must lead to 4601"
    write_json(terminology / "ConceptMap-kommunenummer-2013-2019-to-2024.json", build_historic_map(chains, names_2024))
    oslo = next(r for r in hf_rows if r["kommunenummer_2024"] == "0301")
    write_json(mappings / "ConceptMap-oslo-bydel-to-hf-phv.json", build_bydel_map(oslo["phv_hf_orgnr"].split("|")))
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
