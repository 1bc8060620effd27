"""What differs between SQLite and PostgreSQL under the store: one small interface, two implementations.

The store, its write units and the insert helpers are written once, against :class:`Dialect`;
:mod:`fhir_server.core.storage.sqlite` and :mod:`fhir_server.core.storage.postgres` implement it
(engines, write serialisation, locks, bulk transfer). The statement shapes both databases share are
built by the dialect-neutral modules with the dialect's :attr:`Dialect.mark`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Connection

if TYPE_CHECKING:
    from fhir_server.core.storage.db import Database

T = TypeVar("T")


class Dialect(Protocol):
    """The database-specific parts of storage."""

    #: The DBAPI parameter placeholder in prepared SQL text (``?`` or ``%s``).
    mark: str
    #: Appended to the current-row ``SELECT`` of a write, to lock the row until commit ("" where the
    #: whole database is locked for the writer anyway).
    row_lock: str
    #: True when plain matches choose their query plan in the SQL text (SQLite has no statistics;
    #: see :mod:`fhir_server.core.storage.matches`).
    plans_by_hand: bool

    @property
    def copy_threshold(self) -> int | None:
        """Inserts of at least this many rows go through :meth:`copy_rows`; None: never."""
        ...

    def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction and commit it (errors propagate; the store retries)."""
        ...

    def lock_conditional(self, conn: Connection, resource_type: str, query: str) -> None:
        """Serialise conditional operations with the same condition until the transaction ends."""
        ...

    def pipeline(self, cursor: Any) -> AbstractContextManager[Any]:
        """Send the statements run inside in one round trip where the driver can."""
        ...

    def copy_rows(self, cursor: Any, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """Bulk-insert ``rows`` (values in ``columns`` order) into ``table``."""
        ...

    def open_reader(self, raw_connection: Any) -> None:
        """Prepare a raw connection for single-statement reads outside any transaction."""
        ...


def dialect_for(db: Database) -> Dialect:
    """The dialect of ``db``'s database."""
    from fhir_server.core.storage.postgres import PostgresDialect
    from fhir_server.core.storage.sqlite import SqliteDialect

    return SqliteDialect(db) if db.is_sqlite else PostgresDialect(db)
