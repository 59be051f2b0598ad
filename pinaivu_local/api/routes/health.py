"""GET /health and GET /metrics: no auth; each model's state and load."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Response, get

from pinaivu_local.api.metrics import Metrics
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.requestlog.log import RequestLog


@get("/health", summary="Server and model states")
async def health(pool: ModelPool, request_log: RequestLog) -> Response[dict[str, Any]]:
    """ok when every model is ready, degraded when some are, unavailable (503) when none is, or when
    requests cannot be recorded (storage failing or its backlog full: `storage` says why)."""
    models = [dataclasses.asdict(s) for s in pool.statuses()]
    ready = sum(m["state"] == "ready" for m in models)
    status = "ok" if ready == len(models) else "degraded" if ready else "unavailable"
    storage = request_log.health()
    if storage["state"] != "ok":  # nothing can be served without a record
        status, ready = "unavailable", 0
    return Response({"status": status, "models": models, "storage": storage}, status_code=200 if ready else 503)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def prometheus_metrics(metrics: Metrics) -> Response[bytes]:
    """Requests, tokens, latencies, queue depth and running sequences per model, 429s and 503s."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
