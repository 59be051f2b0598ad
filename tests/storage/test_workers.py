"""The database's worker threads: daemons, at most so many, a call not yet started can be dropped."""

from __future__ import annotations

import threading

import pytest

from pinaivu_local.storage.workers import Workers


def test_calls_beyond_the_threads_wait_and_can_be_dropped() -> None:
    workers = Workers("test", 2)
    release = threading.Event()
    running = threading.Semaphore(0)
    names: list[str] = []

    def held() -> str:
        names.append(threading.current_thread().name)
        assert threading.current_thread().daemon  # a call stuck on a stalled server never holds up exit
        running.release()
        release.wait(30)
        return "done"

    first, second = workers.submit(held), workers.submit(held)
    waiting, dropped = workers.submit(lambda: "waited"), workers.submit(lambda: "ran")
    # Both held calls running at once, however slowly the threads started: each has a thread of its own.
    assert running.acquire(timeout=10) and running.acquire(timeout=10)
    assert dropped.cancel()  # not started: both threads are busy
    release.set()
    assert (first.result(10), second.result(10), waiting.result(10)) == ("done", "done", "waited")
    assert sorted(names) == ["test-1", "test-2"]
    workers.close()
    with pytest.raises(RuntimeError):
        workers.submit(lambda: None)


def test_a_call_that_raises_hands_its_error_to_the_caller() -> None:
    workers = Workers("test", 1)

    def broken() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        workers.submit(broken).result(10)
    assert workers.submit(lambda: 3).result(10) == 3  # the thread carries on
    workers.close()
