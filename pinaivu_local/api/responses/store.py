"""Stored responses (`store`, OpenAI's default): each response's input and output items, scoped to its key.

Rows are kept as long as the request log keeps records (the same Retention: days, then rows), pruned
at most once per PRUNE_EVERY_S on the write that finds it due. Every call runs on the database's own
threads (Database.call), bounded like the request log's reads.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Field, SQLModel, col, select

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.log import PRUNE_EVERY_S, Retention
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)


class StoredResponse(SQLModel, table=True):
    """One stored response: its own input items, its output items and the whole response object, as JSON."""

    __tablename__ = "responses"

    id: str = Field(primary_key=True)
    key_id: str = Field(index=True)
    created_at: datetime = Field(index=True)
    model: str
    request_id: str
    previous_response_id: str | None = None
    input_items: str  # JSON: this response's own input items (not its predecessors')
    output_items: str  # JSON: its output items
    response: str  # JSON: the response object as it was answered (its receipt excepted)

    def inputs(self) -> list[dict[str, Any]]:
        """The input items it was given."""
        items: list[dict[str, Any]] = json.loads(self.input_items)
        return items

    def outputs(self) -> list[dict[str, Any]]:
        """The output items it answered."""
        items: list[dict[str, Any]] = json.loads(self.output_items)
        return items

    def body(self) -> dict[str, Any]:
        """The response object, as GET /v1/responses/{id} shows it."""
        body: dict[str, Any] = json.loads(self.response)
        return body


class ResponseStore:
    """The responses table of one database."""

    def __init__(self, database: Database, retention: Retention) -> None:
        self._db = database
        self._retention = retention
        self._pruned_at: float | None = None

    async def save(self, row: StoredResponse) -> None:
        """Write `row`, committed (durable: SQLite syncs every commit) before this returns."""
        await self._db.call(self._save, row)

    async def get(self, response_id: str, key_id: str) -> StoredResponse | None:
        """The response `response_id` if `key_id` made it, else None (another key's is not there)."""
        return await self._db.call(self._get, response_id, key_id)

    async def chain(self, response_id: str, key_id: str) -> list[StoredResponse] | None:
        """`response_id` and every response before it, oldest first, all made by `key_id`; None when one of
        them is not stored (deleted, pruned, never stored, or another key's)."""
        return await self._db.call(self._chain, response_id, key_id)

    async def delete(self, response_id: str, key_id: str) -> bool:
        """Delete the response `response_id` of `key_id`; whether there was one."""
        return await self._db.call(self._delete, response_id, key_id)

    # ---- on the database's threads -------------------------------------------------------

    def _save(self, row: StoredResponse) -> None:
        with self._db.session() as session:
            session.add(row)
            session.commit()
        now = time.monotonic()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self._prune()

    def _get(self, response_id: str, key_id: str) -> StoredResponse | None:
        with self._db.session() as session:
            row = session.get(StoredResponse, response_id)
        return row if row is not None and row.key_id == key_id else None

    def _chain(self, response_id: str, key_id: str) -> list[StoredResponse] | None:
        found: list[StoredResponse] = []
        wanted: str | None = response_id
        with self._db.session() as session:
            # Each response names one made before it, so the walk ends; the check guards a hand-edited table.
            while wanted is not None and all(row.id != wanted for row in found):
                row = session.get(StoredResponse, wanted)
                if row is None or row.key_id != key_id:
                    return None
                found.append(row)
                wanted = row.previous_response_id
        return found[::-1]

    def _delete(self, response_id: str, key_id: str) -> bool:
        with self._db.session() as session:
            gone = session.execute(
                delete(StoredResponse).where(
                    col(StoredResponse.id) == response_id, col(StoredResponse.key_id) == key_id
                )
            )
            session.commit()
        return bool(getattr(gone, "rowcount", 0))

    def _prune(self) -> None:
        """Drop responses older than the request log's retention days, then beyond its row limit."""
        try:
            with self._db.session() as session:
                cutoff = utcnow() - timedelta(days=self._retention.days)
                session.execute(delete(StoredResponse).where(col(StoredResponse.created_at) < cutoff))
                keep_after = session.exec(
                    select(StoredResponse.created_at)
                    .order_by(col(StoredResponse.created_at).desc())
                    .offset(self._retention.rows - 1)
                    .limit(1)
                ).first()
                if keep_after is not None:
                    session.execute(delete(StoredResponse).where(col(StoredResponse.created_at) < keep_after))
                session.commit()
        except Exception:
            log.exception("could not prune the stored responses")
