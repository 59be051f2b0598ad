"""GET /admin/usage on the real app: the last 24 hours slot by slot, from records written at known times."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.routes import admin_usage
from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.storage.database import Database


def record(request_id: str, at: datetime, model: str, tokens: int, ttft: float | None) -> FinishedRequest:
    return FinishedRequest(
        request_id=request_id,
        created_at=at,
        kind="chat",
        key_id="key_usage",
        key_name="usage",
        model_id=model,
        status_code=200 if ttft is not None else 500,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        ttft_ms=ttft,
        input_sha256=input_digest("p"),
    )


def write_records(database: Path, records: list[FinishedRequest]) -> None:
    """Through the request log, into the database the running app reads."""
    opened = Database(database)
    log = RequestLog(opened, Retention(days=30, rows=100_000))
    try:
        for r in records:
            log.submit(r)
        assert log.flush()
    finally:
        log.close()
        opened.close()


def test_the_last_24_hours_slot_by_slot(
    app_client: TestClient[Litestar], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the route's clock is fixed at half past an hour, so a test running across an hour stays right
    current = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    now = current + timedelta(minutes=30)
    monkeypatch.setattr(admin_usage, "utcnow", lambda: now)
    write_records(
        tmp_path / "data" / "pinaivu.db",
        [
            record("cur_1", current + timedelta(minutes=1), "llama3.2:1b", 10, 40.0),
            record("cur_2", current + timedelta(minutes=2), "llama3.2:1b", 5, 20.0),
            record("cur_3", current + timedelta(minutes=3), "llama3.2:3b", 7, 80.0),
            record("cur_err", current + timedelta(minutes=4), "llama3.2:3b", 0, None),
            record("h5", current - timedelta(hours=5) + timedelta(minutes=10), "llama3.2:3b", 50, 12.5),
            record("first", current - timedelta(hours=23), "llama3.2:1b", 1, 3.0),
            record("too_old", current - timedelta(hours=23, seconds=1), "llama3.2:1b", 1000, 1.0),
            record("much_older", current - timedelta(hours=30), "llama3.2:3b", 1000, 1.0),
        ],
    )

    usage = app_client.get("/admin/usage").json()
    slots = usage["per_hour"]
    assert len(slots) == 24
    label = current.strftime("%Y-%m-%dT%H:00:00Z")
    assert slots[-1] == {
        "hour": label,
        "requests": 4,
        "tokens": 44,
        "tokens_by_model": {"llama3.2:1b": 30, "llama3.2:3b": 14},
        "ttft_ms_p50": 40.0,  # nearest rank over the 3 timed records: 20, 40, 80
        "ttft_ms_p95": 80.0,
    }
    assert slots[-6]["hour"] == (current - timedelta(hours=5)).strftime("%Y-%m-%dT%H:00:00Z")
    assert slots[-6]["tokens_by_model"] == {"llama3.2:3b": 100} and slots[-6]["ttft_ms_p95"] == 12.5
    assert slots[0]["hour"] == (current - timedelta(hours=23)).strftime("%Y-%m-%dT%H:00:00Z")
    assert slots[0]["tokens_by_model"] == {"llama3.2:1b": 2} and slots[0]["requests"] == 1
    # an empty hour is there, empty; nothing older than the first slot counts
    assert slots[-2] == {
        "hour": (current - timedelta(hours=1)).strftime("%Y-%m-%dT%H:00:00Z"),
        "requests": 0,
        "tokens": 0,
        "tokens_by_model": {},
        "ttft_ms_p50": None,
        "ttft_ms_p95": None,
    }
    assert sum(s["requests"] for s in slots) == 6
    assert sum(s["tokens"] for s in slots) == 44 + 100 + 2
    # the hours parameter still bounds the per-key totals, not the 24 slots
    assert app_client.get("/admin/usage?hours=1").json()["keys"]["key_usage"]["requests"] == 4
    assert len(app_client.get("/admin/usage?hours=1").json()["per_hour"]) == 24
