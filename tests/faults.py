"""Faults injected into the real engine, for the tests of how it recovers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from pinaivu_local.engine.model_pool import ModelEngine


def fail_next_admission(engine: ModelEngine, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """The engine thread's next step raises `error` outside the decode (as the penalties bug did), once."""
    scheduler = engine._scheduler
    real_admit = scheduler._admit
    armed = iter([True])

    def admit_failing_once() -> None:
        if next(armed, False):
            raise error
        real_admit()

    monkeypatch.setattr(scheduler, "_admit", admit_failing_once)


@contextlib.contextmanager
def admission_paused(engine: ModelEngine) -> Iterator[None]:
    """Requests submitted inside are all queued together when the engine thread next admits."""
    with engine._scheduler._lock:  # a re-entrant lock: submit() on this thread still takes it
        yield
