"""GET /health and GET /metrics: no auth; each model's state and load."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Request, Response, get

from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.metrics import Metrics


@get("/health", summary="Server and model states")
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """ok when every model is ready, degraded when some are, unavailable (503) when none is."""
    pool: ModelPool = request.app.state.pool
    models = [dataclasses.asdict(s) for s in pool.statuses()]
    ready = sum(m["state"] == "ready" for m in models)
    status = "ok" if ready == len(models) else "degraded" if ready else "unavailable"
    return Response({"status": status, "models": models}, status_code=200 if ready else 503)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Requests, tokens, latencies, queue depth and running sequences per model, 429s and 503s."""
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
