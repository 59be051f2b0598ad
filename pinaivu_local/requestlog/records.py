"""The request_log table and the public view of a record."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Field, SQLModel

from pinaivu_local.clock import as_utc
from pinaivu_local.requestlog.stored_text import decoded, stored_row

# An error message is kept up to this many characters (messages can quote what a request sent).
MAX_ERROR_CHARS = 1000


class RequestFields(SQLModel):
    """One inference request's record, written when it ends. Prompts and outputs only if content logging is on."""

    request_id: str = Field(primary_key=True)
    created_at: datetime = Field(index=True)
    kind: str  # chat or text
    key_id: str = Field(index=True)
    key_name: str
    model_id: str = Field(index=True)
    model_sha256: str | None = None
    status_code: int = Field(index=True)
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    tokens_per_s: float | None = None
    # JSON: temperature, top_p, seed, max_tokens, stop, penalties, logit_bias (SamplingParams.to_json:
    # stop and logit_bias over 2 KB are kept as stop_digest / logit_bias_digest instead)
    sampling: str = "{}"
    input_sha256: str
    output_sha256: str | None = None
    input_content: str | None = None
    output_content: str | None = None
    replay_of: str | None = None  # a verification replay: the request_id it ran again
    node: str | None = None  # a gateway with nodes: the node that served it ("local": the gateway's own engine)
    # A completed request's receipt (receipts/document.py): the canonical document exactly as
    # signed, and the node's base64 Ed25519 signature over it.
    receipt: str | None = None
    receipt_signature: str | None = None
    # Who counted the tokens: None this process's engine; "node" the node's report (checked as sane);
    # "gateway" the gateway (the node reported none or impossible counts, or its stream was cut short).
    usage_source: str | None = None
    # A node's receipt checked against the key the gateway pinned for that node (fleet/pins.py): None where
    # there is no node's receipt to check (computed here, or a node without receipts).
    receipt_verified: bool | None = None


class RequestRecord(RequestFields, table=True):
    """A record as the request_log table holds it (what the explorer, replays and exports read)."""

    __tablename__ = "request_log"

    # How the free text is stored (requestlog/stored_text.py): NULL as it is, "json" as JSON literals.
    text_encoding: str | None = None

    def sampling_params(self) -> dict[str, Any]:
        """The sampling JSON as a dict."""
        value = json.loads(self.sampling)
        return value if isinstance(value, dict) else {}

    def signed_receipt(self) -> dict[str, Any] | None:
        """The receipt envelope, {"receipt": {...}, "signature": "..."}, or None (not completed)."""
        if self.receipt is None or self.receipt_signature is None:
            return None
        return {"receipt": json.loads(self.receipt), "signature": self.receipt_signature}

    def public(self, *, content: bool = True) -> dict[str, Any]:
        """What the explorer API shows (key id and name, never the key); `content=False` for listings
        leaves out the stored prompt and output (GET the one request for them)."""
        created = as_utc(self.created_at)
        view = {
            "object": "request",
            "request_id": self.request_id,
            "created_at": created.isoformat().replace("+00:00", "Z") if created else None,
            "kind": self.kind,
            "replay_of": self.replay_of,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "model": self.model_id,
            "model_sha256": self.model_sha256,
            "node": self.node,
            "usage_source": self.usage_source,  # who counted the tokens (see RequestFields)
            "receipt_verified": self.receipt_verified,  # a node's receipt against its pinned key
            "status": self.status_code,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "timings": {
                "queue_ms": self.queue_ms,
                "time_to_first_token_ms": self.ttft_ms,
                "total_ms": self.total_ms,
                "tokens_per_second": self.tokens_per_s,
            },
            "sampling": self.sampling_params(),
            "commitment": {
                "algorithm": "sha256",
                "input_sha256": self.input_sha256,
                "output_sha256": self.output_sha256,
            },
        }
        if content:
            view["receipt"] = self.signed_receipt()
            view["content"] = (
                {"input": json.loads(self.input_content), "output": self.output_content}
                if self.input_content is not None
                else None
            )
        return view


class FinishedRequest(RequestFields):
    """The record of a request that just ended, on its way to the writer: the same fields, no table.

    Every inference request makes one on the event loop. An instance of the table class costs ten times
    as much (about 200 us against 16: each attribute is set through SQLAlchemy's instrumentation), and
    the writer inserts plain rows anyway.
    """

    def row(self) -> dict[str, Any]:
        """The request_log row as stored: column name to value."""
        return stored_row(self.model_dump())


@event.listens_for(RequestRecord, "load")
def _decode_text(record: RequestRecord, _context: Any) -> None:
    """A loaded record holds its free text exactly as it was written, whatever the database stores."""
    for column, value in decoded(vars(record), record.text_encoding).items():
        set_committed_value(record, column, value)  # not a change: nothing to write back


def bounded(record: FinishedRequest) -> FinishedRequest:
    """The record cut to its bounded size before it is queued: a long error message is truncated
    (the sampling JSON is bounded where it is made, in SamplingParams.to_json)."""
    if record.error is not None and len(record.error) > MAX_ERROR_CHARS:
        record.error = record.error[: MAX_ERROR_CHARS - 1] + "…"
    return record
