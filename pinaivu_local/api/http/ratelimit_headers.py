"""ASGI middleware: OpenAI's x-ratelimit-* headers on every authenticated response."""

from __future__ import annotations

import logging
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.http.app_state import plumbing_of
from pinaivu_local.api.http.context import context_of
from pinaivu_local.errors import StorageUnavailable
from pinaivu_local.ratelimit.limits import Limiter, format_duration

log = logging.getLogger(__name__)


def ratelimit_headers(app: ASGIApp) -> ASGIApp:
    """Wrap `app` so responses to a known caller report its remaining quota."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            principal = context_of(scope).principal
            if message["type"] == "http.response.start" and principal is not None:
                limiter = plumbing_of(scope["app"]).limiter
                message["headers"] = [*message.get("headers", []), *await _headers(limiter, principal)]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


async def _headers(limiter: Limiter, principal: Principal) -> list[tuple[bytes, bytes]]:
    try:
        snap = await limiter.snapshot(principal.key_id, principal.limits)
    except StorageUnavailable:
        # The response is decided already; without its limits' store it goes out without the headers.
        log.warning("no x-ratelimit-* headers: the rate-limit store does not answer")
        return []
    values: dict[str, Any] = {
        "x-ratelimit-limit-requests": snap.limits.rpm,
        "x-ratelimit-remaining-requests": snap.remaining_requests,
        "x-ratelimit-reset-requests": format_duration(snap.reset_requests_s),
        "x-ratelimit-limit-tokens": snap.limits.tpm,
        "x-ratelimit-remaining-tokens": snap.remaining_tokens,
        "x-ratelimit-reset-tokens": format_duration(snap.reset_tokens_s),
    }
    return [(name.encode(), str(value).encode()) for name, value in values.items()]
