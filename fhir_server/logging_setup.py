"""Logging that never writes a national identity number: every record passes a masking filter."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

#: 11 digits (any Unicode digits), optionally split after the birth date as people write them (``010190 12345``).
_ELEVEN_DIGITS = re.compile(r"(?<!\d)(\d{6})[ \t.\-]?(\d{5})(?!\d)")
#: A digit escaped as JSON (``\u0031``).
_JSON_DIGIT = re.compile(r"\\u003(\d)")
#: How many layers of encoding are taken off (``%31``, ``%2531``, ...).
_DECODE_ROUNDS = 4


def _decoded(text: str) -> str:
    """``text`` with percent-encoding (``+`` as a space too) and JSON digit escapes taken off, layer by layer."""
    for _ in range(_DECODE_ROUNDS):
        decoded = _JSON_DIGIT.sub(r"\1", unquote_plus(text, errors="replace"))
        if decoded == text:
            break
        text = decoded
    return text


def mask_numbers(text: str) -> str:
    """Mask every 11-digit run (fødselsnummer, D-, H- and FH-nummer share the form) to its first 6 digits.

    A number hidden by an encoding (one digit as ``%33``, ``+`` between its parts) is found in the
    decoded text; then the decoded text is logged, masked."""
    masked = _ELEVEN_DIGITS.sub(r"\1*****", text)
    decoded = _decoded(masked)
    if decoded == masked:
        return masked
    remasked = _ELEVEN_DIGITS.sub(r"\1*****", decoded)
    return remasked if remasked != decoded else masked


class MaskIdentityNumbers(logging.Filter):
    """Rewrites each record's message with 11-digit numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(isinstance(f, MaskIdentityNumbers) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        handler.addFilter(MaskIdentityNumbers())
        root.addHandler(handler)
    root.setLevel(level)
