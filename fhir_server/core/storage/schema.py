"""Database tables (SQLAlchemy Core), the same for SQLite and PostgreSQL.

* ``resources``: the current version of every resource (body as stored JSON text).
* ``resource_versions``: every version ever written, including delete markers; its
  auto-incrementing ``seq`` orders all writes of the server (history, ``_since``).
* ``idx_*``: search index rows of the current version, written in the same transaction; ``idx_combo``
  holds the combo indexes' rows (several parameters' values combined: ``core/indexing/combos.py``).
* ``search_snapshots``: searches that span several pages: query, caller, total and consistency point
  (no result lists: pages are keyset ranges, ``core/search/keyset.py``).
* ``outbox``: referral deliveries to regional endpoints, written in the referral's transaction.
* ``access_labels``: which organisations and regions may see a stored resource (``core/access.py``);
  kept across versions, written in the transaction that writes the resource.
* ``index_backlog``: resources stored without their search index rows yet (AuditEvents: their index
  is built when someone searches them, or when the process is idle; ``core/index_backlog.py``).
* ``subscription_state``/``subscription_events``: topic subscriptions (R4 Backport): each one's delivery
  cursor, lease and retry state, and its numbered events, written in the transaction of the write
  that caused them (``domain/delivery/subscriptions.py``).
* ``export_jobs``/``export_files``: bulk data exports and their NDJSON files, written chunk by chunk with
  the job's cursor, so a job resumes where it was after a restart (``core/export/``).
* ``import_jobs``: bulk imports (``fhir-server import``): the files in order and how far the import got,
  written in the transaction of each batch it stores, so a restarted import goes on without duplicates
  (``bulk_import/``).
* ``schema_info``: the schema version, for automatic upgrades.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 4

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGSERIAL.
SeqType = BigInteger().with_variant(Integer, "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", Text),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("body", Text),
    UniqueConstraint("res_type", "res_id", "version_id", name="uq_version"),
    Index("ix_versions_type_seq", "res_type", "seq"),
    Index("ix_versions_updated", "last_updated"),
)


def _index_table(
    name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...], owner: tuple[str, ...] = ()
) -> Table:
    """An index table: rows of (resource, parameter, value); its owner index leads with the resource and
    may carry the value columns too, so probing one resource's rows (a search's per-row check, an include)
    reads the index alone."""
    table = Table(
        name,
        metadata,
        Column("res_type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        Index(f"ix_{name}_owner", "res_type", "res_id", *owner),
    )
    for i, cols in enumerate(indexes):
        Index(f"ix_{name}_{i}", *(table.c[c] for c in cols))
    return table


idx_token = _index_table(
    "idx_token",
    Column("system", Text),
    Column("code", Text),
    indexes=(("res_type", "param", "code", "res_id", "system"),),  # one code's rows in id order, covering
    owner=("param", "code", "system"),
)
idx_string = _index_table(
    "idx_string",
    Column("value_norm", Text, nullable=False),
    Column("value_exact", Text, nullable=False),
    indexes=(("res_type", "param", "value_norm"),),
    owner=("param", "value_norm"),
)
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("target_url", Text),
    Column("id_system", Text),
    Column("id_value", Text),
    indexes=(
        ("res_type", "param", "target_type", "target_id", "res_id"),  # one target's referrers in id order
        ("target_type", "target_id"),
        ("target_url",),
    ),
    owner=("param", "target_type", "target_id"),
)
idx_date = _index_table(
    "idx_date",
    Column("low", String(32), nullable=False),
    Column("high", String(32), nullable=False),
    indexes=(("res_type", "param", "low", "res_id"), ("res_type", "param", "high", "res_id")),
    owner=("param", "low", "high"),
)
idx_number = _index_table(
    "idx_number",
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    indexes=(("res_type", "param", "low"),),
    owner=("param", "low", "high"),
)
idx_quantity = _index_table(
    "idx_quantity",
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", Text),
    Column("code", Text),
    indexes=(("res_type", "param", "low"),),
)
idx_uri = _index_table(
    "idx_uri",
    Column("value", Text, nullable=False),
    indexes=(("res_type", "param", "value", "res_id"),),
    owner=("param", "value"),
)

#: Combo indexes (``core/indexing/combos.py``): one row per combination of a resource's values of the
#: combined parameters, one ordered range per combined value. A table of its own rather than rows in
#: ``idx_token`` with the combined value as a code: a combined value is no token (no system, no token
#: search may ever meet it), ``idx_token``'s statistics and index stay those of real tokens, and it is plain
#: which rows a combo owns (its rebuild deletes them by ``param``). Being an index table, its rows are
#: written, replaced and deleted with the resource's other index rows.
idx_combo = _index_table(
    "idx_combo",
    Column("value", Text, nullable=False),
    indexes=(("res_type", "param", "value", "res_id"),),  # one combination's resources in id order
)

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "combo": idx_combo,
}

search_snapshots = Table(
    "search_snapshots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created", String(40), nullable=False),
    Column("res_type", String(64)),
    Column("query", Text, nullable=False),
    Column("total", Integer),  # None: not counted
    #: who made the search (``Access.owner``): only they may page through it
    Column("owner", Text),
    #: the version sequence of the last write before the first page (``core/search/consistency.py``)
    Column("as_of_seq", BigInteger),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(64), nullable=False),
    Column("address", Text, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("event", String(16), nullable=False),  # create | update | revoke
    Column("dedupe_key", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=False),
    Column("lease_until", String(40)),
    Column("last_error", Text),
    Column("created", String(40), nullable=False),
    Column("delivered_at", String(40)),
    UniqueConstraint("endpoint_id", "dedupe_key", name="uq_outbox_delivery"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

access_labels = Table(
    "access_labels",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("label", String(80), primary_key=True),
    Index("ix_access_labels_label", "label", "res_type", "res_id"),
)

index_backlog = Table(
    "index_backlog",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
)

schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

# -- topic subscriptions (fhir_server/domain/delivery/subscriptions.py) -------------------------

subscription_state = Table(
    "subscription_state",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("topic", Text, nullable=False),
    Column("filters", Text, nullable=False),  # JSON: [[resource type, parameter, value], ...]
    Column("labels", Text, nullable=False),  # JSON: the subscriber's access labels (from its token)
    Column("unrestricted", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),  # requested | active | error | off
    Column("events_since_start", BigInteger, nullable=False, default=0),
    Column("delivered_through", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String(40), nullable=False),
    Column("lease_until", String(40)),
    Column("first_failure_at", String(40)),
    Column("last_sent_at", String(40)),
    Column("heartbeat_at", String(40)),  # when a heartbeat is due (None: the channel asks for none)
    Column("last_error", Text),
    Index("ix_subscription_state_due", "status", "next_attempt_at"),
)

subscription_events = Table(
    "subscription_events",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("event_number", BigInteger, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("focus_type", String(64), nullable=False),
    Column("focus_id", String(64), nullable=False),
    Column("focus_version", Integer, nullable=False),
    Column("created", String(40), nullable=False),
)

# -- bulk data export (fhir_server/core/export/) ---------------------------------------------------

export_jobs = Table(
    "export_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(200), nullable=False),  # the client that started it (only it polls and reads)
    Column("request", Text, nullable=False),  # the kick-off URL, for the manifest
    Column("status", String(16), nullable=False),  # accepted | completed | cancelled | error
    Column("spec", Text, nullable=False),  # JSON: types, since, type filters, patients, labels
    Column("transaction_time", String(40), nullable=False),
    Column("cursor", Text, nullable=False),  # JSON: [type index, last id written]
    Column("exported", BigInteger, nullable=False, default=0),
    Column("files", Integer, nullable=False, default=0),
    Column("lease_until", String(40)),
    Column("last_poll_at", String(40)),
    Column("error", Text),
    Column("created", String(40), nullable=False),
)

export_files = Table(
    "export_files",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("body", Text, nullable=False),  # NDJSON
)

# -- bulk import (fhir_server/bulk_import/) ----------------------------------------------------------

import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # the files' paths and sizes: the same command resumes
    Column("status", String(16), nullable=False),  # running | completed
    Column("files", Text, nullable=False),  # JSON: the files in import order
    Column("file_index", Integer, nullable=False, default=0),  # the file being imported
    Column("line", BigInteger, nullable=False, default=0),  # lines of it committed
    Column("byte_offset", BigInteger, nullable=False, default=0),  # where its next line starts
    Column("stored", BigInteger, nullable=False, default=0),  # resources stored (with what policies added)
    Column("refused", BigInteger, nullable=False, default=0),  # lines refused
    Column("counts", Text, nullable=False),  # JSON: resource type -> resources stored
    Column("created", String(40), nullable=False),
    Column("updated", String(40), nullable=False),
    Index("ix_import_jobs_fingerprint", "fingerprint", "status"),
)
