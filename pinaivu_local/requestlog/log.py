"""Writes records in batches on its own thread; reads them for the explorer and dashboard."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select

from pinaivu_local.clock import utcnow
from pinaivu_local.requestlog.records import RequestRecord
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)

_STOP = object()
PRUNE_EVERY_S = 3600.0


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
    """The request log of one database. submit() never blocks; a thread writes in batches."""

    def __init__(self, database: Database, retention: Retention, model_hash: Callable[[Path], str | None]) -> None:
        self._db = database
        self._retention = retention
        self._model_hash = model_hash
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def submit(self, record: RequestRecord, model_file: Path | None = None) -> None:
        """Queue a finished request's record (called from the event loop)."""
        self._queue.put((record, model_file))

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far is written."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    # ---- writer thread --------------------------------------------------------------

    def _run(self) -> None:
        last_prune = 0.0
        while True:
            batch = [self._queue.get()]
            while True:  # whatever else is already waiting joins this transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [item for item in batch if isinstance(item, tuple)]
            if records:
                self._write(records)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if time.monotonic() - last_prune > PRUNE_EVERY_S:
                last_prune = time.monotonic()
                self._prune()
            if any(item is _STOP for item in batch):
                return

    def _write(self, items: list[Any]) -> None:
        try:
            with self._db.session() as session:
                for record, model_file in items:
                    if record.model_sha256 is None and model_file is not None:
                        record.model_sha256 = self._model_hash(model_file)
                    session.add(record)
                session.commit()
        except Exception:  # never take the server down for a log write
            log.exception("could not write %d request records", len(items))

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

    # ---- reads (event loop; short queries on an indexed table) ------------------------

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

    def usage_by_model_hour(self, since: datetime) -> list[dict[str, Any]]:
        """Requests and tokens per model and hour since a moment, oldest first."""
        hour = func.strftime("%Y-%m-%dT%H:00:00Z", RequestRecord.created_at)
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
