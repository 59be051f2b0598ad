"""The request log: records written durably in groups on their own thread; reads for the explorer and dashboard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import delete, func
from sqlmodel import col, select

from pinaivu_local.clock import utcnow
from pinaivu_local.keys.usage import KeyUsage
from pinaivu_local.requestlog import hourly
from pinaivu_local.requestlog.records import FinishedRequest, RequestRecord, bounded
from pinaivu_local.requestlog.writer import PendingWrite, RecordWriter
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Retention:
    """How much history is kept: whichever limit is reached first."""

    days: int
    rows: int


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first."""

    records: list[RequestRecord]
    has_more: bool


class RequestLog:
    """The request log of one database: durable group-committed writes (requestlog.writer), and reads."""

    def __init__(
        self,
        database: Database,
        retention: Retention,
        *,
        backlog: int = 1000,
        key_usage: KeyUsage | None = None,
    ) -> None:
        self._db = database
        self._retention = retention
        self._writer = RecordWriter(
            database,
            backlog=backlog,
            key_usage=key_usage,
            housekeeping=self._prune,
            housekeeping_every_s=PRUNE_EVERY_S,
        )

    def submit(self, record: FinishedRequest) -> PendingWrite:
        """Queue a finished request's record, cut to its bounded size; `await pending.durable()` before
        the response goes out (called from the event loop; never blocks)."""
        return self._writer.submit(bounded(record))

    def raise_if_unavailable(self) -> None:
        """StorageUnavailable (503) while records cannot be written or the backlog is full."""
        self._writer.raise_if_unavailable()

    def health(self) -> dict[str, Any]:
        """The storage's state for /health: ok, failing (and why, naming no path) or full."""
        return self._writer.health()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._writer.close()

    # ---- writer thread --------------------------------------------------------------

    def _prune(self) -> None:
        """Drop records older than the retention days, then beyond the row limit."""
        try:
            with self._db.session() as session:
                cutoff = utcnow() - timedelta(days=self._retention.days)
                session.execute(delete(RequestRecord).where(col(RequestRecord.created_at) < cutoff))
                keep_after = session.exec(
                    select(RequestRecord.created_at)
                    .order_by(col(RequestRecord.created_at).desc())
                    .offset(self._retention.rows - 1)
                    .limit(1)
                ).first()
                if keep_after is not None:
                    session.execute(delete(RequestRecord).where(col(RequestRecord.created_at) < keep_after))
                session.commit()
        except Exception:
            log.exception("could not prune the request log")

    # ---- reads (short queries on an indexed table; the event loop awaits them through call) --

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """One of the reads below, for the event loop: on a worker thread, bounded (Database.call)."""
        return await self._db.call(fn, *args, **kwargs)

    def get(self, request_id: str) -> RequestRecord | None:
        """One record."""
        with self._db.session() as session:
            return session.get(RequestRecord, request_id)

    def page(
        self,
        *,
        key_id: str | None,
        limit: int,
        model: str | None = None,
        status: int | None = None,
        before: datetime | None = None,
    ) -> Page:
        """Records newest first; `key_id` None means every key (admins)."""
        query = select(RequestRecord)
        if key_id is not None:
            query = query.where(RequestRecord.key_id == key_id)
        if model:
            query = query.where(RequestRecord.model_id == model)
        if status is not None:
            query = query.where(RequestRecord.status_code == status)
        if before is not None:
            query = query.where(col(RequestRecord.created_at) < before)
        query = query.order_by(col(RequestRecord.created_at).desc()).limit(limit + 1)
        with self._db.session() as session:
            rows = list(session.exec(query))
        return Page(records=rows[:limit], has_more=len(rows) > limit)

    def usage_by_key(self, since: datetime) -> dict[str, dict[str, int]]:
        """Requests and tokens per key id since a moment."""
        query = (
            select(
                RequestRecord.key_id,
                func.count(),
                func.sum(RequestRecord.prompt_tokens + RequestRecord.completion_tokens),
            )
            .where(col(RequestRecord.created_at) >= since)
            .group_by(RequestRecord.key_id)
        )
        with self._db.session() as session:
            return {key: {"requests": n, "tokens": int(t or 0)} for key, n, t in session.exec(query)}

    def _hour_of(self, moment: Any) -> Any:
        """The hour of a stored moment (UTC) as `2025-01-31T17:00:00Z`, in this database's dialect."""
        if self._db.dialect == "sqlite":
            return func.strftime("%Y-%m-%dT%H:00:00Z", moment)
        return func.to_char(func.timezone("UTC", moment), 'YYYY-MM-DD"T"HH24":00:00Z"')

    def usage_by_model_hour(self, since: datetime) -> list[dict[str, Any]]:
        """Requests and tokens per model and hour since a moment, oldest first."""
        hour = self._hour_of(col(RequestRecord.created_at))
        query = (
            select(
                hour,
                RequestRecord.model_id,
                func.count(),
                func.sum(RequestRecord.prompt_tokens + RequestRecord.completion_tokens),
            )
            .where(col(RequestRecord.created_at) >= since)
            .group_by(hour, RequestRecord.model_id)
            .order_by(hour)
        )
        with self._db.session() as session:
            return [{"hour": h, "model": m, "requests": n, "tokens": int(t or 0)} for h, m, n, t in session.exec(query)]

    def per_hour(self, now: datetime) -> list[dict[str, Any]]:
        """The last 24 whole UTC hours up to `now`'s, oldest first: tokens per model, requests, TTFT p50/p95."""
        with self._db.session() as session:
            return hourly.per_hour(session, self._hour_of, now)
