"""ASGI middleware: a request's body must have arrived within PINAIVU_BODY_TIMEOUT_S of its head.

The connection guard (connections.py) bounds the head; past it, a body dripped a byte at a time
would hold its socket (and its key's place in flight) for as long as the client liked. A late body
is answered 408 `request_timeout` with `connection: close`.
"""

from __future__ import annotations

import asyncio

from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from pinaivu_local.api.http.app_state import plumbing_of
from pinaivu_local.errors import RequestTimeout


def body_deadline(app: ASGIApp) -> ASGIApp:
    """Wrap `app` so that reading a request's body past its deadline raises RequestTimeout."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        timeout_s = plumbing_of(scope["app"]).settings.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        arrived = False

        async def bounded() -> ReceiveMessage:
            nonlocal arrived
            if arrived:  # after the body, receive() only waits for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {timeout_s:g} s of its head "
                    "(PINAIVU_BODY_TIMEOUT_S); send the whole body at once."
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                arrived = True
            return message

        await app(scope, bounded, send)

    return middleware
