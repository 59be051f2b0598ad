"""The HTTP server's guard on connections: a deadline for each request head, and a cap on sockets.

uvicorn keeps a connection that never finishes its request head open forever, and accepts any
number of them: a few hundred idle sockets from one client would exhaust the process's files.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


def guarded_protocol(head_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """An HTTP protocol class that closes slow heads after `head_timeout_s` and refuses sockets past the cap.

    uvicorn's httptools protocol (llhttp, in C): far less Python per request and per streamed chunk
    than its pure-Python h11 one.
    """

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_deadline: asyncio.TimerHandle | None = None
            self._seen_cycle: object = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= max_connections:
                log.warning("refused a connection: %d are open (PINAIVU_MAX_CONNECTIONS)", len(self.connections))
                self._refused = True
                transport.abort()
                return
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._seen_cycle:  # a whole head arrived: a request is being served
                self._seen_cycle = self.cycle
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # idle again: the next head must come in time too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if not self._refused:  # a refused socket never became a connection
                super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_deadline = self.loop.call_later(head_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            serving = self.cycle is not None and not self.cycle.response_complete
            if not serving and self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol
