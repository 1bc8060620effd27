"""Registering checks: the ``@check`` decorator, and the exceptions a check raises to fail or skip."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance_tests.client import Client

CheckFunction = Callable[["Client"], None]


class CheckFailed(AssertionError):
    """The server broke a rule: the message says what was sent, what was expected and what came back."""


class CheckSkipped(Exception):
    """The check does not apply to this server (e.g. it does not declare the operation the check needs)."""


@dataclass(frozen=True)
class Check:
    """One registered check: ``area.name``, its function and a one-line description."""

    name: str
    area: str
    function: CheckFunction
    description: str


#: Every check in registration order.
CHECKS: list[Check] = []
#: The order areas run in (capabilities first: later checks read the CapabilityStatement); others run last.
AREAS = (
    "capabilities",
    "rest",
    "search",
    "conditional",
    "bundles",
    "errors",
    "formats",
    "profiles",
    "validate",
    "referral",
    "pathways",
    "regional",
)


def check(area: str, name: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under ``area.name``; its docstring's first line describes it."""

    def register(function: CheckFunction) -> CheckFunction:
        full = f"{area}.{name}"
        if any(c.name == full for c in CHECKS):
            raise ValueError(f"check {full} registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        CHECKS.append(Check(full, area, function, doc[0] if doc else ""))
        return function

    return register


def expect(condition: object, reason: str) -> None:
    """Fail the running check with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(reason)


def skip(reason: str) -> None:
    """Skip the running check with ``reason``."""
    raise CheckSkipped(reason)
