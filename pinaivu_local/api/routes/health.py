"""GET /health and GET /metrics: no key needed; each model's state and load."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from pinaivu_local.api.flow.metrics import Metrics
from pinaivu_local.api.http.auth import KeyAuthenticator
from pinaivu_local.engine.model_pool import ModelPool, ModelStatus
from pinaivu_local.errors import PinaivuError
from pinaivu_local.fleet.fleet import Fleet
from pinaivu_local.requestlog.log import RequestLog


@get("/health", summary="Server and model states")
async def health(
    request: Request[Any, Any, Any],
    pool: NamedDependency[ModelPool],
    fleet: NamedDependency[Fleet | None],
    request_log: NamedDependency[RequestLog],
    authenticator: NamedDependency[KeyAuthenticator],
) -> Response[dict[str, Any]]:
    """ok when every model is ready, degraded when some are, unavailable (503) when none is, or when
    requests cannot be recorded (storage failing or its backlog full: `storage` says why). A gateway
    with nodes says the same of its nodes, each with its state, models, load and last error.

    Anyone may ask; file paths, node URLs and a node's error text are shown only to an admin key (they
    say how the fleet is laid out, and a node's words are its own); anyone sees the class of its error.
    """
    admin = await _is_admin(authenticator, request.headers.get("authorization"))
    models = [_model(status, with_paths=admin) for status in pool.statuses()]
    body: dict[str, Any] = {"models": models}
    if fleet is None:
        ready, of = sum(m["state"] == "ready" for m in models), len(models)
    else:  # a gateway: it serves while one node (its own engine included) is up
        body["nodes"] = [node.public(admin=admin) for node in fleet.states()]
        ready, of = sum(n["state"] == "up" for n in body["nodes"]), len(body["nodes"])
    status = "ok" if ready == of else "degraded" if ready else "unavailable"
    body["storage"] = storage = request_log.health()
    if storage["state"] != "ok":  # nothing can be served without a record
        status, ready = "unavailable", 0
    return Response({"status": status, **body}, status_code=200 if ready else 503)


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def prometheus_metrics(metrics: NamedDependency[Metrics]) -> Response[bytes]:
    """Requests, tokens, latencies, queue depth and running sequences per model, 429s and 503s."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _is_admin(authenticator: KeyAuthenticator, authorization: str | None) -> bool:
    """Whether the request carries a valid admin key; no key, a bad one, or a key store that cannot answer
    in time (a stalled database: /health must answer) is simply anonymous here."""
    if not authorization:
        return False
    try:
        return (await authenticator.authenticate_async(authorization)).admin
    except PinaivuError:
        return False


def _model(status: ModelStatus, *, with_paths: bool) -> dict[str, Any]:
    shown = dataclasses.asdict(status)
    if not with_paths:
        shown.pop("file")
        name = Path(status.file).name
        for field in ("detail", "last_failure"):  # llama.cpp's messages name the file: keep only its name
            if shown[field]:
                shown[field] = shown[field].replace(status.file, name)
    return shown
