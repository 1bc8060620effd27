"""Conformance resources (StructureDefinition, ValueSet, CodeSystem, NamingSystem ...) by canonical URL.

:class:`ConformanceRegistry` holds the resources the validator works from:

* the R4 core definitions of :func:`fhir_server.core.definitions.r4` (always known);
* folders of FHIR JSON or XML files (``load_folder``), e.g. ``profiles/`` or a copy of an IG;
* FHIR npm packages (``load_package``: a ``.tgz`` with ``package/package.json``).

Files that cannot be read are reported as :class:`LoadProblem` values, never raised.

Known defects of published artefacts are tolerated only through the documented list in
``profiles/suppressions.json`` (see :class:`Suppressions`); the registry carries that list so the
validation engine can apply it explicitly.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from lxml import etree

from fhir_server.core import jsonio
from fhir_server.core.conformance.definitions import PRIMITIVE_JSON_TYPES, r4
from fhir_server.data import data_folder

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
PROFILES_DIR = data_folder("profiles")
SUPPRESSIONS_FILE = PROFILES_DIR / "suppressions.json"

CONFORMANCE_TYPES: frozenset[str] = frozenset(
    {
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "NamingSystem",
        "ConceptMap",
        "SearchParameter",
        "OperationDefinition",
        "CapabilityStatement",
        "ImplementationGuide",
        "PlanDefinition",
        "ActivityDefinition",
        "Questionnaire",
    }
)


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A file (or package entry) that could not be loaded, and why."""

    source: str
    message: str


# ------------------------------------------------------------------------------------------------
# Suppressions of known defects
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suppression:
    """One documented tolerance of a defect in a published conformance resource."""

    id: str
    url: str  # canonical URL of the defective resource
    action: str  # ignore-binding | ignore-invariant | accept-fixed-alias | context-as-element | allow-non-uri-system
    element: str | None = None  # element path (e.g. ``Extension.value[x]``) or None
    rule: str | None = None  # invariant key for ignore-invariant
    values: tuple[str, ...] = ()  # accepted alias values / literal systems
    why: str = ""
    source: str = ""


@dataclass
class Suppressions:
    """The list from ``profiles/suppressions.json``, indexed for the engine."""

    entries: list[Suppression] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path = SUPPRESSIONS_FILE) -> Suppressions:
        if not path.is_file():
            return cls()
        data = orjson.loads(path.read_bytes())
        entries = [
            Suppression(
                id=e["id"],
                url=e["url"],
                action=e["action"],
                element=e.get("element"),
                rule=e.get("rule"),
                values=tuple(e.get("values", ())),
                why=e.get("why", ""),
                source=e.get("source", ""),
            )
            for e in data.get("suppressions", ())
        ]
        return cls(entries)

    def find(self, action: str, url: str | None = None, element: str | None = None, rule: str | None = None):
        """Suppressions of ``action`` matching the given url / element / rule (None matches anything)."""
        for s in self.entries:
            if s.action != action:
                continue
            if url is not None and s.url != url:
                continue
            if element is not None and s.element is not None and s.element != element:
                continue
            if rule is not None and s.rule is not None and s.rule != rule:
                continue
            yield s

    def ignores_binding(self, url: str, element: str) -> Suppression | None:
        return next(self.find("ignore-binding", url, element), None)

    def ignores_invariant(self, url: str, key: str) -> Suppression | None:
        return next(self.find("ignore-invariant", url, rule=key), None)

    def fixed_aliases(self, url: str, element: str) -> tuple[str, ...]:
        return tuple(v for s in self.find("accept-fixed-alias", url, element) for v in s.values)

    def context_as_element(self, url: str) -> bool:
        return next(self.find("context-as-element", url), None) is not None

    def non_uri_systems(self) -> frozenset[str]:
        """Literal identifier systems that are tolerated although they are not URIs (e.g. ``HNR``)."""
        return frozenset(v for s in self.find("allow-non-uri-system") for v in s.values)


# ------------------------------------------------------------------------------------------------
# FHIR XML -> FHIR JSON
# ------------------------------------------------------------------------------------------------


class XmlConversionError(ValueError):
    """The XML is not FHIR XML this converter understands."""


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _primitive_json(type_code: str | None, text: str) -> Any:
    kind = PRIMITIVE_JSON_TYPES.get(type_code or "")
    if kind == "boolean":
        if text not in ("true", "false"):
            raise XmlConversionError(f"boolean value {text!r} is not true or false")
        return text == "true"
    if kind == "integer":
        return int(text)
    if kind == "decimal":
        return jsonio.loads(text)
    return text


def _children_of(type_name: str | None, path: str | None) -> dict:
    defs = r4()
    if type_name is None or defs.type(type_name) is None:
        return {}
    return defs.children(type_name, path or type_name)


def xml_to_json(xml: bytes | str) -> dict:
    """Convert one FHIR XML resource to FHIR JSON, driven by the R4 core definitions.

    Resource types not in the core subset are converted with ``fhir.resources`` R4B instead.
    """
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    if etree.QName(root).namespace != FHIR_NS:
        raise XmlConversionError(f"root element is not in the FHIR namespace ({FHIR_NS})")
    return _resource_to_json(root, xml)


def _resource_to_json(node: Any, raw: bytes | None = None) -> dict:
    rtype = _local(node.tag)
    if r4().type(rtype) is None:
        return _xml_via_fhir_resources(rtype, raw if raw is not None else etree.tostring(node))
    out: dict = {"resourceType": rtype}
    _fill(out, node, rtype, rtype)
    return out


def _xml_via_fhir_resources(rtype: str, raw: bytes) -> dict:
    from fhir.resources.R4B import get_fhir_model_class  # slow import, only when needed

    try:
        model = get_fhir_model_class(rtype)
    except KeyError as exc:
        raise XmlConversionError(f"{rtype} is not a FHIR resource type") from exc
    try:
        obj = model.model_validate_xml(raw)
    except Exception as exc:  # pydantic ValidationError and lxml errors alike
        raise XmlConversionError(f"{rtype} could not be read: {str(exc).splitlines()[0]}") from exc
    return obj.model_dump(mode="json", exclude_none=True, by_alias=True)


def _fill(out: dict, node: Any, type_name: str, path: str) -> None:
    """Copy the children of XML ``node`` (an element of ``type_name`` at snapshot ``path``) into ``out``."""
    kids = _children_of(type_name, path)
    for child in node:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        name = _local(child.tag)
        info = kids.get(name)
        if name == "div" and etree.QName(child).namespace == XHTML_NS:
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        is_array = info.element.is_array if info else False
        type_code = info.type_code if info else None
        if info is None and name not in ("extension", "modifierExtension"):
            # unknown element: keep it (the validator reports it); repeat -> array
            is_array = len(node.findall(child.tag)) > 1
        if name in ("extension", "modifierExtension"):
            is_array, type_code = True, "Extension"
        value, extra = _element_value(child, info, type_code, name, type_name, path)
        primitive = _is_primitive(type_code)
        if value is not None or (is_array and primitive and extra is not None):
            _put(out, name, value, is_array)
        if is_array and primitive:
            _put(out, "_" + name, extra, True)
        elif extra is not None:
            out["_" + name] = extra
    for key in [k for k in out if k.startswith("_") and isinstance(out[k], list)]:
        if all(v is None for v in out[key]):
            del out[key]
    if node.get("id") is not None and "id" not in out and type_name != "Resource":
        out["id"] = node.get("id")
    if node.get("url") is not None:
        out["url"] = node.get("url")


def _is_primitive(type_code: str | None) -> bool:
    if not type_code:
        return False
    return r4().is_primitive(type_code) or type_code.startswith("System.")


def _put(out: dict, name: str, value: Any, is_array: bool) -> None:
    if is_array:
        out.setdefault(name, []).append(value)
    else:
        out[name] = value


def _element_value(child: Any, info: Any, type_code: str | None, name: str, type_name: str, path: str):
    """(JSON value, primitive extension object or None) of one XML child element."""
    if (info is not None and info.element.types and info.element.types[0].code == "Resource") or (
        type_code == "Resource"
    ):
        inner = next((c for c in child if isinstance(c.tag, str)), None)
        if inner is None:
            raise XmlConversionError(f"{name} has no resource inside")
        return _resource_to_json(inner), None
    if _is_primitive(type_code) or (type_code is None and child.get("value") is not None and len(child) == 0):
        value = child.get("value")
        extra: dict = {}
        if child.get("id") is not None:
            extra["id"] = child.get("id")
        exts = [c for c in child if isinstance(c.tag, str) and _local(c.tag) == "extension"]
        if exts:
            extra["extension"] = [_complex(e, "Extension", "Extension") for e in exts]
        json_value = _primitive_json(type_code, value) if value is not None else None
        return json_value, (extra or None)
    if info is None:
        return _complex(child, None, None), None
    element = info.element
    if type_code in (None, "BackboneElement", "Element") or (
        element.types and element.types[0].code in ("BackboneElement", "Element") and len(element.types) == 1
    ):
        # backbone element: children live under the same type, one level deeper
        return _complex(
            child, type_name, element.content_reference.lstrip("#") if element.content_reference else element.path
        ), None
    return _complex(child, type_code, type_code), None


def _complex(node: Any, type_name: str | None, path: str | None) -> dict:
    out: dict = {}
    if type_name is None:
        for child in node:
            if not isinstance(child.tag, str):
                continue
            name = _local(child.tag)
            value = child.get("value") if len(child) == 0 else _complex(child, None, None)
            _put(out, name, value, len(node.findall(child.tag)) > 1)
        if node.get("url") is not None:
            out["url"] = node.get("url")
        return out
    _fill(out, node, type_name, path or type_name)
    return out


# ------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------

_VERSION_PART = re.compile(r"(\d+)|(\D+)")


def _version_key(version: str | None) -> tuple:
    parts = []
    for num, text in _VERSION_PART.findall(version or ""):
        parts.append((0, int(num), "") if num else (1, 0, text))
    return tuple(parts)


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    """``'http://x|1.0'`` -> ``('http://x', '1.0')``; an explicit ``version`` wins."""
    base, _, ver = url.partition("|")
    return base, version or ver or None


class ConformanceRegistry:
    """Conformance resources by canonical URL and version, plus the R4 core definitions."""

    def __init__(self, *, suppressions: Suppressions | None = None) -> None:
        self._by_url: dict[str, dict[str, dict]] = {}
        self._order: dict[str, list[str]] = {}
        self.problems: list[LoadProblem] = []
        self.suppressions = suppressions if suppressions is not None else Suppressions.load()
        self._oid_code_systems: dict[str, dict] | None = None
        self.generation = 0  # bumped on every change; caches built over the registry compare it

    # -- adding ---------------------------------------------------------------------------------

    def add(self, resource: dict, source: str | None = None) -> bool:
        """Register one conformance resource (a Bundle's entries are added one by one)."""
        rtype = resource.get("resourceType")
        if rtype == "Bundle":
            for entry in resource.get("entry", ()):
                inner = entry.get("resource")
                if isinstance(inner, dict):
                    self.add(inner, source)
            return True
        url = resource.get("url")
        if rtype == "NamingSystem" and not url:
            # R4 NamingSystems have no canonical url: index them by each of their unique ids
            ids = [
                ("urn:oid:" + u["value"])
                if u.get("type") == "oid" and not u["value"].startswith("urn:")
                else u["value"]
                for u in resource.get("uniqueId", ())
                if isinstance(u.get("value"), str)
            ]
            for unique_id in ids:
                self._store(unique_id, resource)
            return bool(ids)
        if rtype not in CONFORMANCE_TYPES or not isinstance(url, str) or not url:
            return False
        self._store(url, resource)
        return True

    def _store(self, url: str, resource: dict) -> None:
        version = resource.get("version") or ""
        self._by_url.setdefault(url, {})[version] = resource
        order = self._order.setdefault(url, [])
        if version in order:
            order.remove(version)
        order.append(version)
        self._oid_code_systems = None
        self.generation += 1

    def load_folder(self, path: str | Path, *, recursive: bool = True) -> list[LoadProblem]:
        """Load every ``*.json`` and ``*.xml`` conformance resource under ``path``; returns the problems."""
        folder = Path(path)
        problems: list[LoadProblem] = []
        if not folder.is_dir():
            problems.append(LoadProblem(str(folder), "folder not found"))
        else:
            pattern = "**/*" if recursive else "*"
            for file in sorted(folder.glob(pattern)):
                if file.suffix.lower() not in (".json", ".xml") or not file.is_file():
                    continue
                if file.name in ("package.json", ".index.json", "suppressions.json") or file.name.startswith("."):
                    continue
                problem = self._load_bytes(file.read_bytes(), str(file), file.suffix.lower())
                if problem:
                    problems.append(problem)
        self.problems.extend(problems)
        return problems

    def load_package(self, tgz_path: str | Path) -> list[LoadProblem]:
        """Load a FHIR npm package (``package/package.json`` plus resources); returns the problems."""
        problems: list[LoadProblem] = []
        tgz = Path(tgz_path)
        try:
            with tarfile.open(tgz, "r:*") as tar:
                names = tar.getnames()
                if "package/package.json" not in names:
                    problems.append(LoadProblem(str(tgz), "not a FHIR package: package/package.json is missing"))
                for member in tar.getmembers():
                    name = member.name
                    if not member.isfile() or not name.startswith("package/") or name.count("/") > 2:
                        continue
                    base = name.rsplit("/", 1)[-1]
                    if base in ("package.json", ".index.json") or not base.endswith((".json", ".xml")):
                        continue
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    problem = self._load_bytes(handle.read(), f"{tgz.name}:{name}", "." + base.rsplit(".", 1)[-1])
                    if problem:
                        problems.append(problem)
        except (OSError, tarfile.TarError) as exc:
            problems.append(LoadProblem(str(tgz), f"cannot read package: {exc}"))
        self.problems.extend(problems)
        return problems

    def _load_bytes(self, data: bytes, source: str, suffix: str) -> LoadProblem | None:
        try:
            resource = xml_to_json(data) if suffix == ".xml" else orjson.loads(data)
        except (ValueError, etree.XMLSyntaxError, XmlConversionError) as exc:
            return LoadProblem(source, f"cannot read: {exc}")
        except Exception as exc:  # never crash on one bad file
            return LoadProblem(source, f"cannot read: {type(exc).__name__}: {exc}")
        if not isinstance(resource, dict) or "resourceType" not in resource:
            return LoadProblem(source, "not a FHIR resource (no resourceType)")
        if resource["resourceType"] not in CONFORMANCE_TYPES and resource["resourceType"] != "Bundle":
            return None  # examples and other instances are not conformance resources: skipped silently
        if not self.add(resource, source):
            return LoadProblem(source, f"{resource['resourceType']} without a canonical url was skipped")
        return None

    # -- lookup ---------------------------------------------------------------------------------

    def resolve(self, url: str, version: str | None = None) -> dict | None:
        """The resource with canonical ``url`` (``url|version`` accepted); the latest version if none given.

        R4 core StructureDefinitions, ValueSets and CodeSystems are always found.
        """
        base, ver = split_canonical(url, version)
        versions = self._by_url.get(base)
        if versions:
            if ver is not None:
                if ver in versions:
                    return versions[ver]
            else:
                best = max(self._order[base], key=lambda v: (_version_key(v), self._order[base].index(v)))
                return versions[best]
        return self._core(base, ver)

    def _core(self, url: str, version: str | None) -> dict | None:
        if version not in (None, "4.0.1"):
            return None
        defs = r4()
        if url.startswith("http://hl7.org/fhir/StructureDefinition/"):
            td = defs.type(url.rsplit("/", 1)[-1])
            if td is not None and td.url == url:
                return _core_sd(td.name)
            return None
        return defs.value_set(url) or defs.code_system(url)

    def structure_definition(self, url: str) -> dict | None:
        res = self.resolve(url)
        return res if res and res.get("resourceType") == "StructureDefinition" else None

    def value_set(self, url: str) -> dict | None:
        res = self.resolve(url)
        return res if res and res.get("resourceType") == "ValueSet" else None

    def code_system(self, url: str) -> dict | None:
        """CodeSystem by canonical url, or by an identifier/alias such as ``urn:oid:...`` (Volven OIDs)."""
        res = self.resolve(url)
        if res and res.get("resourceType") == "CodeSystem":
            return res
        return self._code_systems_by_oid().get(url.split("|")[0])

    def _code_systems_by_oid(self) -> dict[str, dict]:
        if self._oid_code_systems is None:
            index: dict[str, dict] = {}
            for cs in self.all("CodeSystem"):
                for ident in (
                    cs.get("identifier", ())
                    if isinstance(cs.get("identifier"), list)
                    else ([cs["identifier"]] if isinstance(cs.get("identifier"), dict) else [])
                ):
                    value = ident.get("value")
                    if isinstance(value, str):
                        index.setdefault(value if value.startswith("urn:") else "urn:oid:" + value, cs)
            self._oid_code_systems = index
        return self._oid_code_systems

    def all(self, resource_type: str | None = None) -> Iterator[dict]:
        """Every loaded resource (latest version of each url), optionally of one type; core not included."""
        seen: set[int] = set()
        for url in self._by_url:
            res = self.resolve(url)
            if res and id(res) not in seen and (resource_type is None or res.get("resourceType") == resource_type):
                seen.add(id(res))
                yield res

    def __contains__(self, url: str) -> bool:
        return self.resolve(url) is not None

    def urls(self, resource_type: str | None = None) -> list[str]:
        return [r["url"] for r in self.all(resource_type) if r.get("url")]


_CORE_SD_CACHE: dict[str, dict] = {}


def _core_sd(type_name: str) -> dict | None:
    """The raw R4 core StructureDefinition of ``type_name`` (with snapshot)."""
    if not _CORE_SD_CACHE:
        for sd in r4().structure_definitions:
            _CORE_SD_CACHE[sd["url"].rsplit("/", 1)[-1]] = sd
    return _CORE_SD_CACHE.get(type_name)


def is_core_url(url: str) -> bool:
    return url.startswith("http://hl7.org/fhir/")


def load_project_profiles(registry: ConformanceRegistry, folder: Path = PROFILES_DIR) -> list[LoadProblem]:
    """Load the project's own ``profiles/`` folder (the shipped one unless ``folder`` says otherwise)."""
    return registry.load_folder(folder)


def default_registry(extra_folders: Iterable[str | Path] = ()) -> ConformanceRegistry:
    """A registry with the project's profiles plus ``extra_folders`` (e.g. a copy of no-basis)."""
    registry = ConformanceRegistry()
    for folder in extra_folders:
        registry.load_folder(folder)
    load_project_profiles(registry)
    return registry
