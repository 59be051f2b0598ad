"""GET /health: no auth; each model's state and load."""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Request, Response, get

from pinaivu_local.engine.model_pool import ModelPool


@get("/health", summary="Server and model states")
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """ok when every model is ready, degraded when some are, unavailable (503) when none is."""
    pool: ModelPool = request.app.state.pool
    models = [dataclasses.asdict(s) for s in pool.statuses()]
    ready = sum(m["state"] == "ready" for m in models)
    status = "ok" if ready == len(models) else "degraded" if ready else "unavailable"
    return Response({"status": status, "models": models}, status_code=200 if ready else 503)
