"""Walking FHIR JSON: every object in a resource with the FHIRPath expression that reaches it."""

from __future__ import annotations

from collections.abc import Iterator


def walk_objects(node: object, path: str) -> Iterator[tuple[str, dict]]:
    """Yield (FHIRPath, dict) for every JSON object under ``node`` (``_x`` primitive extensions as ``x``)."""
    if isinstance(node, dict):
        yield path, node
        for key, child in node.items():
            if key == "resourceType":
                continue
            name = key[1:] if key.startswith("_") else key
            if isinstance(child, list):
                for i, item in enumerate(child):
                    yield from walk_objects(item, f"{path}.{name}[{i}]")
            elif isinstance(child, dict):
                yield from walk_objects(child, f"{path}.{name}")
