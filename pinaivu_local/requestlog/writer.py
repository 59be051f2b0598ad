"""Writes request records durably, in groups, on one thread; a record is retried until it is written.

Every submitted record gets a PendingWrite, resolved when the transaction that holds it has committed
(the database syncs at commit). Records that arrive while a transaction commits go together into
the next one (group commit), so the sync is paid once per batch. A batch that fails because of the
storage (disk full, locked by another process, I/O error) stays queued and is tried again, backing
off; nothing is dropped. The backlog is bounded: the inference flow asks `raise_if_unavailable`
before admitting a request, which refuses it (StorageUnavailable, a 503) while the backlog is full
or writes keep failing, rather than serve it without a record. A write that has not returned within
the database's bound (a database server that stopped answering) counts as failing while it waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from pinaivu_local.clock import utcnow
from pinaivu_local.errors import InternalError, StorageUnavailable
from pinaivu_local.keys.usage import KeyUsage, write_last_used
from pinaivu_local.requestlog.records import FinishedRequest, RequestRecord
from pinaivu_local.storage.database import Database

log = logging.getLogger(__name__)

MAX_BATCH = 500  # records per transaction
RETRY_FIRST_S = 0.05  # the first retry of a failed batch; doubling up to RETRY_MAX_S
RETRY_MAX_S = 2.0
USAGE_EVERY_S = 5.0  # last-use times of keys are written at least this often
DURABLE_WAIT_S = 30.0  # a response waits at most this long for its record (a slow disk), then 503
# A write that has not returned after this long (on a database server: its timeout, Database.call_timeout_s)
# counts as failing: requests are refused and the responses waiting for it get their 503.
STALLED_S = DURABLE_WAIT_S
POLL_S = 0.1  # how often a waiting response checks whether writes are failing
CLOSE_RETRY_S = 10.0  # at shutdown, how long failing writes are retried before records are lost

_QUEUED, _WRITING, _DONE = "queued", "writing", "done"
_TABLE: Table = RequestRecord.__table__  # type: ignore[attr-defined]  # SQLModel sets it on table classes


@dataclass(eq=False)
class _Entry:
    record: FinishedRequest
    future: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)
    state: str = _QUEUED
    withdrawn: bool = False  # its response gave up waiting: the record says 503
    # Its response gave up while its batch was being written (a stalled write): that write carries the
    # outcome the client never got, so once it is done the record is written again, saying 503.
    stale: bool = False


class PendingWrite:
    """A submitted record's write; `durable()` waits until it is done (not a signed receipt: receipts/)."""

    def __init__(self, writer: RecordWriter, entry: _Entry) -> None:
        self._writer = writer
        self._entry = entry

    @property
    def future(self) -> concurrent.futures.Future[None]:
        """Resolved once the record's transaction committed (for threads and tests)."""
        return self._entry.future

    async def durable(self, timeout: float = DURABLE_WAIT_S) -> None:
        """Wait (without blocking the event loop) until the record is written.

        A response should not go out while its record may still be lost. When writes are failing
        (disk full, another process holding the lock past the busy timeout) or `timeout` passes, the
        response gives up: its record is changed to say 503 and StorageUnavailable is raised, so the
        client gets a 503 and the record, still queued, tells the truth once it is written. If the
        record was written meanwhile, this returns normally.
        """
        waiting = asyncio.wrap_future(self._entry.future)
        deadline = time.monotonic() + timeout
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=POLL_S)
            if done:
                waiting.result()  # raises for a record that can never be written (a bug of ours)
                return
            if self._writer.failing() is None and time.monotonic() < deadline:
                continue
            gave_up = self._writer.withdraw(self._entry)
            if gave_up:
                raise self._writer.unavailable("the request's record could not be written")
            # None: its batch is being written (and not stalled); False: written just now (the next wait returns)


class RecordWriter:
    """The writer thread and its bounded backlog."""

    def __init__(
        self,
        database: Database,
        *,
        backlog: int,
        key_usage: KeyUsage | None = None,
        housekeeping: Callable[[], None] | None = None,
        housekeeping_every_s: float = 3600.0,
    ) -> None:
        self._db = database
        self._insert = database.insert(_TABLE).on_conflict_do_nothing()  # built once: every commit runs it
        # A record whose response gave up replaces whatever an earlier attempt, whose outcome was unclear
        # (a stalled server may commit it after all), wrote of it.
        upsert = database.insert(_TABLE)
        self._correct = upsert.on_conflict_do_update(
            index_elements=[c for c in _TABLE.c if c.primary_key],
            set_={c.name: upsert.excluded[c.name] for c in _TABLE.c if not c.primary_key},
        )
        self._stalled_s = database.call_timeout_s or STALLED_S
        self._limit = backlog
        self._usage = key_usage
        self._housekeeping = housekeeping
        self._housekeeping_every_s = housekeeping_every_s
        self._cond = threading.Condition()
        self._queued: deque[_Entry] = deque()
        self._writing: list[_Entry] = []
        self._stopping = False
        self._wake = False  # flush(): run a cycle now even with nothing queued
        self._cycles = 0  # write cycles begun
        self._ok_cycle = 0  # the number of the last cycle that committed
        self.failure: str | None = None  # why the last write failed; None once one succeeds
        self.failing_since: datetime | None = None
        self._busy_since: tuple[float, datetime] | None = None  # when the write now running began
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    # ---- event loop side --------------------------------------------------------------

    def submit(self, record: FinishedRequest) -> PendingWrite:
        """Queue a finished request's record; never blocks, never refuses (admission is bounded instead)."""
        entry = _Entry(record)
        with self._cond:
            self._queued.append(entry)
            self._cond.notify_all()
        return PendingWrite(self, entry)

    def raise_if_unavailable(self) -> None:
        """StorageUnavailable while writes fail or the backlog is full: admit nothing that cannot be recorded."""
        with self._cond:
            waiting = len(self._queued) + len(self._writing)
            failure, _ = self._failing()
        if failure is not None:
            raise self.unavailable("the server cannot record requests")
        if waiting >= self._limit:
            raise StorageUnavailable(
                f"The server cannot record requests fast enough ({waiting} records waiting to be written); "
                "retry later.",
                reason=f"{waiting} records waiting to be written",
                retry_after=1,
            )

    def unavailable(self, what: str) -> StorageUnavailable:
        """The error a client gets while writes fail: the cause, never a path."""
        reason = self.failing() or "writing is too slow"
        return StorageUnavailable(f"Storage is unavailable: {what} ({reason}); retry later.", reason=reason)

    def health(self) -> dict[str, Any]:
        """ok, failing (with the cause) or full; and the backlog."""
        with self._cond:
            waiting = len(self._queued) + len(self._writing)
            failure, since = self._failing()
        state = "failing" if failure else "full" if waiting >= self._limit else "ok"
        return {
            "state": state,
            "reason": failure or (f"{waiting} records waiting to be written" if state == "full" else None),
            "since": since.isoformat().replace("+00:00", "Z") if since else None,
            "backlog": waiting,
            "backlog_limit": self._limit,
        }

    def failing(self) -> str | None:
        """Why records cannot be written now, or None."""
        with self._cond:
            return self._failing()[0]

    def _failing(self) -> tuple[str | None, datetime | None]:
        """Why writes fail and since when (the lock held): the last write's failure, or the write now
        running, past its bound (a database server that stopped answering holds it for as long as it
        stalls)."""
        if self.failure is not None:
            return self.failure, self.failing_since
        if self._busy_since is not None and self._stalled():
            return f"the database has not answered for over {self._stalled_s:g} s", self._busy_since[1]
        return None, None

    def _stalled(self) -> bool:
        """Whether the write now running has taken longer than its bound (the lock held)."""
        return self._busy_since is not None and time.monotonic() - self._busy_since[0] > self._stalled_s

    def withdraw(self, entry: _Entry) -> bool | None:
        """Its response gives up waiting: True once the queued record says 503, or once its batch's
        write is stalled (the record is written again, saying 503, when that write ends); False if already
        written; None while its batch is being written (decided when that attempt ends)."""
        with self._cond:
            if entry.state == _DONE:
                return False
            entry.withdrawn = True
            if entry.state == _WRITING:
                if not self._stalled():
                    return None
                entry.stale = True
                return True
            _mark_withdrawn(entry.record)
            return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far (and the keys' last-use times) is written."""
        with self._cond:
            futures = [e.future for e in (*self._writing, *self._queued)]
            after = self._cycles
            self._wake = True
            self._cond.notify_all()
            committed = self._cond.wait_for(lambda: self._ok_cycle > after, timeout)
        done, _ = concurrent.futures.wait(futures, timeout)
        return committed and len(done) == len(futures)

    def close(self) -> None:
        """Write what is queued (retrying failures for a while), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=CLOSE_RETRY_S + 30)

    # ---- writer thread --------------------------------------------------------------

    def _run(self) -> None:
        last_housekeeping = 0.0
        retry_s = 0.0
        stop_deadline: float | None = None
        while True:
            if retry_s:
                time.sleep(retry_s)  # the storage failed: back off before the next attempt
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queued) or self._stopping or self._wake, USAGE_EVERY_S)
                if self._stopping and stop_deadline is None:
                    stop_deadline = time.monotonic() + CLOSE_RETRY_S
                self._wake = False
                batch = [self._queued.popleft() for _ in range(min(len(self._queued), MAX_BATCH))]
                for entry in batch:
                    entry.state = _WRITING
                self._writing = batch
                self._cycles += 1
                cycle = self._cycles
            usage = self._usage.take_unwritten() if self._usage else {}
            with self._busy():
                ok = self._write(batch, usage, cycle)
            retry_s = 0.0 if ok else min(RETRY_MAX_S, max(RETRY_FIRST_S, retry_s * 2))
            if self._housekeeping and time.monotonic() - last_housekeeping > self._housekeeping_every_s:
                last_housekeeping = time.monotonic()
                with self._busy():  # records wait behind it too
                    self._housekeeping()
            with self._cond:
                if not self._stopping:
                    continue
                if not self._queued and not self._writing:
                    return
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    log.error("stopping with %d request records unwritten (%s)", len(self._queued), self.failure)
                    return

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """A stretch of the thread's work on the database, timed (see _failing)."""
        with self._cond:
            self._busy_since = (time.monotonic(), utcnow())
        try:
            yield
        finally:
            with self._cond:
                self._busy_since = None

    def _write(self, batch: list[_Entry], usage: dict[str, datetime], cycle: int) -> bool:
        """One transaction: the batch and the last-use times. False when the storage failed (retry)."""
        if not batch and not usage:
            self._written([], cycle)  # nothing to write (a flush, or time to write last-use times)
            return True
        try:
            self._commit(batch, usage)
        except StorageUnavailable as exc:
            self._failed(batch, usage, exc.reason)
            return False
        except Exception:  # not the disk: a record we cannot write; find it, write the others
            if self._usage is not None:
                self._usage.restore(usage)
            return self._write_one_by_one(batch, cycle)
        self._written(batch, cycle)
        return True

    def _write_one_by_one(self, batch: list[_Entry], cycle: int) -> bool:
        for i, entry in enumerate(batch):
            try:
                self._commit([entry], {})
            except StorageUnavailable as exc:
                self._failed(batch[i:], {}, exc.reason)
                return False
            except Exception:
                log.exception("request record %s cannot be written; it is dropped", entry.record.request_id)
                self._settle([entry], InternalError("The request's record could not be written (a bug, logged)."))
                continue
            self._settle([entry], None)
        self._written([], cycle)
        return True

    def _commit(self, batch: list[_Entry], usage: dict[str, datetime]) -> None:
        # A Core connection and insert, no ORM session: a response waits for this commit, and the
        # session's bookkeeping cost more than the insert. A record already there (an attempt whose
        # outcome was unclear) stays as it is, unless this one says its response gave up.
        # No lock needed: `withdraw` changes only queued records; one being written it only flags (a
        # flag read here a moment early is made good by writing the record again, see _settle).
        rows = [entry.record.row() for entry in batch if not entry.withdrawn]
        corrected = [entry.record.row() for entry in batch if entry.withdrawn]
        with self._db.connection() as conn:
            if rows:
                conn.execute(self._insert, rows)
            if corrected:
                conn.execute(self._correct, corrected)
            if usage:
                write_last_used(conn, usage)
            conn.commit()

    def _written(self, batch: list[_Entry], cycle: int) -> None:
        recovered = self.failure is not None
        self._settle(batch, None)
        with self._cond:
            self.failure = None
            self.failing_since = None
            self._ok_cycle = cycle
            self._cond.notify_all()
        if recovered:
            log.warning("request records are being written again")

    def _failed(self, batch: list[_Entry], usage: dict[str, datetime], reason: str) -> None:
        """Back to the front of the queue, in order; a record whose response gave up now says 503."""
        if self._usage is not None:
            self._usage.restore(usage)
        with self._cond:
            for entry in reversed(batch):
                entry.state = _QUEUED
                entry.stale = False  # written again now, as it is
                if entry.withdrawn:
                    _mark_withdrawn(entry.record)
                self._queued.appendleft(entry)
            self._writing = []
            first = self.failure is None
            self.failure = reason
            if first:
                self.failing_since = utcnow()
            self._cond.notify_all()
        if first:
            log.error("cannot write request records (%s): inference is refused until they can be written", reason)

    def _settle(self, entries: list[_Entry], error: Exception | None) -> None:
        """Entries written (error None) or never writable. One written while its response gave up (stale)
        goes back to the queue, saying 503: that write carried the outcome its client never got."""
        with self._cond:
            again = [entry for entry in entries if error is None and entry.stale]
            for entry in again:
                entry.stale = False
                entry.state = _QUEUED
                _mark_withdrawn(entry.record)
            self._queued.extendleft(reversed(again))
            entries = [entry for entry in entries if entry not in again]
            for entry in entries:
                entry.state = _DONE
            self._writing = [e for e in self._writing if e.state == _WRITING]
            if again:
                self._cond.notify_all()
        for entry in entries:
            if error is None:
                entry.future.set_result(None)
            else:
                entry.future.set_exception(error)


def _mark_withdrawn(record: FinishedRequest) -> None:
    """The record of a request answered 503 because its record could not be written in time."""
    record.status_code = 503
    record.finish_reason = None
    record.output_sha256 = None
    record.output_content = None
    record.error = "storage unavailable: the record could not be written in time; the client was answered 503"
