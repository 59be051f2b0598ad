"""Every string a record holds comes back exactly, on SQLite and on a real Postgres (which refuses U+0000)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.commitment import canonical_json, input_digest
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.records import FinishedRequest
from pinaivu_local.requestlog.stored_text import decoded, stored_row
from pinaivu_local.storage.database import Database

# Text that must survive: U+0000 alone and among others, and text that looks like an encoded value.
HARD = [
    "\x00",
    "a\x00b\\u0000c",
    '"\\u0000"',
    '"quoted"',
    "back\\slash \x01\x1f\x7f é 🙂 \u2028",
    "",
]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    target = request.getfixturevalue("postgres_url") if request.param == "postgres" else tmp_path / "pinaivu.db"
    opened = Database(target)
    yield opened
    opened.close()


@pytest.fixture
def log(database: Database) -> Iterator[RequestLog]:
    opened = RequestLog(database, Retention(days=30, rows=1000))
    yield opened
    opened.close()


def record(request_id: str, value: str) -> FinishedRequest:
    return FinishedRequest(
        request_id=request_id,
        created_at=utcnow(),
        kind="chat",
        key_id="key_a",
        key_name=value,
        model_id="m",
        status_code=500,
        error=value,
        input_sha256=input_digest([value]),
        input_content=canonical_json([value]),
        output_content=value,
    )


def test_every_string_round_trips(log: RequestLog) -> None:
    for i, value in enumerate(HARD):
        receipt = log.submit(record(f"req_{i}", value))
        log.flush()
        receipt.future.result(timeout=10)  # written, not dropped as unwritable
    for i, value in enumerate(HARD):
        found = log.get(f"req_{i}")
        assert found is not None
        assert (found.key_name, found.error, found.output_content) == (value, value, value)
        assert found.public()["content"] == {"input": [value], "output": value}
    listed = {r.request_id: r.error for r in log.page(key_id="key_a", limit=50).records}
    assert listed == {f"req_{i}": value for i, value in enumerate(HARD)}


def test_only_rows_holding_nul_are_encoded(log: RequestLog, database: Database) -> None:
    """Rows written before the encoding (text_encoding NULL) read as they are, even if they look encoded."""
    log.submit(record("req_plain", '"\\u0000"'))
    log.submit(record("req_nul", "\x00"))
    log.flush()
    with database.connection() as conn:
        stored = dict(conn.execute(text("SELECT request_id, text_encoding FROM request_log")).all())
    assert stored == {"req_plain": None, "req_nul": "json"}
    plain = log.get("req_plain")
    assert plain is not None and plain.output_content == '"\\u0000"'


def test_the_encoding_holds_no_nul_and_is_undone_exactly() -> None:
    for value in HARD:
        written = record("r", value)
        row = written.row()
        assert not any("\x00" in v for v in row.values() if isinstance(v, str))
        encoding = row.pop("text_encoding")
        assert {**row, **decoded(row, encoding)} == written.model_dump()
    assert stored_row({"error": None, "output_content": "x"})["text_encoding"] is None
