"""What the engine thread produced for one request, waiting for the request's event loop to take it."""

from __future__ import annotations

import asyncio
from collections import deque


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
