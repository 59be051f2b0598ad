"""The hand-off between a model's engine thread and the event loops of its requests.

The engine thread collects what a step produced for each sequence and hands it over in one hop per
event loop (deliver); each request's handler iterates its GenerationStream for the Deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from pinaivu_local.engine.generation import Delta, Timings, coalesce
from pinaivu_local.engine.sequence import Sequence

DONE = object()  # end-of-stream marker in a sequence's outbox


class GenerationStream:
    """The async side of one request: iterate for Deltas; close() cancels it."""

    def __init__(self, seq: Sequence, wake: Callable[[], None]) -> None:
        self._seq = seq
        self._wake = wake
        self._finished = False

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delta]:
        try:
            while True:
                for item in coalesced(await self._seq.queue.take()):
                    if item is DONE:
                        self._finished = True
                        return
                    if isinstance(item, BaseException):
                        self._finished = True
                        raise item
                    assert isinstance(item, Delta)
                    yield item
        finally:
            self.close()

    def timings(self) -> Timings:
        """Queue time, time to first token and total time so far, in seconds."""
        seq = self._seq
        end = seq.finished_at or time.monotonic()
        return Timings(
            queue_s=(seq.admitted_at or end) - seq.submitted_at,
            first_token_s=None if seq.first_token_at is None else seq.first_token_at - seq.submitted_at,
            total_s=end - seq.submitted_at,
        )

    @property
    def tokens_used(self) -> int:
        """Prompt plus tokens generated so far (for usage accounting of unfinished requests)."""
        return len(self._seq.prompt) + self._seq.n_generated

    def close(self) -> None:
        """Stop generating (client gone); frees the sequence within one engine step."""
        if not self._finished:
            self._finished = True
            self._seq.cancelled = True
            self._wake()


def deliver(out: list[tuple[Sequence, object]]) -> None:
    """One hop per event loop for everything this step produced."""
    if not out:  # most steps of a stream: its text waits for its interval
        return
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, object]]] = {}
    for seq, item in out:
        if not seq.cancelled or item is DONE:
            by_loop.setdefault(seq.loop, []).append((seq, item))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            loop.call_soon_threadsafe(_put_all, items)


def coalesced(items: list[object]) -> list[object]:
    """`items` with each run of text-only deltas joined into one: a reader that fell behind catches up in one chunk."""
    out: list[object] = []
    run: list[Delta] = []
    for item in [*items, None]:
        if isinstance(item, Delta) and item.text_only:
            run.append(item)
            continue
        if run:
            out.append(coalesce(run[0], run[1:]))
            run = []
        if item is not None:
            out.append(item)
    return out


def _put_all(items: list[tuple[Sequence, object]]) -> None:
    for seq, item in items:
        seq.queue.put(item)
