"""When each key was last used: noted in memory on every request, written later with the request log.

Authentication only reads the database, so a full or locked disk never refuses a valid key; the
request log's writer thread stores these times in its own transactions (`write_last_used`).
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import Connection, bindparam, or_, update
from sqlmodel import col

from pinaivu_local.clock import as_utc
from pinaivu_local.keys.records import ApiKey


class KeyUsage:
    """Last-use times by key id; thread-safe. What is not yet written is handed out by `take_unwritten`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}
        self._unwritten: dict[str, datetime] = {}

    def touch(self, key_id: str, at: datetime) -> None:
        """The key was used at `at`."""
        with self._lock:
            self._seen[key_id] = at
            self._unwritten[key_id] = at

    def last_used(self, key_id: str) -> datetime | None:
        """The last use this process saw, if any."""
        with self._lock:
            return self._seen.get(key_id)

    def take_unwritten(self) -> dict[str, datetime]:
        """The times not yet written; they are the caller's to write (or to `restore`)."""
        with self._lock:
            taken, self._unwritten = self._unwritten, {}
            return taken

    def restore(self, times: dict[str, datetime]) -> None:
        """Times whose write failed: written with the next batch (newer uses win)."""
        with self._lock:
            for key_id, at in times.items():
                self._unwritten.setdefault(key_id, at)

    def newest(self, record: ApiKey) -> ApiKey:
        """`record` with the last use this process saw, when it is newer than the stored one."""
        seen = self.last_used(record.id)
        stored = as_utc(record.last_used_at)
        if seen is not None and (stored is None or seen > stored):
            record.last_used_at = seen
        return record


# Built once: every batch of the request log runs it, and building it anew cost more than running it.
_STORE_LAST_USE = (
    update(ApiKey)
    .where(col(ApiKey.id) == bindparam("key_id"))
    .where(or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) < bindparam("at")))
    .values(last_used_at=bindparam("at"))
)


def write_last_used(conn: Connection, times: dict[str, datetime]) -> None:
    """Store last-use times in the connection's transaction, never moving one backwards."""
    if times:
        conn.execute(_STORE_LAST_USE, [{"key_id": key_id, "at": at} for key_id, at in times.items()])
