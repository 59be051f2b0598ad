"""The schema as frozen, numbered steps; which of them a database has had is kept in `_migrations`.

Each step is plain DDL written the day it was added and never edited afterwards: the model
classes (keys/records.py, requestlog/records.py) may change, a step may not. A new column is a
new step appended to MIGRATIONS. The DDL is portable: it runs on SQLite and on Postgres.
The caller holds one exclusive transaction around `applied` and `apply` (database.py takes
SQLite's write lock, and on Postgres, where DDL is transactional too, an advisory lock).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, inspect, select
from sqlalchemy.engine import Connection

Migration = Callable[[Connection], None]

# The bookkeeping table itself never changes, so it can be declared once, like simonw/llm's.
_metadata = MetaData()
_applied = Table(
    "_migrations",
    _metadata,
    Column("name", String, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


def _timestamp(conn: Connection) -> str:
    """The column type of a moment (always UTC) in this dialect."""
    # The one spot where the dialects differ. On SQLite SQLAlchemy's DateTime is DATETIME (the
    # type create_all wrote before the steps were frozen); Postgres has no DATETIME and keeps
    # the offset only in TIMESTAMP WITH TIME ZONE, which is what DateTime(timezone=True) maps to.
    return "DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"


# m001 and m002 say IF NOT EXISTS (SQLite and Postgres both have it) because they replace
# create_all, which checked first: before migrations ran under a lock, a process could create a
# table and die before recording it, and such a file must still open.


def m001_api_keys(conn: Connection) -> None:
    """API keys: only their SHA-256 is stored."""
    moment = _timestamp(conn)
    conn.exec_driver_sql(
        f"""
        CREATE TABLE IF NOT EXISTS api_keys (
            id VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            prefix VARCHAR NOT NULL,
            key_hash VARCHAR NOT NULL,
            admin BOOLEAN NOT NULL,
            models VARCHAR NOT NULL,
            rpm INTEGER,
            tpm INTEGER,
            created_at {moment} NOT NULL,
            last_used_at {moment},
            expires_at {moment},
            revoked_at {moment},
            replaced_by VARCHAR,
            PRIMARY KEY (id)
        )
        """
    )
    conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS ix_api_keys_key_hash ON api_keys (key_hash)")


def m002_request_log(conn: Connection) -> None:
    """The request log: one row per inference request."""
    moment = _timestamp(conn)
    # FLOAT is a double on both: REAL affinity on SQLite, DOUBLE PRECISION on Postgres.
    conn.exec_driver_sql(
        f"""
        CREATE TABLE IF NOT EXISTS request_log (
            request_id VARCHAR NOT NULL,
            created_at {moment} NOT NULL,
            kind VARCHAR NOT NULL,
            key_id VARCHAR NOT NULL,
            key_name VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL,
            model_sha256 VARCHAR,
            status_code INTEGER NOT NULL,
            finish_reason VARCHAR,
            error VARCHAR,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            queue_ms FLOAT,
            ttft_ms FLOAT,
            total_ms FLOAT,
            tokens_per_s FLOAT,
            sampling VARCHAR NOT NULL,
            input_sha256 VARCHAR NOT NULL,
            output_sha256 VARCHAR,
            input_content VARCHAR,
            output_content VARCHAR,
            PRIMARY KEY (request_id)
        )
        """
    )
    for column in ("created_at", "key_id", "model_id", "status_code"):
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_request_log_{column} ON request_log ({column})")


def m003_request_log_replay_of(conn: Connection) -> None:
    """A verification replay is recorded too, naming the request it replayed."""
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN replay_of VARCHAR")


def m004_request_log_node(conn: Connection) -> None:
    """A gateway with nodes records which node served each request."""
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN node VARCHAR")


def m005_request_log_receipt(conn: Connection) -> None:
    """A completed request's signed receipt: the canonical document as signed, and the signature."""
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN receipt VARCHAR")
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN receipt_signature VARCHAR")


def m006_request_log_text_encoding(conn: Connection) -> None:
    """How a record's free text is stored: NULL as it is, "json" as JSON literals (U+0000, which Postgres refuses)."""
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN text_encoding VARCHAR")


def m007_responses(conn: Connection) -> None:
    """Stored Responses (POST /v1/responses with store): each response's input and output items, as JSON."""
    moment = _timestamp(conn)
    conn.exec_driver_sql(
        f"""
        CREATE TABLE responses (
            id VARCHAR NOT NULL,
            key_id VARCHAR NOT NULL,
            created_at {moment} NOT NULL,
            model VARCHAR NOT NULL,
            request_id VARCHAR NOT NULL,
            previous_response_id VARCHAR,
            input_items VARCHAR NOT NULL,
            output_items VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            PRIMARY KEY (id)
        )
        """
    )
    for column in ("created_at", "key_id"):
        conn.exec_driver_sql(f"CREATE INDEX ix_responses_{column} ON responses ({column})")


def m008_request_log_usage_source(conn: Connection) -> None:
    """Who counted a record's tokens: NULL this process's engine, "node" a node's valid report, "gateway" the
    gateway itself (the node reported none, or counts out of bounds, or its stream was cut short)."""
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN usage_source VARCHAR")


def m009_node_pins(conn: Connection) -> None:
    """A gateway's pin of each node's signing key (taken on first contact), and each record's receipt verdict."""
    moment = _timestamp(conn)
    conn.exec_driver_sql(
        f"""
        CREATE TABLE node_pins (
            name VARCHAR NOT NULL,
            url VARCHAR NOT NULL,
            node_id VARCHAR NOT NULL,
            key_id VARCHAR NOT NULL,
            public_key VARCHAR NOT NULL,
            pinned_at {moment} NOT NULL,
            PRIMARY KEY (name)
        )
        """
    )
    # NULL: no node's receipt to check (computed here, or a node without receipts); else the verdict.
    conn.exec_driver_sql("ALTER TABLE request_log ADD COLUMN receipt_verified BOOLEAN")


# Append only. A database at version N has had exactly the first N steps.
MIGRATIONS: list[Migration] = [
    m001_api_keys,
    m002_request_log,
    m003_request_log_replay_of,
    m004_request_log_node,
    m005_request_log_receipt,
    m006_request_log_text_encoding,
    m007_responses,
    m008_request_log_usage_source,
    m009_node_pins,
]


def names() -> list[str]:
    """The names of every step this code knows, in order."""
    return [migration.__name__ for migration in MIGRATIONS]


def applied(conn: Connection, *, legacy_version: int = 0) -> set[str]:
    """The steps this database has had, creating `_migrations` if it is missing.

    A database from before `_migrations` (its version kept only in SQLite's user_version) has
    had the first `legacy_version` steps: they are recorded, not run again.
    """
    if not inspect(conn).has_table(_applied.name):
        _applied.create(conn)
        for name in names()[:legacy_version]:
            _record(conn, name)
    return set(conn.scalars(select(_applied.c.name)))


def apply(conn: Connection, done: Collection[str]) -> list[str]:
    """Run the steps not in `done`, in order, recording each; the names of those run."""
    ran = []
    for migration in MIGRATIONS:
        if migration.__name__ not in done:
            migration(conn)
            _record(conn, migration.__name__)
            ran.append(migration.__name__)
    return ran


def _record(conn: Connection, name: str) -> None:
    conn.execute(_applied.insert().values(name=name, applied_at=datetime.now(UTC)))
