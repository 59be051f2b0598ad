"""What the engine thread produced for one request, waiting for the request's event loop to take it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class Outbox:
    """Items put on the event loop's thread (a hop from the engine thread), taken all at once by one reader."""

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._ready = asyncio.Event()

    def put(self, item: object) -> None:
        """Add an item; the reader wakes (call on the event loop's thread)."""
        self._items.append(item)
        self._ready.set()

    async def take(self) -> list[object]:
        """Everything put since the last take, in order; waits while there is nothing."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        return items


class TextPacing:
    """When a request's new text goes to its reader: the first at once, then at most every `interval_s`.

    Nothing is dropped: text its interval holds back goes with the next hand-over, or with the end.
    Used by the engine thread only; `clock` gives monotonic seconds.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._held = ""
        # None, not 0.0: a monotonic clock counts from boot, and a machine up for less than the
        # interval would otherwise hold back the first text too.
        self._handed_at: float | None = None

    def push(self, text: str) -> str:
        """Add `text`; what to hand over now (everything held, in order), or "" while its interval runs."""
        self._held += text
        now = self._clock()
        if self._handed_at is not None and now - self._handed_at < self.interval_s:
            return ""
        self._handed_at = now
        return self.drain()

    def drain(self) -> str:
        """Everything held, whatever the interval: at the end, or before an error."""
        held, self._held = self._held, ""
        return held
