"""The request log's writer on a Postgres server that stops answering: bounded 503s, no record lost or wrong."""

from __future__ import annotations

import asyncio
import time

import pytest

from pinaivu_local.errors import StorageUnavailable
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.storage.database import Database
from tests.requestlog.test_log import record
from tests.shared_state import paused_postgres


def test_a_stopped_server_is_a_bounded_503_and_the_record_says_so(postgres_url: str) -> None:
    """SIGSTOP while a record is being written: its response gives up after the bound (it waited for as
    long as the server stayed stopped), new requests are refused meanwhile, /health says failing; once the
    server answers again, the record, written by the stalled attempt as served, is written again as 503."""
    database = Database(postgres_url, timeout_s=1)
    log = RequestLog(database, Retention(days=30, rows=1000))
    try:
        asyncio.run(log.submit(record("req_before")).durable())  # a pooled connection, pinged before reuse
        with paused_postgres(postgres_url):
            started = time.monotonic()
            pending = log.submit(record("req_stalled"))
            with pytest.raises(StorageUnavailable, match="has not answered for over 1 s"):
                asyncio.run(asyncio.wait_for(pending.durable(), 20))
            assert time.monotonic() - started < 10
            with pytest.raises(StorageUnavailable):
                log.raise_if_unavailable()
            assert log.health()["state"] == "failing"
        assert log.flush(timeout=30)
        stalled, before = log.get("req_stalled"), log.get("req_before")
        assert stalled is not None and stalled.status_code == 503 and "storage unavailable" in str(stalled.error)
        assert before is not None and before.status_code == 200
        log.raise_if_unavailable()
        assert log.health()["state"] == "ok"
    finally:
        log.close()
        database.close()
