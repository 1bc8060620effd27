"""Reference checks: the target type of ``Reference.reference`` and ``Reference.type`` (ref-1 included).

Accepted forms of ``Reference.reference``:

* ``Type/id``, ``Type/id/_history/n`` and absolute URLs ending so: ``Type`` must be a resource type
  allowed by the element's ``targetProfile`` (unless the element allows any ``Resource``);
* ``#id``: must match a contained resource (ref-1), whose type must be allowed; ``#`` alone names the container;
* ``urn:uuid:`` / ``urn:oid:`` (resolved within transactions) and conditional ``Type?search``;
* other absolute URLs (e.g. logical references to other servers) are accepted as they are.
"""

from __future__ import annotations

import pkgutil
import re
from functools import cache

from fhir_server.core.conformance.definitions import r4
from fhir_server.core.issues import Issue

from .primitives import mask

_RELATIVE = re.compile(
    r"(?:(?:https?|ftp)://[^\s]+/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
_ABSOLUTE = re.compile(r"[a-z][a-z0-9+.\-]*:\S+")


#: R4 resource types missing from fhir.resources R4B (removed in R4B).
_R4_ONLY = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)


@cache
def _r4b_module_names() -> frozenset[str]:
    import fhir.resources.R4B as r4b_package

    return frozenset(m.name for m in pkgutil.iter_modules(r4b_package.__path__))


def is_fhir_resource_type(name: str) -> bool:
    """True for any FHIR R4 resource type name (not only the ones this server stores)."""
    return r4().is_resource_type(name) or name in _R4_ONLY or name.lower() in _r4b_module_names()


def _allowed_text(targets: tuple[str, ...]) -> str:
    return ", ".join(targets)


def _type_issue(path: str, what: str, found: str, targets: tuple[str, ...]) -> Issue:
    return Issue(
        "error",
        "invalid",
        f"{path}: {what} a {found}, but this element may only refer to {_allowed_text(targets)}",
        path,
        f"{path}: {what.replace('refers to', 'peker til').replace('names', 'angir')} en {found}, "
        f"men dette elementet kan bare peke til {_allowed_text(targets)}",
        "reference-target",
    )


def reference_type(reference: str) -> str | None:
    """The resource type named by a literal or conditional reference (None for urn:, # and unknown forms)."""
    m = _RELATIVE.fullmatch(reference) or _CONDITIONAL.fullmatch(reference)
    return m.group(1) if m else None


def check_reference(
    node: dict,
    targets: tuple[str, ...],
    path: str,
    contained: dict[str, str] | None,
    issues: list[Issue],
) -> None:
    """Append the problems of one Reference object to ``issues``.

    ``targets``: allowed resource types (empty: any); ``contained``: id -> resourceType of the
    container's contained resources (None when the reference is not inside a resource).
    """
    ref = node.get("reference")
    declared = node.get("type")
    found: str | None = None
    ref_path = path + ".reference"
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            target_type = (contained or {}).get(ref[1:])
            if ref == "#":
                found = target_type
            else:
                if target_type is None:
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            mask(f"{ref_path}: {ref!r} does not match the id of a contained resource"),
                            ref_path,
                            mask(f"{ref_path}: {ref!r} samsvarer ikke med id-en til en contained-ressurs"),
                            "ref-1",
                        )
                    )
                else:
                    found = target_type
        elif ref.startswith(("urn:uuid:", "urn:oid:")):
            pass
        else:
            found = reference_type(ref)
            if found is None and not _ABSOLUTE.fullmatch(ref):
                issues.append(
                    Issue(
                        "error",
                        "invalid",
                        mask(
                            f"{ref_path}: {ref!r} is not a valid reference "
                            "(expected Type/id, an absolute URL, urn:uuid:, urn:oid: or #id)"
                        ),
                        ref_path,
                        mask(
                            f"{ref_path}: {ref!r} er ikke en gyldig referanse "
                            "(forventet Type/id, URL, urn:uuid:, urn:oid: eller #id)"
                        ),
                        "reference-format",
                    )
                )
            elif found is not None and not is_fhir_resource_type(found):
                issues.append(
                    Issue(
                        "error",
                        "invalid",
                        f"{ref_path}: '{found}' is not a FHIR R4 resource type",
                        ref_path,
                        f"{ref_path}: '{found}' er ikke en ressurstype i FHIR R4",
                        "reference-format",
                    )
                )
                found = None
        if found is not None and targets and found not in targets:
            issues.append(_type_issue(ref_path, "refers to", found, targets))
    if isinstance(declared, str) and declared:
        type_path = path + ".type"
        name = (
            declared.rsplit("/", 1)[-1] if declared.startswith("http://hl7.org/fhir/StructureDefinition/") else declared
        )
        if found is not None and name != found:
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"{type_path}: '{declared}' does not agree with the reference, which names a {found}",
                    type_path,
                    f"{type_path}: '{declared}' stemmer ikke med referansen, som peker til en {found}",
                    "reference-type",
                )
            )
        elif found is None and targets and name not in targets and is_fhir_resource_type(name):
            issues.append(_type_issue(type_path, "names", name, targets))
