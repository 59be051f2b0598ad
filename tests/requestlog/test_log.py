"""The request log on real SQLite and Postgres: batched writes, reads, usage, retention, failures."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.commitment import canonical_json, first_divergence, input_digest
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.storage.database import Database


def record(
    request_id: str, *, key: str = "key_a", model: str = "m", age_h: float = 0, tokens: int = 5
) -> FinishedRequest:
    return FinishedRequest(
        request_id=request_id,
        created_at=utcnow() - timedelta(hours=age_h),
        kind="text",
        key_id=key,
        key_name=key,
        model_id=model,
        status_code=200,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        input_sha256=input_digest("p"),
        model_sha256="f" * 64,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same log on the default SQLite file and on a real Postgres server."""
    target = request.getfixturevalue("postgres_url") if request.param == "postgres" else tmp_path / "pinaivu.db"
    opened = Database(target)
    yield opened
    opened.close()


def open_log(database: Database, days: int = 30, rows: int = 1000) -> RequestLog:
    return RequestLog(database, Retention(days=days, rows=rows))


def test_submit_flush_read(database: Database, tmp_path: Path) -> None:
    log = open_log(database)
    try:
        for i in range(5):
            log.submit(record(f"req_{i}", age_h=5 - i, key="key_a" if i % 2 else "key_b"))
        log.flush()
        found = log.get("req_3")
        assert found is not None and found.model_sha256 == "f" * 64
        page = log.page(key_id="key_a", limit=1)
        assert [r.request_id for r in page.records] == ["req_3"] and page.has_more
        # within 2.5 h: req_3 (key_a, 2 h old) and req_4 (key_b, 1 h old)
        assert log.usage_by_key(utcnow() - timedelta(hours=2.5)) == {
            "key_a": {"requests": 1, "tokens": 10},
            "key_b": {"requests": 1, "tokens": 10},
        }
        hours = log.usage_by_model_hour(utcnow() - timedelta(hours=24))
        assert sum(h["requests"] for h in hours) == 5 and all(h["hour"].endswith(":00:00Z") for h in hours)
    finally:
        log.close()


def test_close_writes_what_is_queued(database: Database) -> None:
    log = open_log(database)
    for i in range(50):
        log.submit(record(f"req_{i}"))
    log.close()
    reopened = open_log(database)
    try:
        assert len(reopened.page(key_id=None, limit=100).records) == 50
    finally:
        reopened.close()


def test_a_failed_write_does_not_stop_the_writer(database: Database) -> None:
    log = open_log(database)
    try:
        log.submit(record("req_dup"))
        log.flush()
        log.submit(record("req_dup"))  # primary key clash: that batch fails, logged
        log.flush()
        log.submit(record("req_after"))
        log.flush()
        assert log.get("req_after") is not None
    finally:
        log.close()


def test_retention_by_age_and_rows(database: Database) -> None:
    log = open_log(database, days=1, rows=3)
    try:
        for i, age in enumerate([50, 30, 3, 2, 1, 0.5]):
            log.submit(record(f"req_{i}", age_h=age))
        log.flush()
        log._prune()
        kept = [r.request_id for r in log.page(key_id=None, limit=10).records]
        assert kept == ["req_5", "req_4", "req_3"]
    finally:
        log.close()


def test_model_hashes_are_cached_by_identity(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    hashes = ModelHashes(tmp_path / "hashes.json")
    assert hashes.get(model) is None
    hashes.start([model]).join()
    digest = hashes.get(model)
    assert digest is not None and len(digest) == 64
    assert ModelHashes(tmp_path / "hashes.json").get(model) == digest  # from the cache file
    model.write_bytes(b"GGUF" + b"\1" * 200)
    assert hashes.get(model) is None  # changed file: the old hash no longer applies


def test_a_hash_not_yet_known_is_computed_once_when_required(tmp_path: Path) -> None:
    """A receipt needs the model hash: the first requests after a start compute it (once) if needed."""
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\2" * 5_000_000)
    hashes = ModelHashes(tmp_path / "hashes.json")
    results: list[str] = []
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == model:
            opened.append(self)
        return real_open(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "open", counting_open)
        threads = [threading.Thread(target=lambda: results.append(hashes.require(model))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(set(results)) == 1 and len(results) == 4 and len(opened) == 1
    assert hashes.get(model) == results[0] == hashlib.sha256(model.read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError):
        hashes.require(tmp_path / "gone.gguf")


def test_commitment_helpers() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert first_divergence("abc", "abc") is None
    assert first_divergence("abc", "abd") == 2
    assert first_divergence("abc", "ab") == 2
