"""The database's own worker threads, for the blocking calls the event loop awaits (Database.call).

Not asyncio's default executor: a call stuck on a database server that stopped answering holds its
thread until the server answers or the connection's keepalives give up. Those threads must not starve
the other work sent to threads (preparing large requests, hashing), and must not hold up the process's
exit either: an executor's threads are joined at exit, these are daemons.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], concurrent.futures.Future[Any]]


class Workers:
    """Up to `size` daemon threads, started as calls need them; calls beyond them wait in line."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a job and not yet promised one
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run fn() on a worker thread; its future resolves with the outcome (cancel it to drop a call
        that has not started)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the database is closed")
            if self._idle:
                self._idle -= 1  # that thread takes this job
            elif self._threads < self._size:
                self._threads += 1
                name = f"{self._name}-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        self._jobs.put((fn, future))
        return future

    def close(self) -> None:
        """Stop the threads once their calls have returned; later calls are refused."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # the caller's to handle, whatever it is
                    future.set_exception(exc)
            del job, fn, future  # hold no result while idle
            with self._lock:
                self._idle += 1
