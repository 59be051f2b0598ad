"""GET /v1/models and GET /v1/models/{id}: the active models."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from pinaivu_local.api.http.openapi import error_responses
from pinaivu_local.engine.model_pool import ModelEngine, ModelPool
from pinaivu_local.fleet.fleet import Fleet


def model_object(engine: ModelEngine) -> dict[str, Any]:
    """One model in OpenAI's shape; test models say so, and every model what it serves."""
    try:
        created = int(engine.spec.file.stat().st_mtime)
    except OSError:
        created = 0
    return {
        "id": engine.id,
        "object": "model",
        "created": created,
        "owned_by": "pinaivu-local",
        "context_length": engine.n_ctx,
        "test_model": engine.spec.test_model,
        # Ours, beside OpenAI's fields: the endpoints it serves (a chat model also embeds: mean pooling).
        "kind": engine.spec.kind,
        "capabilities": engine.spec.capabilities(),
    }


@get("/models", summary="List the active models", responses=error_responses(401))
async def list_models(pool: NamedDependency[ModelPool], fleet: NamedDependency[Fleet | None]) -> dict[str, Any]:
    """The ids to use verbatim as `model` (a gateway with nodes: those at least one node that is up serves)."""
    if fleet is not None:
        return {"object": "list", "data": fleet.model_objects()}
    return {"object": "list", "data": [model_object(pool.get(i)) for i in pool.ready_ids()]}


@get("/models/{model_id:str}", summary="Retrieve one active model", responses=error_responses(400, 401, 404, 503))
async def retrieve_model(
    pool: NamedDependency[ModelPool], fleet: NamedDependency[Fleet | None], model_id: FromPath[str]
) -> dict[str, Any]:
    """One model, or 404 model_not_found."""
    if fleet is not None:
        fleet.check_model(model_id)
        return next(m for m in fleet.model_objects() if m["id"] == model_id)
    return model_object(pool.get(model_id))
