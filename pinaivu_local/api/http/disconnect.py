"""A whole answer is collected only while its client waits for it: generating stops when it goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from litestar import Request

from pinaivu_local.api.flow.inference import CLIENT_CLOSED, Run

T = TypeVar("T")


async def unless_disconnected(
    request: Request[Any, Any, Any], run: Run, collect: Callable[[Run], Awaitable[T]]
) -> T | None:
    """`collect(run)`, stopped as soon as the client goes away (then None: nobody reads the answer, and the
    run ends as nginx's 499 unless it had ended already)."""
    work = asyncio.ensure_future(collect(run))
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        return work.result() if work.done() else None
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
        run.end(CLIENT_CLOSED, error="the client disconnected")


async def _disconnected(request: Request[Any, Any, Any]) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
