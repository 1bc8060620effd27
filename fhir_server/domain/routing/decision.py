"""Which regional health authority (RHF), and for PHV/TSB which health trust (HF), receives a referral.

The decision, in order:

1. Home municipality: the no-basis municipality code on ``Patient.address``. Addresses with ``use: old`` are
   never used; of the rest, the best-ranked ``use`` (home first) that has a code or is abroad decides. Several
   addresses of that rank naming different regions are contradictory; an address whose ``country`` is not Norway
   is foreign (Svalbard/Jan Mayen: country SJ, or numbers 21xx/22xx). A retired number (in use at some time from
   2013 to 2023; the number as sent, also when the intake rewrote it) is translated to 2024 through the
   ConceptMaps; when it was split, ``Address.district`` naming one of the parts decides, else the parts must agree
   on the region (and, for PHV/TSB, the health trust). The county (first two digits) gives the RHF; a
   municipality-level exception (e.g. Bindal for somatic care) overrides the county for its service lines; for
   ``service_line`` "phv"/"tsb" the catchment map names the HF, and where a municipality is split between trusts
   the bydel map (Oslo, adult mental health care) decides by the no-basis-urban-district code.
2. Free choice of treatment place (pasient- og brukerrettighetsloven § 2-4): when ``ServiceRequest.performer``
   names a known RHF or HF (by organisasjonsnummer, or a resolved Organization) outside the home region, or an
   HF other than the patient's own catchment HF, that choice decides (rule ``free-choice``).
3. Anything that cannot be decided gives ``triage=True`` with rule ``manual-triage`` and a reason coded in
   ``terminology/CodeSystem-triage-reason.json`` (no patient, no address, no/malformed/unknown code, a retired
   number split across regions, foreign, Svalbard/Jan Mayen, contradictory addresses); never an exception.
   Where only the health trust is undecided (hf-split, bydel-missing, bydel-unknown, a split retired number),
   the region is kept and the reason says why.

Pure Python: no Flask, no database. Nothing here logs or stores a national identity number; the patient's age
(which the bydel map depends on) is ``pathways.suggest.age_on``: birthDate, else the birth date of a valid
fødselsnummer/D-number, on ``ServiceRequest.authoredOn`` (else today).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from fhir_server.domain.pathways.suggest import age_on, reference_date
from fhir_server.domain.referral.mapping.fhir_aliases import ORIGINAL_CODING_EXT
from fhir_server.domain.routing.tables import (
    SERVICE_LINES,
    CatchmentTarget,
    Org,
    RoutingTables,
    default_tables,
)
from fhir_server.naming import ORGNR_SYSTEM, with_aliases

__all__ = ["RoutingDecision", "RoutingTables", "default_tables", "route"]

MUNICIPALITY_CODE_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
PROPERTY_INFORMATION_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-propertyinformation"
URBAN_DISTRICT_EXT = "http://hl7.no/fhir/StructureDefinition/no-basis-urban-district"
#: Systems accepted for organisasjonsnummer (the OID, and the Brønnøysund alias used by NHN's NamingSystem).
ORGNR_SYSTEMS = with_aliases(ORGNR_SYSTEM)
#: Address.use ranking: home first, then unspecified, then the rest; "old" addresses are never used.
USE_RANK = {"home": 0, None: 1, "temp": 2, "work": 3, "billing": 4}
#: County prefixes outside the 357 municipalities: Svalbard (21) and Jan Mayen (22), per the project notes §3.3.
ARCTIC_PREFIXES = {"21": "Svalbard", "22": "Jan Mayen"}
#: Address.country values that mean Norway (ISO 3166 alpha-2/-3/numeric, and names); empty also means Norway.
NORWAY_COUNTRIES = {"no", "nor", "578", "norge", "noreg", "norway", "norga"}
#: Address.country values for Svalbard and Jan Mayen (ISO 3166 SJ / SJM / 744, and names).
SVALBARD_COUNTRIES = {"sj", "sjm", "744", "svalbard", "jan mayen", "svalbard og jan mayen", "svalbard and jan mayen"}
ALL_SERVICE_LINES = (*SERVICE_LINES, "somatic")
LINE_LABELS = {
    "phv": ("mental health care (PHV)", "psykisk helsevern (PHV)"),
    "tsb": ("substance-use treatment (TSB)", "tverrfaglig spesialisert rusbehandling (TSB)"),
    "somatic": ("somatic care", "somatikk"),
}

OrganizationResolver = Callable[[str], dict | None]


@dataclass(frozen=True)
class RoutingDecision:
    """The routing outcome, with what it looked at and why; ``as_json()`` gives a plain dict for storage."""

    #: code of https://fhir.referral-hub.no/CodeSystem/routing-rule (pre2024-municipality: any retired number)
    rule: str  # home-municipality | pre2024-municipality | municipality-exception | free-choice | manual-triage
    triage: bool
    rhf_orgnr: str | None = None
    rhf_name: str | None = None
    hf_orgnr: str | None = None
    hf_name: str | None = None
    hf_code: str | None = None  # the project's own code of the HF (its Organization.id in mappings/)
    service_line: str | None = None
    #: code of https://fhir.referral-hub.no/CodeSystem/triage-reason (terminology/CodeSystem-triage-reason.json)
    triage_reason: str | None = None
    triage_display: str | None = None
    #: when the HF cannot be decided: the candidate trusts as (orgnr, name)
    hf_candidates: tuple[tuple[str, str], ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    #: {"en": ..., "nb": ...}
    explanation: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        data = {
            "rule": self.rule,
            "triage": self.triage,
            "rhf": _org_json(self.rhf_orgnr, self.rhf_name),
            "hf": _org_json(self.hf_orgnr, self.hf_name, self.hf_code),
            "serviceLine": self.service_line,
            "triageReason": self.triage_reason,
            "triageReasonDisplay": self.triage_display,
            "hfCandidates": [{"orgnr": o, "name": n} for o, n in self.hf_candidates],
            "inputs": dict(self.inputs),
            "explanation": dict(self.explanation),
        }
        return {k: v for k, v in data.items() if v not in (None, [], {})}


def _org_json(orgnr: str | None, name: str | None, code: str | None = None) -> dict | None:
    if not orgnr:
        return None
    item = {"orgnr": orgnr, "name": name}
    if code:
        item["code"] = code
    return item


class _Notes:
    """English and Norwegian sentences collected while deciding."""

    def __init__(self) -> None:
        self.en: list[str] = []
        self.nb: list[str] = []

    def add(self, en: str, nb: str) -> None:
        self.en.append(en)
        self.nb.append(nb)

    def as_dict(self) -> dict[str, str]:
        return {"en": " ".join(self.en), "nb": " ".join(self.nb)}


@dataclass
class _Home:
    """The outcome of step 1 (home municipality), before any free choice."""

    rule: str
    rhf_orgnr: str | None = None
    hf: Org | None = None
    hf_candidates: tuple[Org, ...] = ()
    triage_reason: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)


def route(
    patient: dict | None,
    service_request: dict | None,
    tables: RoutingTables,
    organizations: OrganizationResolver | None = None,
    service_line: str | None = None,
) -> RoutingDecision:
    """Decide the receiving RHF (and HF for ``service_line`` "phv"/"tsb") for a referral.

    ``service_line`` is derived by the caller from the pathway: "phv", "tsb", "somatic", or None (not known:
    county default; municipality exceptions limited to named service lines are not applied, only noted).
    ``organizations`` resolves a reference string (e.g. "Organization/123") to the resource, or None.
    """
    if service_line not in (None, *ALL_SERVICE_LINES):
        raise ValueError(f"service_line must be one of {ALL_SERVICE_LINES} or None, not {service_line!r}")
    notes = _Notes()
    age = age_on(patient, reference_date(service_request or {})) if isinstance(patient, dict) else None
    home = _home(patient, tables, service_line, notes, age)
    inputs = dict(home.inputs)
    if service_line:
        inputs["service_line"] = service_line
    choice = _chosen(service_request or {}, tables, organizations, notes, inputs, home.rhf_orgnr)
    if choice is not None and _overrides(choice, home):
        return _free_choice(choice, home, tables, service_line, inputs, notes)
    if choice is not None and home.rhf_orgnr:
        home = _confirm(choice, home, notes)
    return _decision(home, tables, service_line, inputs, notes)


# --- step 1: home municipality ----------------------------------------------------------------------------


def _home(
    patient: dict | None, tables: RoutingTables, service_line: str | None, notes: _Notes, age: int | None
) -> _Home:
    if not isinstance(patient, dict):
        notes.add(
            "No Patient was given, so the home municipality is unknown.",
            "Pasienten mangler, så hjemkommunen er ukjent.",
        )
        return _Home("manual-triage", triage_reason="no-patient")
    if not any(isinstance(a, dict) for a in patient.get("address") or []):
        notes.add(
            "The patient has no address, so the home municipality is unknown.",
            "Pasienten har ingen adresse, så hjemkommunen er ukjent.",
        )
        return _Home("manual-triage", triage_reason="no-address")
    best = _best_addresses(patient)
    coded = [a for a in best if a.code]
    if not best:
        notes.add(
            "No address of the patient carries a municipality number (no-basis-municipalitycode on "
            "Patient.address.district).",
            "Ingen av pasientens adresser har kommunenummer (no-basis-municipalitycode på Patient.address.district).",
        )
        return _Home("manual-triage", triage_reason="no-municipality-code")
    if not coded:
        return _abroad(best[0], notes)
    for other in best:
        if not other.code:
            notes.add(
                f"{other.path} is abroad (country '{other.country}') and is not used.",
                f"{other.path} er i utlandet (land '{other.country}') og brukes ikke.",
            )
    coded.sort(key=lambda a: _region_of(a.code or "", tables) is None)  # a usable number first (stable)
    home = _from_address(coded[0], tables, service_line, notes, age)
    if len(coded) > 1 and home.rhf_orgnr:
        return _contradiction(home, coded, tables, notes)
    return home


@dataclass(frozen=True)
class _Address:
    """One usable address of the patient: its FHIRPath, the municipality number as sent (or None), and more."""

    path: str
    address: dict
    code: str | None = None
    expression: str | None = None
    country: str | None = None


def _best_addresses(patient: dict) -> list[_Address]:
    """The addresses of the best Address.use rank that have a municipality number or are abroad ("old": never)."""
    found: list[tuple[int, _Address]] = []
    for i, address in enumerate(patient.get("address") or []):
        if not isinstance(address, dict) or address.get("use") == "old":
            continue
        path = f"Patient.address[{i}]"
        rank = USE_RANK.get(address.get("use"), 5)
        country = address.get("country")
        if _abroad_country(country):
            found.append((rank, _Address(path, address, country=str(country))))
        elif coded := _code_in_address(address, path):
            found.append((rank, _Address(path, address, *coded)))
    if not found:
        return []
    top = min(rank for rank, _ in found)
    return [a for rank, a in found if rank == top]


def _abroad_country(country: object) -> bool:
    if not isinstance(country, str) or not country.strip():
        return False
    return country.strip().casefold() not in NORWAY_COUNTRIES


def _abroad(address: _Address, notes: _Notes) -> _Home:
    """The best-ranked address is outside Norway: Svalbard/Jan Mayen (country SJ), or a foreign country."""
    country = address.country or ""
    inputs = {"country": country, "source": f"{address.path}.country"}
    if country.strip().casefold() in SVALBARD_COUNTRIES:
        notes.add(
            f"The patient's address is on Svalbard or Jan Mayen (country '{country}'), outside the mainland "
            "counties; no catchment area is defined for it. Decide manually.",
            f"Pasientens adresse er på Svalbard eller Jan Mayen (land '{country}'), utenfor fastlandsfylkene, og "
            "har ikke noe opptaksområde. Vurderes manuelt.",
        )
        return _Home("manual-triage", triage_reason="svalbard-jan-mayen", inputs=inputs)
    notes.add(
        f"The patient's address {address.path} is abroad (country '{country}'), so no Norwegian home region "
        "applies; decide manually.",
        f"Pasientens adresse {address.path} er i utlandet (land '{country}'), så ingen norsk hjemregion gjelder; "
        "vurderes manuelt.",
    )
    return _Home("manual-triage", triage_reason="foreign-address", inputs=inputs)


def _contradiction(home: _Home, coded: list[_Address], tables: RoutingTables, notes: _Notes) -> _Home:
    """Several addresses of the same rank: they must agree on the region, else manual triage."""
    regions = {}  # county regions, before exceptions (Bindal's somatic exception is no contradiction)
    for found in coded:
        region = _region_of(found.code or "", tables)
        if region:
            regions[found.path] = region
    if len(set(regions.values())) == 1:
        return home
    listed = ", ".join(f"{path}: {tables.name(rhf)}" for path, rhf in regions.items())
    notes.add(
        f"The patient's addresses of the same rank name different regions ({listed}); decide manually.",
        f"Pasientens adresser av samme rang peker på ulike regioner ({listed}); vurderes manuelt.",
    )
    return _Home("manual-triage", triage_reason="contradictory-addresses", inputs=home.inputs)


def _region_of(raw: str, tables: RoutingTables) -> str | None:
    """The RHF of a municipality number (2024 or historic) when it decides one, else None; no exceptions."""
    code = raw.strip().zfill(4) if re.fullmatch(r"\s*\d{3,4}\s*", raw) else ""
    codes = (code,) if code in tables.municipalities else tables.pre2024.get(code, ())
    regions = {tables.rhf_of_municipality(c) for c in codes}
    return regions.pop() if len(regions) == 1 else None


def _from_address(
    found: _Address, tables: RoutingTables, service_line: str | None, notes: _Notes, age: int | None
) -> _Home:
    raw, expression = found.code or "", found.expression or ""
    inputs = {"kommunenummer": raw, "source": expression}
    bydel = _bydel(found.address)
    if bydel:
        inputs["bydel"] = bydel
    code = raw.strip()
    if re.fullmatch(r"\d{3}", code):
        code = code.zfill(4)
        notes.add(
            f"Municipality number '{raw}' read as {code} (leading zero restored).",
            f"Kommunenummer '{raw}' lest som {code} (ledende null lagt til).",
        )
    if not re.fullmatch(r"\d{4}", code):
        notes.add(
            f"'{raw}' at {expression} is not a four-digit municipality number.",
            f"'{raw}' i {expression} er ikke et firesifret kommunenummer.",
        )
        return _Home("manual-triage", triage_reason="malformed-municipality-code", inputs=inputs)
    if code[:2] in ARCTIC_PREFIXES:
        place = ARCTIC_PREFIXES[code[:2]]
        inputs["fylke"] = code[:2]
        notes.add(
            f"Municipality number {code} is in {place}, outside the mainland counties; no catchment area is "
            "defined for it. Svalbard residents are normally served by Universitetssykehuset Nord-Norge HF "
            "(Helse Nord RHF) (unverified); decide manually.",
            f"Kommunenummer {code} ligger på {place}, utenfor fastlandsfylkene, og har ikke noe "
            "opptaksområde. Personer bosatt på Svalbard får normalt tjenester fra Universitetssykehuset "
            "Nord-Norge HF (Helse Nord RHF) (ikke verifisert); vurderes manuelt.",
        )
        return _Home("manual-triage", triage_reason="svalbard-jan-mayen", inputs=inputs)

    if code in tables.municipalities:
        codes_2024: tuple[str, ...] = (code,)
        rule = "home-municipality"
    elif code in tables.pre2024:
        rule, codes_2024 = "pre2024-municipality", tables.pre2024[code]
        names = ", ".join(f"{c} {tables.municipalities[c].name}" for c in codes_2024)
        notes.add(
            f"Municipality number {code} is a retired number (in use at some time from 2013 to 2023); its area "
            f"now lies in {names}.",
            f"Kommunenummer {code} er et utgått nummer (brukt en gang mellom 2013 og 2023); området ligger nå i "
            f"{names}.",
        )
        codes_2024 = _named_part(found.address, codes_2024, tables, notes)
    else:
        notes.add(
            f"Municipality number {code} is not a 2024 municipality and not a number in use at any time since 2013.",
            f"Kommunenummer {code} er ikke en kommune i 2024 og ikke et kommunenummer brukt noen gang siden 2013.",
        )
        return _Home("manual-triage", triage_reason="unknown-municipality-code", inputs=inputs)

    inputs["kommunenummer_2024"] = ",".join(codes_2024)
    regions = {tables.rhf_of_municipality(c) for c in codes_2024}
    if len(regions) > 1:
        notes.add(
            f"Municipality number {code} was split between municipalities of different regions and the address "
            "does not say which; decide manually.",
            f"Kommunenummer {code} ble delt mellom kommuner i ulike regioner, og adressen sier ikke hvilken; "
            "vurderes manuelt.",
        )
        return _Home("manual-triage", triage_reason="retired-municipality-split", inputs=inputs)
    counties = sorted({tables.municipalities[c].fylke for c in codes_2024})
    inputs["fylke"] = ",".join(counties)
    rhf = regions.pop()
    county = ", ".join(f"{f} {tables.counties[f]}" for f in counties)
    if len(codes_2024) == 1:
        where = f"{codes_2024[0]} {tables.municipalities[codes_2024[0]].name}"
        notes.add(
            f"Home municipality {where} is in county {county}, which belongs to {tables.name(rhf)}.",
            f"Hjemkommunen {where} ligger i {county}, som hører til {tables.name(rhf)}.",
        )
    else:
        notes.add(
            f"All of them are in county {county}, which belongs to {tables.name(rhf)}.",
            f"Alle ligger i {county}, som hører til {tables.name(rhf)}.",
        )
    home = _Home(rule, rhf_orgnr=rhf, inputs=inputs)

    for exc in dict.fromkeys(e for c in codes_2024 for e in tables.exceptions.get(c, ())):
        applies = not exc.service_lines or (service_line in exc.service_lines)
        hf_name = tables.name(exc.hf_orgnr) or "-"
        if applies:
            home.rule, home.rhf_orgnr = "municipality-exception", exc.rhf_orgnr
            home.hf = tables.organizations.get(exc.hf_orgnr or "")
            notes.add(
                f"Municipality exception: residents use {hf_name} ({tables.name(exc.rhf_orgnr)}). {exc.comment}",
                f"Unntak for kommunen: innbyggerne bruker {hf_name} ({tables.name(exc.rhf_orgnr)}).",
            )
        else:
            lines_en = ", ".join(LINE_LABELS[x][0] for x in sorted(exc.service_lines))
            lines_nb = ", ".join(LINE_LABELS[x][1] for x in sorted(exc.service_lines))
            line_en, line_nb = LINE_LABELS.get(service_line or "", ("not given", "ikke oppgitt"))
            notes.add(
                f"A municipality exception to {hf_name} ({tables.name(exc.rhf_orgnr)}) exists for {lines_en} "
                f"only and is not applied (service line: {line_en}).",
                f"Kommunen har et unntak til {hf_name} ({tables.name(exc.rhf_orgnr)}) bare for {lines_nb}; "
                f"det brukes ikke her (tjenesteområde: {line_nb}).",
            )
    if service_line in SERVICE_LINES and home.rule != "municipality-exception":
        _catchment(home, codes_2024, tables, service_line, notes)
        if home.hf_candidates and len(codes_2024) > 1:
            home.triage_reason = "retired-municipality-split"
        elif home.hf_candidates and len(codes_2024) == 1:
            _district_catchment(home, codes_2024[0], bydel, tables, service_line, age, notes)
    return home


def _named_part(address: dict, codes_2024: tuple[str, ...], tables: RoutingTables, notes: _Notes) -> tuple[str, ...]:
    """A split number: the part whose 2024 name the address gives in ``district`` (the municipality name)."""
    if len(codes_2024) < 2:
        return codes_2024
    district = address.get("district")
    if not isinstance(district, str) or not district.strip():
        return codes_2024
    wanted = district.strip().casefold()
    named = [c for c in codes_2024 if wanted in _name_forms(tables.municipalities[c].name)]
    if len(named) != 1:
        return codes_2024
    notes.add(
        f"The address names the municipality '{district.strip()}' (Address.district), so the part is "
        f"{named[0]} {tables.municipalities[named[0]].name}.",
        f"Adressen oppgir kommunen '{district.strip()}' (Address.district), så delen er "
        f"{named[0]} {tables.municipalities[named[0]].name}.",
    )
    return (named[0],)


def _name_forms(name: str) -> set[str]:
    """A municipality name and each of its language forms ("Hábmer - Hamarøy" -> both)."""
    return {name.casefold(), *(part.strip().casefold() for part in name.split(" - "))}


def _code_in_address(address: dict, path: str) -> tuple[str, str] | None:
    """(municipality number as the sender gave it, its FHIRPath), or None."""
    district_ext = (address.get("_district") or {}).get("extension") or []
    for j, ext in enumerate(district_ext):
        code = _coding_code(ext) if isinstance(ext, dict) and ext.get("url") == MUNICIPALITY_CODE_EXT else None
        if code:
            return code, f"{path}.district.extension[{j}].valueCoding.code"
    for j, ext in enumerate(address.get("extension") or []):
        if not isinstance(ext, dict):
            continue
        if ext.get("url") == MUNICIPALITY_CODE_EXT and _coding_code(ext):
            return _coding_code(ext) or "", f"{path}.extension[{j}].valueCoding.code"
        if ext.get("url") == PROPERTY_INFORMATION_EXT:
            for k, sub in enumerate(ext.get("extension") or []):
                if isinstance(sub, dict) and sub.get("url") == "municipality" and _coding_code(sub):
                    return _coding_code(sub) or "", f"{path}.extension[{j}].extension[{k}].valueCoding.code"
    return None


def _coding_code(ext: dict) -> str | None:
    """The code of ``ext.valueCoding``; the code as sent when the intake rewrote it (original-coding extension)."""
    coding = ext.get("valueCoding")
    if not isinstance(coding, dict):
        return None
    for inner in coding.get("extension") or []:
        if isinstance(inner, dict) and inner.get("url") == ORIGINAL_CODING_EXT:
            original = inner.get("valueCoding")
            code = original.get("code") if isinstance(original, dict) else None
            if isinstance(code, str) and code.strip():
                return code
    code = coding.get("code")
    return code if isinstance(code, str) and code.strip() else None


def _bydel(address: dict) -> str | None:
    """The no-basis-urban-district code: on the Address (no-basis-Address), or on Address.district."""
    district_ext = (address.get("_district") or {}).get("extension") or []
    for ext in [*(address.get("extension") or []), *district_ext]:
        if isinstance(ext, dict) and ext.get("url") == URBAN_DISTRICT_EXT and _coding_code(ext):
            return (_coding_code(ext) or "").strip()
    return None


def _catchment(home: _Home, codes_2024: tuple[str, ...], tables: RoutingTables, line: str, notes: _Notes) -> None:
    """Set the HF of the home catchment for PHV/TSB, or the candidates when it is split."""
    targets: list[CatchmentTarget] = []
    for code in codes_2024:
        targets.extend(t for t in tables.catchment[line].get(code, ()) if t.orgnr not in {x.orgnr for x in targets})
    orgs = tuple(tables.organizations[t.orgnr] for t in targets)
    label = line.upper()
    if len(orgs) == 1:
        home.hf = orgs[0]
        notes.add(
            f"The {label} catchment area of the municipality belongs to {orgs[0].name}.",
            f"Opptaksområdet for {label} er {orgs[0].name}.",
        )
        for comment in {t.comment for t in targets if t.comment}:
            notes.add(comment, "Se merknad i opptaksområdetabellen.")
    elif orgs:
        home.hf_candidates = orgs
        names = ", ".join(o.name for o in orgs)
        notes.add(
            f"The area is split between several {label} health trusts ({names}).",
            f"Området er delt mellom flere helseforetak for {label} ({names}).",
        )
    else:
        notes.add(
            f"No {label} catchment trust is recorded for the municipality.",
            f"Ingen helseforetak for {label} er registrert for kommunen.",
        )


def _district_catchment(
    home: _Home, code: str, bydel: str | None, tables: RoutingTables, line: str, age: int | None, notes: _Notes
) -> None:
    """A municipality split between trusts: the bydel decides where the data has bydeler for this line and age."""
    rules = {b: d for b, d in tables.districts.items() if b[:4] == code and line in d.service_lines}
    minimum = min((d.minimum_age or 0 for d in rules.values()), default=None)
    if not rules or minimum is None or (age is None and minimum > 0) or (age is not None and age < minimum):
        why_en = "the patient's age is unknown" if age is None else f"the patient is {age}"
        why_nb = "pasientens alder er ukjent" if age is None else f"pasienten er {age} år"
        if rules:
            notes.add(
                f"The bydel decides the trust only from age {minimum} and {why_en}; choose the trust manually.",
                f"Bydelen avgjør helseforetaket bare fra {minimum} år, og {why_nb}; velg helseforetak manuelt.",
            )
        else:
            notes.add(
                "The project's catchment data has no bydel/grunnkrets detail for it; choose the trust manually.",
                "Opptaksdataene har ikke bydel/grunnkrets for den; velg helseforetak manuelt.",
            )
        return
    district = rules.get(bydel or "")
    if district is None:
        home.triage_reason = "bydel-unknown" if bydel else "bydel-missing"
        ext = "no-basis-urban-district"
        en = f"bydel '{bydel}' is not one of its bydeler" if bydel else f"the address has no bydel ({ext})"
        nb = f"bydel '{bydel}' er ikke en av bydelene" if bydel else f"adressen har ingen bydel ({ext})"
        notes.add(
            f"The hospital is decided by bydel here, but {en}; the hospital could not be decided and the region "
            "receives the referral.",
            f"Sykehuset avgjøres her av bydel, men {nb}; sykehuset kunne ikke avgjøres, og regionen mottar "
            "henvisningen.",
        )
        return
    org = tables.organizations[district.orgnr]
    home.hf, home.hf_candidates = org, ()
    notes.add(
        f"Bydel {bydel} {district.name}: its catchment area for this service line belongs to {org.name}.",
        f"Bydel {bydel} {district.name}: opptaksområdet for dette tjenesteområdet er {org.name}.",
    )


# --- step 2: free choice of treatment place ---------------------------------------------------------------


def _chosen(
    service_request: dict,
    tables: RoutingTables,
    organizations: OrganizationResolver | None,
    notes: _Notes,
    inputs: dict[str, str],
    home_rhf: str | None,
) -> Org | None:
    """The known RHF/HF the ServiceRequest asks for as performer, if any (several regions: the home one wins)."""
    known: list[Org] = []
    for i, ref in enumerate(service_request.get("performer") or []):
        if not isinstance(ref, dict):
            continue
        orgnr = _performer_orgnr(ref, service_request, organizations, notes)
        if not orgnr:
            continue
        inputs.setdefault("performer_orgnr", orgnr)
        org = tables.organizations.get(orgnr)
        if org is None:
            notes.add(
                f"ServiceRequest.performer[{i}] (organisasjonsnummer {orgnr}) is not a known RHF or health "
                "trust and does not change the routing.",
                f"ServiceRequest.performer[{i}] (organisasjonsnummer {orgnr}) er ikke et kjent RHF eller "
                "helseforetak og endrer ikke rutingen.",
            )
            continue
        known.append(org)
    if not known:
        return None
    regions = {o.rhf_orgnr for o in known}
    if len(regions) > 1:
        pick = next((o for o in known if o.rhf_orgnr == home_rhf), known[0])
        notes.add(
            f"The requested performers belong to several regions; {pick.name} is used.",
            f"Ønskede utførere hører til flere regioner; {pick.name} brukes.",
        )
        return pick
    return known[0]


def _performer_orgnr(
    ref: dict, service_request: dict, organizations: OrganizationResolver | None, notes: _Notes
) -> str | None:
    identifier = ref.get("identifier")
    if isinstance(identifier, dict) and identifier.get("system") in ORGNR_SYSTEMS and identifier.get("value"):
        return str(identifier["value"]).strip()
    reference = ref.get("reference")
    if not isinstance(reference, str) or not reference:
        return None
    resource = _resolve(reference, service_request, organizations, notes)
    for _ in range(3):  # Organization, or PractitionerRole/HealthcareService/Location -> their organisation
        if not isinstance(resource, dict):
            return None
        if resource.get("resourceType") == "Organization":
            ids = [i for i in resource.get("identifier") or [] if isinstance(i, dict)]
            value = next((i.get("value") for i in ids if i.get("system") in ORGNR_SYSTEMS and i.get("value")), None)
            return str(value).strip() if value else None
        link = {
            "PractitionerRole": "organization",
            "HealthcareService": "providedBy",
            "Location": "managingOrganization",
        }.get(resource.get("resourceType", ""))
        target = resource.get(link) if link else None
        if not isinstance(target, dict):
            return None
        ident = target.get("identifier")
        if isinstance(ident, dict) and ident.get("system") in ORGNR_SYSTEMS and ident.get("value"):
            return str(ident["value"]).strip()
        ref_text = target.get("reference")
        resource = _resolve(ref_text, service_request, organizations, notes) if isinstance(ref_text, str) else None
    return None


def _resolve(
    reference: str, service_request: dict, organizations: OrganizationResolver | None, notes: _Notes
) -> dict | None:
    if reference.startswith("#"):
        return next(
            (c for c in service_request.get("contained") or [] if isinstance(c, dict) and c.get("id") == reference[1:]),
            None,
        )
    if organizations is None:
        return None
    try:
        return organizations(reference)
    except Exception as exc:  # the resolver belongs to the caller; routing must not fail because of it
        notes.add(
            f"The performer {reference} could not be resolved ({type(exc).__name__}).",
            f"Utføreren {reference} kunne ikke slås opp ({type(exc).__name__}).",
        )
        return None


def _overrides(choice: Org, home: _Home) -> bool:
    """Does the requested performer take the referral away from the home default?"""
    if not home.rhf_orgnr or choice.rhf_orgnr != home.rhf_orgnr:
        return True
    if choice.kind == "hf" and home.hf is not None:
        return choice.orgnr != home.hf.orgnr
    if choice.kind == "hf" and home.hf_candidates:
        return choice.orgnr not in {o.orgnr for o in home.hf_candidates}
    return False


def _confirm(choice: Org, home: _Home, notes: _Notes) -> _Home:
    """A performer inside the home region that agrees with the catchment (or settles a split)."""
    if choice.kind == "hf" and home.hf is None:
        settles = bool(home.hf_candidates)
        home.hf, home.hf_candidates = choice, ()
        notes.add(
            f"The requested performer {choice.name} is in the patient's home region"
            + (" and is one of the catchment trusts." if settles else "."),
            f"Ønsket utfører {choice.name} er i pasientens hjemregion"
            + (" og er et av helseforetakene i opptaksområdet." if settles else "."),
        )
    else:
        notes.add(
            f"The requested performer {choice.name} agrees with the home-municipality routing.",
            f"Ønsket utfører {choice.name} stemmer med rutingen etter hjemkommune.",
        )
    return home


def _free_choice(
    choice: Org, home: _Home, tables: RoutingTables, service_line: str | None, inputs: dict[str, str], notes: _Notes
) -> RoutingDecision:
    hf = choice if choice.kind == "hf" else None
    rhf_name = tables.name(choice.rhf_orgnr)
    home_text = f" instead of {tables.name(home.rhf_orgnr)}" if home.rhf_orgnr else ""
    home_text_nb = f" i stedet for {tables.name(home.rhf_orgnr)}" if home.rhf_orgnr else ""
    notes.add(
        f"Free choice of treatment place (pasient- og brukerrettighetsloven § 2-4): the referral names "
        f"{choice.name}, so {rhf_name} receives it{home_text}.",
        f"Fritt behandlingsvalg (pasient- og brukerrettighetsloven § 2-4): henvisningen ber om "
        f"{choice.name}, så {rhf_name} mottar den{home_text_nb}.",
    )
    return RoutingDecision(
        rule="free-choice",
        triage=False,
        rhf_orgnr=choice.rhf_orgnr,
        rhf_name=rhf_name,
        hf_orgnr=hf.orgnr if hf else None,
        hf_name=hf.name if hf else None,
        hf_code=hf.code if hf else None,
        service_line=service_line,
        inputs=inputs,
        explanation=notes.as_dict(),
    )


# --- result -----------------------------------------------------------------------------------------------


def _decision(
    home: _Home, tables: RoutingTables, service_line: str | None, inputs: dict[str, str], notes: _Notes
) -> RoutingDecision:
    reason = home.triage_reason
    if reason is None and home.hf_candidates:
        reason = "hf-split"
    triage = reason is not None
    return RoutingDecision(
        rule="manual-triage" if triage else home.rule,
        triage=triage,
        rhf_orgnr=home.rhf_orgnr,
        rhf_name=tables.name(home.rhf_orgnr),
        hf_orgnr=home.hf.orgnr if home.hf else None,
        hf_name=home.hf.name if home.hf else None,
        hf_code=home.hf.code if home.hf else None,
        service_line=service_line,
        triage_reason=reason,
        triage_display=tables.triage_reasons.get(reason or ""),
        hf_candidates=tuple((o.orgnr, o.name) for o in home.hf_candidates),
        inputs=inputs,
        explanation=notes.as_dict(),
    )
