"""The record a request leaves as it ends (FinishedRequest) against the table it is written to."""

from __future__ import annotations

from sqlalchemy import inspect

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.records import FinishedRequest, RequestRecord


def test_its_row_is_a_whole_record_of_the_table() -> None:
    finished = FinishedRequest(
        request_id="req_1",
        created_at=utcnow(),
        kind="chat",
        key_id="key_a",
        key_name="a",
        model_id="m",
        status_code=200,
        finish_reason="stop",
        input_sha256="0" * 64,
        output_sha256="1" * 64,
        receipt="{}",
    )
    row = finished.row()
    assert set(row) == {column.name for column in inspect(RequestRecord).columns}
    assert RequestRecord(**row).model_dump() == row


def test_the_table_keeps_its_keys_and_indexes() -> None:
    table = inspect(RequestRecord).local_table
    assert [c.name for c in table.primary_key.columns] == ["request_id"]
    assert {c.name for index in table.indexes for c in index.columns} == {
        "created_at",
        "key_id",
        "model_id",
        "status_code",
    }
