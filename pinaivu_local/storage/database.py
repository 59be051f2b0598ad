"""One SQLite file in the data dir: created 0600, WAL journal, schema migrated at open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

from pinaivu_local.errors import ConfigError
from pinaivu_local.storage import migrations


def schema_version() -> int:
    """The schema version this code writes (the number of migrations)."""
    return len(migrations.MIGRATIONS)


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
        try:
            self._migrate_locked()
        except SQLAlchemyError as exc:
            raise ConfigError(f"{self.path}: cannot bring the schema up to date ({exc.args[0]})") from None

    def _migrate_locked(self) -> None:
        with self.engine.connect() as conn:
            # IMMEDIATE takes the write lock now rather than at the first write: of several
            # processes opening a fresh file at once, one migrates while the others wait
            # (busy_timeout), then find every step recorded and skip them.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            version = _user_version(conn)
            if version > schema_version():
                raise self._newer(f"schema {version}")
            done = migrations.applied(conn, legacy_version=version)
            unknown = sorted(done - set(migrations.names()))
            if unknown:
                raise self._newer(f"migrations {', '.join(unknown)}")
            migrations.apply(conn, done)
            # user_version mirrors the step count, for older pinaivu-locals and `doctor`.
            if version != schema_version():
                conn.exec_driver_sql(f"PRAGMA user_version = {schema_version()}")
            conn.commit()

    def _newer(self, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: written by a newer pinaivu-local ({what}); upgrade to open it")

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


def _user_version(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
