"""Write policies: rules that take over the writes of some resources, whatever the door.

Like HAPI's storage interceptors: the core knows nothing of referrals, but every create and update
(PATCH and conditional update end in one of them) asks :class:`~fhir_server.core.interactions.FhirService`'s
registered policies first, and every transaction asks them before it runs. The REST routes, batch and
transaction entries, the operations and the loader all reach these interactions, so a rule registered
here holds on every door. The domain registers its policies in the composition root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fhir_server.core.interactions import WriteResult


class WritePolicy(Protocol):
    """What a policy that takes over some writes answers."""

    def claims(self, resource: object) -> bool:
        """True when this policy writes ``resource`` (a body of a create or update)."""
        ...

    def create(self, resource: dict, *, if_none_exist: str | None, strict: bool = False) -> WriteResult:
        """A create (conditional when ``if_none_exist`` is a query); ``strict``: ``Prefer: handling=strict``."""
        ...

    def update(self, resource_id: str, resource: dict, *, if_match: int | None, strict: bool = False) -> WriteResult:
        """An update of ``resource_id`` (update-as-create when it does not exist)."""
        ...

    def claims_transaction(self, bundle: dict) -> bool:
        """True when this policy runs the transaction ``bundle``."""
        ...

    def transaction(self, bundle: dict, return_preference: str | None, *, strict: bool = False) -> dict:
        """Run the transaction; returns its transaction-response Bundle."""
        ...
