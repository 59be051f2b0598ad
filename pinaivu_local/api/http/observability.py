"""ASGI middleware: one access-log line and the request metrics for every HTTP request (and its span)."""

from __future__ import annotations

import json
import logging
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pinaivu_local.api.http.app_state import PlumbingServices, plumbing_of
from pinaivu_local.api.http.context import RequestContext, context_of
from pinaivu_local.api.http.tracing import start_span

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
        services = plumbing_of(scope["app"])
        span = start_span(services.tracer, scope)

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            context = context_of(scope)
            if context.in_flight is not None:
                context.in_flight.release()
            if span is not None:
                span.finish(context, status)
            _finish(services, scope, context, status, (time.monotonic() - started) * 1000)

    return middleware


def _finish(services: PlumbingServices, scope: Scope, context: RequestContext, status: int, ms: float) -> None:
    key = context.principal.name if context.principal else None
    record = context.run.record if context.run else context.record
    path = scope.get("path", "")
    if path.rstrip("/") in INFERENCE_PATHS and context.principal is not None:
        # /metrics needs no key: series carry key ids, never the names people give their keys.
        key_id = context.principal.key_id
        services.metrics.observe_response(model=context.model_id or "unknown", status=status, key=key_id)
    if not access_log.isEnabledFor(logging.INFO):  # every request comes here: build no line nobody reads
        return
    fields = {
        "method": scope.get("method"),
        "path": path,
        "status": status,
        "ms": round(ms, 1),
        "request_id": context.run.request_id if context.run else (record.request_id if record else None),
        "key": key,
        "model": context.model_id,
        "tokens": (record.prompt_tokens + record.completion_tokens) if record else None,
        "replay_of": record.replay_of if record else None,
    }
    if services.settings.log_format == "json":
        access_log.info("%s", json.dumps(fields, separators=(",", ":")))
    else:
        access_log.info("%s", " ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
