"""The last 24 hours slot by slot, on real SQLite and Postgres: tokens per model, requests, TTFT percentiles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.hourly import nearest_rank, window
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.storage.database import Database

NOW = datetime(2026, 3, 4, 15, 40, tzinfo=UTC)  # the current hour is 15:00, the first slot 2026-03-03T16:00


def record(
    request_id: str, at: datetime, model: str = "m", tokens: int = 5, ttft: float | None = None
) -> FinishedRequest:
    return FinishedRequest(
        request_id=request_id,
        created_at=at,
        kind="chat",
        key_id="key_a",
        key_name="a",
        model_id=model,
        status_code=200,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        ttft_ms=ttft,
        input_sha256=input_digest("p"),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RequestLog]:
    target = request.getfixturevalue("postgres_url") if request.param == "postgres" else tmp_path / "pinaivu.db"
    database = Database(target)
    opened = RequestLog(database, Retention(days=100_000, rows=100_000))  # NOW is fixed: nothing pruned as old
    yield opened
    opened.close()
    database.close()


def test_window_and_ranks() -> None:
    assert window(NOW) == (datetime(2026, 3, 3, 16, tzinfo=UTC), datetime(2026, 3, 4, 16, tzinfo=UTC))
    assert [nearest_rank(n, 50) for n in (1, 2, 3, 10)] == [1, 1, 2, 5]
    assert [nearest_rank(n, 95) for n in (1, 2, 20, 21)] == [1, 2, 19, 20]


def test_slots_tokens_requests_and_percentiles(log: RequestLog) -> None:
    current = datetime(2026, 3, 4, 15, tzinfo=UTC)
    # the current hour: 10 records of model a with TTFT 10..100 ms, one of model b with no TTFT (an error)
    for i in range(10):
        log.submit(record(f"cur_{i}", current + timedelta(minutes=i), "a", tokens=1, ttft=10.0 * (i + 1)))
    log.submit(record("cur_b", current + timedelta(minutes=30), "b", tokens=3))
    # 3 hours ago: two models; the first slot's first second; just before the window (not counted)
    log.submit(record("h3_a", current - timedelta(hours=3) + timedelta(minutes=59), "a", tokens=2, ttft=7.5))
    log.submit(record("h3_b", current - timedelta(hours=3), "b", tokens=4, ttft=2.5))
    log.submit(record("first", datetime(2026, 3, 3, 16, tzinfo=UTC), "a", tokens=6, ttft=1.0))
    log.submit(record("old", datetime(2026, 3, 3, 15, 59, 59, tzinfo=UTC), "a", tokens=100, ttft=1.0))
    log.submit(record("older", current - timedelta(days=3), "b", tokens=100, ttft=1.0))
    log.flush()

    slots = log.per_hour(NOW)
    assert len(slots) == 24
    assert slots[0]["hour"] == "2026-03-03T16:00:00Z" and slots[-1]["hour"] == "2026-03-04T15:00:00Z"
    assert slots[0] == {
        "hour": "2026-03-03T16:00:00Z",
        "requests": 1,
        "tokens": 12,
        "tokens_by_model": {"a": 12},
        "ttft_ms_p50": 1.0,
        "ttft_ms_p95": 1.0,
    }
    assert slots[-1] == {
        "hour": "2026-03-04T15:00:00Z",
        "requests": 11,
        "tokens": 26,
        "tokens_by_model": {"a": 20, "b": 6},
        "ttft_ms_p50": 50.0,  # nearest rank: the 5th of 10
        "ttft_ms_p95": 100.0,  # the 10th of 10
    }
    three_ago = slots[-4]
    assert three_ago["hour"] == "2026-03-04T12:00:00Z"
    assert three_ago["tokens_by_model"] == {"a": 4, "b": 8} and three_ago["requests"] == 2
    assert (three_ago["ttft_ms_p50"], three_ago["ttft_ms_p95"]) == (2.5, 7.5)
    empty = slots[-2]
    assert empty == {
        "hour": "2026-03-04T14:00:00Z",
        "requests": 0,
        "tokens": 0,
        "tokens_by_model": {},
        "ttft_ms_p50": None,
        "ttft_ms_p95": None,
    }
    assert sum(s["requests"] for s in slots) == 14  # neither "old" nor "older"
