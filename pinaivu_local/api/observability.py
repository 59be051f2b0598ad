"""ASGI middleware: one access-log line and the request metrics for every HTTP request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pinaivu_local.api.auth import Principal
from pinaivu_local.metrics import Metrics
from pinaivu_local.requestlog.records import RequestRecord

access_log = logging.getLogger("pinaivu_local.access")

INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions")


def observability(app: ASGIApp) -> ASGIApp:
    """Wrap `app`: time each request, then log it and count it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            _finish(scope, status, (time.monotonic() - started) * 1000)

    return middleware


def _finish(scope: Scope, status: int, ms: float) -> None:
    state: dict[str, Any] = scope.get("state", {})
    principal = state.get("principal")
    record: RequestRecord | None = state.get("record")
    key = principal.name if isinstance(principal, Principal) else None
    model = state.get("model_id")
    path = scope.get("path", "")
    if path.rstrip("/") in INFERENCE_PATHS and key is not None:
        metrics: Metrics = scope["app"].state.metrics
        metrics.observe_response(model=model or "unknown", status=status, key=key)
    fields = {
        "method": scope.get("method"),
        "path": path,
        "status": status,
        "ms": round(ms, 1),
        "request_id": state.get("request_id"),
        "key": key,
        "model": model,
        "tokens": (record.prompt_tokens + record.completion_tokens) if record else None,
    }
    log_format = scope["app"].state.settings.log_format
    if log_format == "json":
        access_log.info("%s", json.dumps(fields, separators=(",", ":")))
    else:
        access_log.info("%s", " ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
