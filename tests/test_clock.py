"""UTC timestamps: naive ones from SQLite are read as UTC, aware ones are left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pinaivu_local.clock import as_utc, utcnow


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().tzinfo is UTC


def test_as_utc() -> None:
    naive = datetime(2025, 1, 2, 3, 4, 5)
    assert as_utc(naive) == naive.replace(tzinfo=UTC)
    elsewhere = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert as_utc(elsewhere) is elsewhere
    assert as_utc(None) is None
