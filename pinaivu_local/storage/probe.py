"""What `doctor` asks of a Postgres server (PINAIVU_DATABASE_URL): it answers, its schema is one this version
knows, and it takes a write; all in one transaction that is rolled back, so the probe changes nothing."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from pinaivu_local.storage import migrations
from pinaivu_local.storage.database import _server_bounds, database_url


def probe_server(url: str, timeout_s: float) -> dict[str, Any]:
    """The server's state as plain data; `problem` names the first step that failed (None when all passed)."""
    row: dict[str, Any] = {
        "url": None,
        "connected": False,
        "server_version": None,
        "migrations_applied": None,
        "migrations_pending": [],
        "writable": False,
        "problem": None,
    }
    try:
        parsed = make_url(database_url(url))
    except ArgumentError:
        row["problem"] = "not a database URL (postgresql+psycopg://user@host:port/db)"
        return row
    row["url"] = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() != "postgresql":
        row["problem"] = f"{parsed.get_backend_name()!r} is not supported; use postgresql+psycopg://"
        return row
    engine = create_engine(parsed, poolclass=NullPool, connect_args=_server_bounds(parsed.query, timeout_s))
    step = "cannot connect"
    try:
        with engine.connect() as conn:
            row["connected"] = True
            row["server_version"] = conn.exec_driver_sql("SHOW server_version").scalar()
            step = "cannot read the schema"
            _schema(conn, row)
            step = "cannot write"
            # A row in our own bookkeeping table, as a migration writes one: the user may write there and
            # the server is no read-only standby. Rolled back below with whatever _schema created.
            conn.execute(
                text("INSERT INTO _migrations (name, applied_at) VALUES (:name, now())"),
                {"name": f"doctor-probe-{secrets.token_hex(4)}"},
            )
            row["writable"] = True
            conn.rollback()
    except SQLAlchemyError as exc:
        row["problem"] = row["problem"] or f"{step}: {_first_line(exc)}"
    finally:
        engine.dispose()
    return row


def _schema(conn: Connection, row: dict[str, Any]) -> None:
    """Which of this version's migrations the database has had; a step this version does not know is a problem."""
    done = migrations.applied(conn)  # creates _migrations on an empty database: rolled back by the caller
    known = migrations.names()
    row["migrations_applied"] = len(done & set(known))
    row["migrations_pending"] = [name for name in known if name not in done]
    unknown = sorted(name for name in done - set(known) if not name.startswith("doctor-probe-"))
    if unknown:
        row["problem"] = f"written by a newer pinaivu-local (migrations {', '.join(unknown)}); upgrade to use it"


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's own reason (connection refused, permission denied, ...), without SQLAlchemy's wrapping."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else original.__class__.__name__
