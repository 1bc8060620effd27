"""Snapshot generation: a StructureDefinition's differential applied over its base's snapshot.

The base is an R4 core definition or another profile in the :class:`ConformanceRegistry` (whose
snapshot is generated first when it has only a differential, as the no-basis files do).

What the generator does, in the order of the differential:

* finds each differential element in the working snapshot by element ``id`` (derived from
  ``path`` and ``sliceName`` when the differential has no ids);
* unfolds a data type's elements when the differential constrains inside it (e.g.
  ``Patient.identifier:FNR.system``), from the type's profile when the element names one,
  otherwise from the core type;
* creates slices (the sliced element and its children copied under ``element:sliceName``, slice
  ``min`` 0 unless the differential says otherwise), placed after the existing slices;
* maps choice renames (``Extension.valueCoding`` or ``value[x]:valueCoding``) onto ``value[x]``
  and restricts its type;
* merges the constraints: cardinality, types, fixed[x]/pattern[x], binding, slicing, constraints
  (appended, with ``source`` set), and the documentation fields;
* for extension definitions, fixes ``Extension.url`` to the extension's canonical URL.

Limits: differential ``slicing`` on a choice element, re-slicing (``a:b/c``) and
``contentReference`` unfolding inside profiled types are handled only as far as the no-basis,
Helsenorge and project profiles need; anything the generator cannot place raises
:class:`SnapshotError` naming the element.
"""

from __future__ import annotations

import copy

from fhir_server.core.conformance.packages import ConformanceRegistry, is_core_url
from fhir_server.core.pathsplit import split_outside

#: Differential keys copied onto the snapshot element when present.
_COPY_KEYS = (
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "label",
    "code",
    "min",
    "max",
    "mustSupport",
    "isModifier",
    "isModifierReason",
    "isSummary",
    "meaningWhenMissing",
    "maxLength",
    "example",
    "orderMeaning",
    "representation",
    "sliceIsConstraining",
    "condition",
    "type",
    "mapping",
)
_VALUE_PREFIXES = ("fixed", "pattern", "defaultValue", "minValue", "maxValue")


class SnapshotError(ValueError):
    """The differential cannot be applied to its base."""


def element_id(element: dict) -> str:
    """The element's id, or one derived from its path and slice name (for differentials without ids)."""
    if element.get("id"):
        return element["id"]
    path = element["path"]
    return path + (":" + element["sliceName"] if element.get("sliceName") else "")


def _split_id(eid: str) -> list[str]:
    """``'Patient.identifier:FNR.system'`` -> ``['Patient', 'identifier:FNR', 'system']`` (dots inside [] kept)."""
    return split_outside(eid, opening="[", closing="]")


def _id_to_path(eid: str) -> str:
    return ".".join(seg.split(":", 1)[0] for seg in _split_id(eid))


def base_snapshot(sd: dict, registry: ConformanceRegistry, _stack: tuple[str, ...] = ()) -> list[dict]:
    """The snapshot elements of ``sd``: its own snapshot if present, otherwise a generated one (cached)."""
    snap = sd.get("snapshot", {}).get("element")
    if snap:
        return snap
    key = f"{sd.get('url')}|{sd.get('version', '')}"
    cache = registry.__dict__.setdefault("_snapshot_cache", {})
    entry = cache.get(key)
    if entry is not None and entry[0] == registry.generation:
        return entry[1]
    elements = generate_snapshot(sd, registry, _stack=_stack)
    cache[key] = (registry.generation, elements)
    return elements


def generate_snapshot(
    sd: dict,
    registry: ConformanceRegistry,
    *,
    warnings: list[str] | None = None,
    _stack: tuple[str, ...] = (),
) -> list[dict]:
    """Generate the snapshot elements of ``sd`` from its differential over its base definition."""
    url = sd.get("url", "?")
    if url in _stack:
        raise SnapshotError(f"{url}: circular baseDefinition chain {' -> '.join((*_stack, url))}")
    base_url = sd.get("baseDefinition")
    if not base_url:
        raise SnapshotError(f"{url}: no baseDefinition")
    base = registry.structure_definition(base_url)
    if base is None:
        raise SnapshotError(f"{url}: base definition {base_url} is not known")
    builder = _Builder(sd, registry, base_snapshot(base, registry, (*_stack, url)), warnings, (*_stack, url))
    return builder.run()


class _Builder:
    def __init__(
        self,
        sd: dict,
        registry: ConformanceRegistry,
        base_elements: list[dict],
        warnings: list[str] | None,
        stack: tuple[str, ...],
    ) -> None:
        self.sd = sd
        self.url = sd.get("url", "?")
        self.registry = registry
        self.elements = [copy.deepcopy(e) for e in base_elements]
        self.warnings = warnings if warnings is not None else []
        self.stack = stack
        for e in self.elements:
            e.setdefault("id", element_id(e))
            for c in e.get("constraint", ()):
                c.setdefault("source", sd.get("baseDefinition"))
        self._reindex()

    # -- index helpers ----------------------------------------------------------------------------

    def _reindex(self) -> None:
        self.index = {e["id"]: i for i, e in enumerate(self.elements)}

    def _group_end(self, eid: str, include_slices: bool) -> int:
        """Index after the last element in ``eid``'s subtree (and its slices' subtrees if asked)."""
        i = self.index[eid]
        end = i + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if other.startswith(eid + ".") or (include_slices and other.startswith(eid + ":")):
                end += 1
            else:
                break
        return end

    def _insert(self, at: int, new: list[dict]) -> None:
        self.elements[at:at] = new
        self._reindex()

    # -- main -----------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        root_type = self.sd.get("type")
        for raw in self.sd.get("differential", {}).get("element", ()):
            diff = copy.deepcopy(raw)
            eid = self._normalise_id(element_id(diff), diff)
            target = self._ensure(eid)
            self._merge(self.elements[target], diff)
        if root_type == "Extension" and self.sd.get("derivation") == "constraint":
            url_el = self.index.get("Extension.url")
            if url_el is not None and "fixedUri" not in self.elements[url_el]:
                self.elements[url_el]["fixedUri"] = self.url
        self._default_extension_slicing()
        return self.elements

    def _normalise_id(self, eid: str, diff: dict) -> str:
        """Map ``value[x]:valueCoding`` (choice 'slice') onto ``value[x]`` with its type restricted."""
        segs = _split_id(eid)
        out = []
        for n, seg in enumerate(segs):
            name, _, slice_name = seg.partition(":")
            if name.endswith("[x]") and slice_name.startswith(name[:-3]) and slice_name != name[:-3]:
                type_name = slice_name[len(name[:-3]) :]
                out.append(name)
                if n == len(segs) - 1:
                    diff.pop("sliceName", None)
                    diff.setdefault("type", [{"code": _type_code_from_suffix(type_name)}])
                continue
            out.append(seg)
        return ".".join(out)

    def _ensure(self, eid: str) -> int:
        """Index of element ``eid`` in the working snapshot, unfolding types and creating slices as needed."""
        if eid in self.index:
            return self.index[eid]
        segs = _split_id(eid)
        current = segs[0]
        if current not in self.index:
            raise SnapshotError(f"{self.url}: root element {current} does not match the base")
        for seg in segs[1:]:
            parent = current
            name, _, slice_name = seg.partition(":")
            unsliced = f"{parent}.{name}"
            if unsliced not in self.index:
                self._unfold(parent)
            if unsliced not in self.index:
                unsliced = self._choice_rename(parent, name)
            if slice_name:
                sliced = f"{unsliced}:{slice_name}"
                if sliced not in self.index:
                    self._make_slice(unsliced, slice_name)
                current = sliced
            else:
                current = unsliced
        return self.index[current]

    def _choice_rename(self, parent: str, name: str) -> str:
        """``valueCoding`` under ``parent`` -> ``parent.value[x]`` with its type restricted to Coding."""
        for eid in list(self.index):
            if not eid.startswith(parent + ".") or "." in eid[len(parent) + 1 :] or ":" in eid[len(parent) + 1 :]:
                continue
            child = eid[len(parent) + 1 :]
            if child.endswith("[x]") and name.startswith(child[:-3]) and len(name) > len(child) - 3:
                type_code = _type_code_from_suffix(name[len(child) - 3 :])
                element = self.elements[self.index[eid]]
                kept = [t for t in element.get("type", ()) if t["code"] == type_code]
                if not kept:
                    raise SnapshotError(f"{self.url}: {parent}.{name}: type {type_code} is not allowed by the base")
                element["type"] = kept
                return eid
        raise SnapshotError(f"{self.url}: element {parent}.{name} is not in the base definition")

    def _unfold(self, parent_id: str) -> None:
        """Insert the children of ``parent_id``'s data type (from its type profile or the core type)."""
        if any(e.startswith(parent_id + ".") for e in self.index):
            return  # already unfolded
        parent = self.elements[self.index[parent_id]]
        if parent.get("contentReference"):
            ref = parent["contentReference"].lstrip("#")
            source = [e for e in self.elements if e["path"] == ref or e["path"].startswith(ref + ".")]
            source_root_path = ref
            children = [e for e in source if e["path"] != ref and ":" not in e["id"]]
            new = []
            for e in children:
                c = copy.deepcopy(e)
                c["path"] = parent["path"] + c["path"][len(source_root_path) :]
                c["id"] = parent_id + c["id"][len(ref) :]
                new.append(c)
            self._insert(self.index[parent_id] + 1, new)
            return
        types = parent.get("type") or []
        if len(types) != 1:
            raise SnapshotError(
                f"{self.url}: cannot constrain inside {parent_id}: it has {len(types)} types (restrict it to one)"
            )
        type_code = types[0]["code"]
        source_sd = None
        for profile in types[0].get("profile", ()):
            source_sd = self.registry.structure_definition(profile)
            if source_sd is None:
                self.warnings.append(f"{parent_id}: type profile {profile} is not known; unfolded from {type_code}")
            break
        if source_sd is None:
            source_sd = self.registry.structure_definition(f"http://hl7.org/fhir/StructureDefinition/{type_code}")
        if source_sd is None:
            raise SnapshotError(f"{self.url}: {parent_id}: type {type_code} is not known")
        source = base_snapshot(source_sd, self.registry, self.stack)
        root_path = source[0]["path"]
        root_id = source[0].get("id", root_path)
        new = []
        for e in source[1:]:
            c = copy.deepcopy(e)
            cid = c.get("id") or element_id(c)
            c["id"] = parent_id + cid[len(root_id) :]
            c["path"] = parent["path"] + c["path"][len(root_path) :]
            for con in c.get("constraint", ()):
                con.setdefault("source", source_sd.get("url"))
            new.append(c)
        self._insert(self.index[parent_id] + 1, new)

    def _make_slice(self, unsliced: str, slice_name: str) -> None:
        start = self.index[unsliced]
        end = self._group_end(unsliced, include_slices=False)
        new = []
        for e in self.elements[start:end]:
            c = copy.deepcopy(e)
            c["id"] = f"{unsliced}:{slice_name}" + c["id"][len(unsliced) :]
            new.append(c)
        head = new[0]
        head["sliceName"] = slice_name
        head.pop("slicing", None)
        head["min"] = 0
        self._insert(self._group_end(unsliced, include_slices=True), new)

    def _merge(self, target: dict, diff: dict) -> None:
        for key in _COPY_KEYS:
            if key in diff:
                target[key] = diff[key]
        for key, value in diff.items():
            if key.startswith(_VALUE_PREFIXES) and key not in ("minValue", "maxValue"):
                for prefix in _VALUE_PREFIXES:
                    if key.startswith(prefix):
                        for old in [k for k in target if k.startswith(prefix) and k != key]:
                            del target[old]
                target[key] = value
        if "sliceName" in diff:
            target["sliceName"] = diff["sliceName"]
        if "binding" in diff:
            binding = dict(target.get("binding") or {})
            binding.update(diff["binding"])
            target["binding"] = binding
        if "slicing" in diff:
            slicing = dict(target.get("slicing") or {})
            slicing.update(diff["slicing"])
            target["slicing"] = slicing
        if "constraint" in diff:
            existing = {c.get("key"): c for c in target.get("constraint", ())}
            for c in diff["constraint"]:
                c = dict(c)
                c.setdefault("source", self.url)
                existing[c.get("key")] = c
            target["constraint"] = list(existing.values())
        if target.get("min", 0) > _max_int(target.get("max", "*")):
            raise SnapshotError(f"{self.url}: {target['id']}: min {target['min']} is above max {target['max']}")

    def _default_extension_slicing(self) -> None:
        """Extension slices without an explicit slicing get the implied one (by url, open)."""
        sliced = {e["id"].rsplit(":", 1)[0] for e in self.elements if e.get("sliceName")}
        for e in self.elements:
            if e["id"] in sliced and "slicing" not in e and e["path"].endswith((".extension", ".modifierExtension")):
                e["slicing"] = {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}


def _max_int(value: str) -> int:
    return 10**9 if value == "*" else int(value)


def _type_code_from_suffix(suffix: str) -> str:
    """``'Coding'`` -> ``Coding``; ``'String'`` -> ``string`` (primitive types start lower case)."""
    primitive = {
        "String",
        "Boolean",
        "Integer",
        "Decimal",
        "Uri",
        "Url",
        "Canonical",
        "Code",
        "Id",
        "Oid",
        "Uuid",
        "Date",
        "DateTime",
        "Instant",
        "Time",
        "Markdown",
        "Base64Binary",
        "PositiveInt",
        "UnsignedInt",
    }
    return suffix[:1].lower() + suffix[1:] if suffix in primitive else suffix


def ensure_snapshot(sd: dict, registry: ConformanceRegistry) -> list[dict]:
    """Snapshot elements for ``sd`` (generated when missing); core definitions are returned as they are."""
    if is_core_url(sd.get("url", "")) and sd.get("snapshot"):
        return sd["snapshot"]["element"]
    return base_snapshot(sd, registry)


#: Narrative keys left out of snapshots written into the project's files: the structure is kept,
#: the wording of third-party base profiles is not copied (it stays in their own packages).
DOCUMENTATION_KEYS = (
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "mapping",
    "example",
    "isModifierReason",
    "meaningWhenMissing",
    "orderMeaning",
    "label",
)


def strip_documentation(elements: list[dict]) -> list[dict]:
    """Copies of ``elements`` without long narrative keys; ``short`` and ``definition`` stay (sdf-3 needs one)."""
    out = []
    for element in elements:
        kept = {
            k: v
            for k, v in element.items()
            if k not in DOCUMENTATION_KEYS or k in ("short", "definition", "isModifierReason")
        }
        # sdf-3: every snapshot element has a definition; point to the base where we keep none
        kept.setdefault("definition", f"See the base definition of {element.get('path', 'this element')}.")
        out.append(kept)
    return out


def with_snapshot(sd: dict, registry: ConformanceRegistry, warnings: list[str] | None = None) -> dict:
    """A copy of ``sd`` with a freshly generated snapshot (documentation stripped) before its differential."""
    out = {k: v for k, v in sd.items() if k not in ("snapshot", "differential")}
    out["snapshot"] = {"element": strip_documentation(generate_snapshot(sd, registry, warnings=warnings))}
    if "differential" in sd:
        out["differential"] = sd["differential"]
    return out
