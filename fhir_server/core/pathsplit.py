"""Splitting dotted paths and element ids on separators that stand outside brackets."""

from __future__ import annotations


def split_outside(text: str, sep: str = ".", opening: str = "(", closing: str = ")") -> list[str]:
    """``a.where(b.c).d`` → ``['a', 'where(b.c)', 'd']``: ``sep`` splits only outside the brackets given."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch in opening:
            depth += 1
        elif ch in closing:
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts
