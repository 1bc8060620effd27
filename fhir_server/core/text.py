"""Characters FHIR text may not hold, found and replaced (no dependencies: issues and limits use it)."""

from __future__ import annotations

import re

#: Characters FHIR strings may not hold (below U+0020 except tab, LF, CR), nor XML 1.0 and PostgreSQL
#: text: lone surrogates (not Unicode text) and the non-characters U+FFFE and U+FFFF.
FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a control character, a lone surrogate ...), or None."""
    found = FORBIDDEN_CHARS.search(text)
    if found is None:
        return None
    return (
        f"the text holds the character U+{ord(found.group()):04X} (position {found.start() + 1}), which FHIR "
        "text may not hold (control characters other than tab, line feed and carriage return; lone surrogates)"
    )


def clean(text: str) -> str:
    """``text`` with each forbidden character replaced by U+FFFD (for audit records and messages)."""
    return FORBIDDEN_CHARS.sub("\ufffd", text)


def clean_json(value: object) -> object:
    """Parsed JSON with :func:`clean` applied to every string (for small documents built from request text)."""
    if isinstance(value, str):
        return clean(value) if FORBIDDEN_CHARS.search(value) else value
    if isinstance(value, dict):
        return {clean(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value
