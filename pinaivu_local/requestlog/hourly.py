"""The last 24 whole hours of the request log, one slot per hour: tokens per model, requests, TTFT percentiles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func
from sqlalchemy import select as select_columns  # five columns: more than sqlmodel's select types
from sqlmodel import Session, col, select

from pinaivu_local.requestlog.records import RequestRecord

SLOTS = 24
PERCENTILES = (50, 95)
HOUR_FORMAT = "%Y-%m-%dT%H:00:00Z"


def window(now: datetime) -> tuple[datetime, datetime]:
    """The 24 whole UTC hours ending with the current one: [start of the first, end of the current)."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return current - timedelta(hours=SLOTS - 1), current + timedelta(hours=1)


def nearest_rank(count: int, percentile: int) -> int:
    """The 1-based rank of a percentile among `count` sorted values: the smallest rank r with 100 r >= p n."""
    return max(1, -(-count * percentile // 100))


def per_hour(session: Session, hour_of: Callable[[Any], Any], now: datetime) -> list[dict[str, Any]]:
    """The 24 slots, oldest first; an hour without records is present with zeros and null percentiles.

    A bounded answer whatever the number of records: one grouped query (a row per hour and model),
    then per hour with timed records one ORDER BY ... OFFSET rank LIMIT 1 per percentile over that hour
    (the created_at index finds it; the database sorts it), so only the values at the wanted ranks
    come back. Plain SQL, the same in SQLite and
    Postgres (neither percentile_cont nor window functions needed).
    """
    start, end = window(now)
    created = col(RequestRecord.created_at)
    in_window = and_(created >= start, created < end)
    hour = hour_of(created)
    slots: dict[str, dict[str, Any]] = {}
    for i in range(SLOTS):
        label = (start + timedelta(hours=i)).strftime(HOUR_FORMAT)
        slots[label] = {"hour": label, "requests": 0, "tokens": 0, "tokens_by_model": {}}
        slots[label].update({f"ttft_ms_p{p}": None for p in PERCENTILES})

    totals = (
        select_columns(
            hour,
            col(RequestRecord.model_id),
            func.count(),
            func.sum(RequestRecord.prompt_tokens + RequestRecord.completion_tokens),
            func.count(col(RequestRecord.ttft_ms)),
        )
        .where(in_window)
        .group_by(hour, col(RequestRecord.model_id))
    )
    timed = dict.fromkeys(slots, 0)  # per hour: the records with a time to first token
    for label, model, requests, tokens, with_ttft in session.execute(totals):
        slot = slots.get(label)
        if slot is None:  # cannot happen for a record inside the window; never a KeyError on odd data
            continue
        timed[label] += with_ttft
        slot["requests"] += requests
        slot["tokens"] += int(tokens or 0)
        slot["tokens_by_model"][model] = int(tokens or 0)

    ttft = col(RequestRecord.ttft_ms)
    for i, (label, count) in enumerate(timed.items()):
        if not count:
            continue
        begins = start + timedelta(hours=i)
        in_hour = and_(created >= begins, created < begins + timedelta(hours=1), ttft.is_not(None))
        for p in PERCENTILES:
            at_rank = select(ttft).where(in_hour).order_by(ttft).offset(nearest_rank(count, p) - 1).limit(1)
            value = session.exec(at_rank).first()
            slots[label][f"ttft_ms_p{p}"] = None if value is None else float(value)
    return list(slots.values())
