"""The SQLite database: file mode, WAL, migrations, refusal of foreign files."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from pinaivu_local.errors import ConfigError, StorageUnavailable
from pinaivu_local.storage import migrations
from pinaivu_local.storage.database import Database, _enter_wal, schema_version


def test_file_mode_wal_and_schema_version(tmp_path: Path) -> None:
    database = Database(tmp_path / "pinaivu.db")
    try:
        assert stat.S_IMODE(database.path.stat().st_mode) == 0o600
        with sqlite3.connect(database.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version()
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"api_keys", "request_log"} <= tables
    finally:
        database.close()


def test_migrates_a_version_1_file(tmp_path: Path) -> None:
    """A database from before the request log gains its table and keeps its keys."""
    path = tmp_path / "pinaivu.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO api_keys VALUES ('key_old', 'kept')")
        conn.execute("PRAGMA user_version = 1")
    Database(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM api_keys").fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM request_log").fetchone() == (0,)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pinaivu.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="newer pinaivu-local"):
        Database(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "pinaivu.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=str(path)):
        Database(path)
    assert path.read_bytes() == b"this is not sqlite" * 100  # left untouched


@pytest.mark.parametrize("through", ["session", "connection"])
def test_a_locked_file_is_a_storage_error_that_names_no_path(tmp_path: Path, through: str) -> None:
    """Core connections (the key lookup, the request log's commits) name errors as sessions do."""
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.05)
    holder = sqlite3.connect(database.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StorageUnavailable) as caught, getattr(database, through)() as handle:
            handle.execute(text("UPDATE api_keys SET name = name"))
            handle.commit()
        assert "locked" in caught.value.message and str(tmp_path) not in caught.value.message
        with database.connection() as conn:  # reads go on meanwhile (WAL)
            assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0
    finally:
        holder.close()
        database.close()


def _held_exclusively(path: Path, seconds: float) -> threading.Thread:
    """A rollback-mode file locked by another connection that lets go after `seconds`."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        time.sleep(seconds)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_switch_to_wal_waits_out_a_busy_answer(tmp_path: Path) -> None:
    """SQLite can refuse the switch to WAL with SQLITE_BUSY without calling its busy handler (processes
    opening a new file together); a connection with no busy handler (timeout 0) gets that answer
    every time, and the switch is retried until the lock is gone."""
    path = tmp_path / "new.db"
    sqlite3.connect(path).close()
    thread = _held_exclusively(path, 0.5)
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("PRAGMA journal_mode=WAL")
        _enter_wal(conn.cursor(), 5.0)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
        thread.join()


def test_switch_to_wal_gives_up_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    sqlite3.connect(path).close()
    thread = _held_exclusively(path, 2.0)
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _enter_wal(conn.cursor(), 0.1)
        assert time.monotonic() - started < 1.5  # its deadline, not the holder's release
    finally:
        conn.close()
        thread.join()


def test_first_row_is_the_drivers_row(tmp_path: Path) -> None:
    database = Database(tmp_path / "pinaivu.db")
    try:
        table = sqlalchemy.table("_migrations", sqlalchemy.column("name"))
        query = sqlalchemy.select(table.c.name, sqlalchemy.literal(7)).where(
            table.c.name == sqlalchemy.bindparam("wanted")
        )
        first = migrations.names()[0]
        assert database.first_row(query, {"wanted": first}) == (first, 7)
        assert database.first_row(query, {"wanted": "absent"}) is None
    finally:
        database.close()


def test_first_row_names_a_storage_error_as_sessions_do(tmp_path: Path) -> None:
    """The driver's own errors (no SQLAlchemy connection around them) are a 503 that names no path."""
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.05)
    holder = sqlite3.connect(database.path, isolation_level=None)
    try:
        # exclusive locking mode: after its first write the holder keeps the file, readers too are refused
        # (which needs no other connection open meanwhile: the pool's are closed first)
        database.engine.dispose()
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("UPDATE api_keys SET name = name")
        query = sqlalchemy.select(sqlalchemy.literal(1))
        with pytest.raises(StorageUnavailable) as caught:
            database.first_row(query, {})
        assert "locked" in caught.value.message and str(tmp_path) not in caught.value.message
        holder.close()
        assert database.first_row(query, {}) == (1,)  # the pooled connection serves on
    finally:
        holder.close()
        database.close()
