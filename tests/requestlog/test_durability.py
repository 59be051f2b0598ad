"""The request log's durability on real SQLite: retried, never dropped; bounded; group commit; 503s."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from pinaivu_local.errors import StorageUnavailable
from pinaivu_local.keys.store import KeySettings, KeyStore
from pinaivu_local.keys.usage import KeyUsage
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.writer import RETRY_MAX_S
from pinaivu_local.storage.database import Database
from tests.requestlog.test_log import record


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's view: a connection holding SQLite's write lock until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield holder
    finally:
        holder.rollback()
        holder.close()


def stored(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def open_log(database: Database, *, backlog: int = 1000, usage: KeyUsage | None = None) -> RequestLog:
    return RequestLog(database, Retention(days=30, rows=1000), backlog=backlog, key_usage=usage)


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_batch_locked_out_past_the_busy_timeout_is_retried_not_dropped(tmp_path: Path) -> None:
    """Issue #10, point 7: another process held the lock longer than the busy timeout; the record survives."""
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.2)
    log = open_log(database)
    try:
        with write_lock(database.path):
            pending = log.submit(record("req_locked"))
            wait_until(lambda: log.health()["state"] == "failing")
            health = log.health()
            assert health["reason"] == "the database is locked by another process" and health["backlog"] == 1
            assert str(tmp_path) not in str(health)
            with pytest.raises(StorageUnavailable) as refused:  # admission refuses while writes fail
                log.raise_if_unavailable()
            assert refused.value.code == "storage_unavailable" and str(tmp_path) not in refused.value.message
            time.sleep(0.5)  # several failed attempts
            assert not pending.future.done()
        pending.future.result(timeout=RETRY_MAX_S + 5)
        assert stored(database.path, "SELECT request_id, status_code FROM request_log") == [("req_locked", 200)]
        assert log.health()["state"] == "ok"
        log.raise_if_unavailable()
    finally:
        log.close()
        database.close()


def test_the_backlog_is_bounded(tmp_path: Path) -> None:
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=30)
    log = open_log(database, backlog=3)
    try:
        with write_lock(database.path):
            writes = [log.submit(record(f"req_{i}")) for i in range(3)]
            with pytest.raises(StorageUnavailable, match="3 records waiting"):
                log.raise_if_unavailable()
            assert log.health()["state"] == "full"
        for pending in writes:
            pending.future.result(timeout=10)
        log.raise_if_unavailable()
        assert stored(database.path, "SELECT count(*) FROM request_log") == [(3,)]
    finally:
        log.close()
        database.close()


def test_durable_waits_for_the_commit(tmp_path: Path) -> None:
    database = Database(tmp_path / "pinaivu.db")
    log = open_log(database)
    try:

        async def submit_and_wait() -> list[tuple[object, ...]]:
            await log.submit(record("req_now")).durable()
            return stored(database.path, "SELECT request_id FROM request_log")

        assert asyncio.run(submit_and_wait()) == [("req_now",)]
    finally:
        log.close()
        database.close()


def test_a_response_that_gives_up_leaves_a_503_record(tmp_path: Path) -> None:
    """Writes failing: the waiting response gets StorageUnavailable, and its record says 503 once written."""
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.2)
    log = open_log(database)
    try:
        with write_lock(database.path):
            pending = log.submit(record("req_gave_up"))
            with pytest.raises(StorageUnavailable, match="locked by another process") as gave_up:
                asyncio.run(pending.durable(timeout=30))
            assert gave_up.value.retry_after >= 1
        pending.future.result(timeout=RETRY_MAX_S + 5)
        status, error = stored(database.path, "SELECT status_code, error FROM request_log")[0]
        assert status == 503 and "storage unavailable" in str(error)
    finally:
        log.close()
        database.close()


def test_records_arriving_together_share_a_commit(tmp_path: Path) -> None:
    """Group commit: 200 records submitted at once take a few transactions, not 200."""
    database = Database(tmp_path / "pinaivu.db")
    commits = []
    event.listen(database.engine, "commit", lambda _conn: commits.append(1))
    log = open_log(database)
    try:

        async def many() -> None:
            writes = [log.submit(record(f"req_{i}")) for i in range(200)]
            await asyncio.gather(*(r.durable() for r in writes))

        asyncio.run(many())
        assert stored(database.path, "SELECT count(*) FROM request_log") == [(200,)]
        assert len(commits) <= 20  # one per record without grouping
    finally:
        log.close()
        database.close()


def test_authentication_only_reads_and_the_log_writes_last_use(tmp_path: Path) -> None:
    """Issue #10, point 6: a key is accepted while the database cannot be written; its last use is kept."""
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.2)
    usage = KeyUsage()
    store = KeyStore(database, usage)
    issued = store.create(KeySettings(name="fresh"))
    log = open_log(database, usage=usage)
    try:
        with write_lock(database.path):
            assert store.authenticate(issued.key).id == issued.record.id  # no write: the lock does not matter
            assert store.get(issued.record.id).last_used_at is not None  # from memory meanwhile
        assert log.flush()
        ((stored_at,),) = stored(database.path, f"SELECT last_used_at FROM api_keys WHERE id = '{issued.record.id}'")
        assert stored_at is not None
        # Another process (the CLI) sees it in the file.
        other = Database(database.path)
        try:
            assert KeyStore(other).get(issued.record.id).last_used_at is not None
        finally:
            other.close()
    finally:
        log.close()
        database.close()


def test_close_writes_what_waits_for_a_lock(tmp_path: Path) -> None:
    database = Database(tmp_path / "pinaivu.db", busy_timeout_s=0.2)
    log = open_log(database)
    holder = sqlite3.connect(database.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        log.submit(record("req_at_close"))
        threading.Timer(1.0, holder.rollback).start()
        log.close()  # keeps retrying until the lock goes
        assert stored(database.path, "SELECT request_id FROM request_log") == [("req_at_close",)]
    finally:
        holder.close()
        database.close()
