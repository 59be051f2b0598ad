"""One SQLite file in the data dir: created 0600, WAL journal, schema migrated at open."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from pinaivu_local.errors import ConfigError

Migration = Callable[[Connection], None]


def _tables(*names: str) -> Migration:
    """A migration that creates SQLModel tables by name."""

    def create(conn: Connection) -> None:
        tables = [SQLModel.metadata.tables[name] for name in names]
        SQLModel.metadata.create_all(conn, tables=tables)

    return create


def _migrations() -> list[Migration]:
    # imported here so every table class is registered on SQLModel.metadata
    from pinaivu_local.keys.records import ApiKey  # noqa: F401
    from pinaivu_local.requestlog.records import RequestRecord  # noqa: F401

    # Append only: version N is the state after the first N migrations.
    return [_tables("api_keys"), _tables("request_log")]


def schema_version() -> int:
    """The schema version this code writes (the number of migrations)."""
    return len(_migrations())


class Database:
    """The engine of the SQLite file; sessions for the stores built on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = _open_engine(path)
        try:
            self._migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def _migrate(self) -> None:
        migrations = _migrations()
        with self.engine.begin() as conn:
            version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
            if version > len(migrations):
                raise ConfigError(
                    f"{self.path}: written by a newer pinaivu-local (schema {version}); upgrade to open it"
                )
            for number, migration in enumerate(migrations[version:], start=version + 1):
                migration(conn)
                conn.exec_driver_sql(f"PRAGMA user_version = {number}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session; database errors become one-line ConfigErrors naming the file."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except SQLAlchemyError as exc:
            raise ConfigError(f"{self.path}: database error ({exc.__class__.__name__}: {exc.args[0]})") from None

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()


def _open_engine(path: Path) -> Engine:
    """A SQLite engine on a file created 0600, in WAL mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the database ({exc.strerror})") from None
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigError(f"{path}: not a usable SQLite database ({exc.args[0]})") from None
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return engine
