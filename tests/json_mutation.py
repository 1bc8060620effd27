"""Where a random test can change a parsed JSON document: the fast-path tests mutate documents and
compare a fast path with the general one on each variant."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any


def mutants(
    doc: Any, count: int, seed: int, rounds: Sequence[int], mutate: Callable[[random.Random, Any], None]
) -> list[Any]:
    """``count`` copies of ``doc``, each changed ``rng.choice(rounds)`` times by ``mutate(rng, copy)``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        changed = copy.deepcopy(doc)
        for _ in range(rng.choice(rounds)):
            mutate(rng, changed)
        out.append(changed)
    return out


def _containers(doc: Any) -> list[Any]:
    """Every dict and list in ``doc``, depth first (the order the mutation tests' seeds rely on)."""
    found: list[Any] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.append(node)
            stack += list(node.values())
        elif isinstance(node, list):
            found.append(node)
            stack += node
    return found


def spots(doc: Any) -> list[tuple[Any, Any]]:
    """Every ``(holder, key)`` in ``doc``: a dict and one of its keys, or a list and one of its indexes."""
    out: list[tuple[Any, Any]] = []
    for node in _containers(doc):
        out += [(node, k) for k in node] if isinstance(node, dict) else [(node, i) for i in range(len(node))]
    return out


def objects(doc: Any) -> list[dict]:
    """Every JSON object in ``doc``."""
    return [node for node in _containers(doc) if isinstance(node, dict)]
