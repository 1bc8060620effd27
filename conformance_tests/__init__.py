"""A black-box conformance kit: checks a FHIR R4 server at a base URL against this project's REST behaviour.

``python -m conformance_tests --base-url URL`` from a shell, ``conformance_tests.run(base_url)`` from Python.
"""

from conformance_tests.client import TAG_SYSTEM, Client
from conformance_tests.registry import CHECKS, Check, CheckFailed, CheckSkipped, check, expect, skip
from conformance_tests.runner import Report, Result, all_checks, run

__all__ = [
    "CHECKS",
    "TAG_SYSTEM",
    "Check",
    "CheckFailed",
    "CheckSkipped",
    "Client",
    "Report",
    "Result",
    "all_checks",
    "check",
    "expect",
    "run",
    "skip",
]
