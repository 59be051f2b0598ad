"""Issue #10, point 3: a record stays a few KB whatever the request, and listings are bounded in bytes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

from litestar import Litestar
from litestar.testing import TestClient

from pinaivu_local.api.routes.requests import MAX_PAGE_BYTES
from pinaivu_local.api.services import services_of
from pinaivu_local.clock import utcnow
from pinaivu_local.engine.sampling import KEEP_VERBATIM_BYTES, SamplingParams
from pinaivu_local.requestlog.commitment import input_digest
from pinaivu_local.requestlog.records import FinishedRequest

STOPS = [chr(ord("a") + i) * (256 * 1024) for i in range(4)]  # four 256 KB stop strings
BIAS = {str(token): 0.0 for token in range(300)}  # ~3 KB of logit_bias
MESSAGES = [{"role": "user", "content": "Hello"}]


def database_bytes(data_dir: Path) -> int:
    """The database file's size with its WAL moved in (WAL frames are whole pages per commit)."""
    path = data_dir / "pinaivu.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def test_huge_stop_strings_and_logit_bias_leave_small_records(app_client: TestClient[Litestar], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    chat = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 3, "temperature": 0, "logit_bias": BIAS}
    assert app_client.post("/v1/chat/completions", json=chat).status_code == 200
    before = database_bytes(data_dir)
    ids = []
    for _ in range(10):
        response = app_client.post("/v1/chat/completions", json={**chat, "stop": STOPS})
        assert response.status_code == 200, response.text
        ids.append(response.headers["x-request-id"])
    grown = database_bytes(data_dir) - before
    assert grown < 100 * 1024, f"ten records took {grown} bytes"  # the requests carried 10 MB of stop strings

    record = app_client.get(f"/v1/requests/{ids[-1]}").json()
    assert len(json.dumps(record)) < 4096
    sampling = record["sampling"]
    assert "stop" not in sampling and "logit_bias" not in sampling
    stops_json = json.dumps(STOPS, separators=(",", ":")).encode()
    assert sampling["stop_digest"] == {
        "sha256": hashlib.sha256(stops_json).hexdigest(),
        "count": 4,
        "bytes": len(stops_json),
    }
    assert sampling["logit_bias_digest"]["count"] == 300
    listing = app_client.get("/v1/requests", params={"limit": 10})
    assert len(listing.content) < 64 * 1024 and len(listing.json()["data"]) == 10

    # Hashes still verify; the replay says why it cannot be done instead of replaying without the stops.
    verdict = app_client.post(
        f"/v1/requests/{ids[-1]}/verify",
        json={"messages": MESSAGES, "output": response.json()["choices"][0]["message"]["content"]},
    ).json()
    assert verdict["verified"] is True
    assert verdict["replay"]["performed"] is False and "too large to keep" in verdict["replay"]["reason"]


def test_small_stop_strings_are_kept_and_replay(app_client: TestClient[Litestar]) -> None:
    chat = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 4, "temperature": 0, "stop": ["zz"]}
    response = app_client.post("/v1/chat/completions", json=chat)
    record = app_client.get(f"/v1/requests/{response.headers['x-request-id']}").json()
    assert record["sampling"]["stop"] == ["zz"] and "stop_digest" not in record["sampling"]
    verdict = app_client.post(
        f"/v1/requests/{response.headers['x-request-id']}/verify",
        json={"messages": MESSAGES, "output": response.json()["choices"][0]["message"]["content"]},
    ).json()
    assert verdict["replay"]["performed"] is True and verdict["replay"]["reproduced"] is True


def test_a_listing_is_bounded_in_bytes_and_pages_on(app_client: TestClient[Litestar]) -> None:
    """100 records at their largest (~5 KB each) would be ~500 KB: a page stops at MAX_PAGE_BYTES."""
    request_log = services_of(app_client.app).request_log
    largest = SamplingParams(stop=("s" * 500,) * 4, logit_bias={t: -1.5 for t in range(130)}).to_json(16)
    assert len(largest) > 2 * KEEP_VERBATIM_BYTES - 500
    now = utcnow()
    for i in range(100):
        request_log.submit(
            FinishedRequest(
                request_id=f"req_{i:032x}",
                created_at=now - timedelta(seconds=i),
                kind="text",
                key_id="key_x",
                key_name="x",
                model_id="llama3.2:1b",
                status_code=500,
                error="e" * 5000,  # kept to its first 1000 characters
                sampling=largest,
                input_sha256=input_digest("p"),
            )
        )
    assert request_log.flush()
    first = app_client.get("/v1/requests", params={"limit": 100})
    assert len(first.content) <= MAX_PAGE_BYTES + 1024
    page = first.json()
    assert page["has_more"] is True and 10 < len(page["data"]) < 100
    assert all(len(r["error"]) <= 1000 for r in page["data"])
    seen = [r["request_id"] for r in page["data"]]
    while page["has_more"]:
        page = app_client.get("/v1/requests", params={"limit": 100, "before": page["next_before"]}).json()
        seen += [r["request_id"] for r in page["data"]]
    assert sorted(seen) == sorted(f"req_{i:032x}" for i in range(100))
