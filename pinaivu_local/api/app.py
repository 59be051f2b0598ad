"""create_app: the Litestar application, its routes and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from pinaivu_local import __version__
from pinaivu_local.api.auth import Authenticator, OpenAuthenticator, StaticKeyAuthenticator, require_key
from pinaivu_local.api.error_rendering import EXCEPTION_HANDLERS
from pinaivu_local.api.routes.completions import chat_completions, completions
from pinaivu_local.api.routes.health import health
from pinaivu_local.api.routes.models import list_models, retrieve_model
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.devices import supports_gpu_offload
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.engine.repack import decide_repack
from pinaivu_local.settings import Settings

log = logging.getLogger(__name__)


def build_authenticator(settings: Settings) -> Authenticator:
    """PINAIVU_API_KEY gates /v1 when set; the key store replaces this later."""
    if settings.api_key is not None:
        return StaticKeyAuthenticator(settings.api_key.get_secret_value())
    return OpenAuthenticator()


def create_app(settings: Settings, catalog: Catalog) -> Litestar:
    """The application; models are loaded in its lifespan and freed when it stops."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        repack = decide_repack(settings.weight_repack, settings.data_dir)
        offload = supports_gpu_offload()
        warn_without_offload(settings, catalog, offload)
        options = EngineOptions(
            settings.effective_threads(), settings.max_queue, repack, offload, settings.n_gpu_layers
        )
        pool = ModelPool(catalog, options)
        pool.open()
        app.state.pool = pool
        try:
            report_models(pool)
            yield
        finally:
            pool.close()

    v1 = Router(
        path="/v1",
        route_handlers=[list_models, retrieve_model, chat_completions, completions],
        guards=[require_key],
    )
    return Litestar(
        route_handlers=[v1, health],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State({"authenticator": build_authenticator(settings), "settings": settings}),
        openapi_config=OpenAPIConfig(title="pinaivu-local", version=__version__, path="/docs"),
        logging_config=None,
    )


def warn_without_offload(settings: Settings, catalog: Catalog, offload: bool) -> None:
    """One line, not an error, when GPU layers are asked of a build that cannot offload."""
    override = settings.n_gpu_layers
    wanted = [override if override is not None else m.n_gpu_layers for m in catalog.models]
    if not offload and any(wanted):
        log.warning(
            "this llama.cpp build has no GPU offload: models run on the CPU (rebuild with `make install GPU=cuda` "
            "or `GPU=metal` to use a GPU; PINAIVU_N_GPU_LAYERS=0 silences this)"
        )


def report_models(pool: ModelPool) -> None:
    """Say at start-up what is served, and how to get what is not."""
    statuses = pool.statuses()
    for s in statuses:
        if s.state == "ready":
            log.info("serving %s%s (%s)", s.id, " [test model]" if s.test_model else "", s.detail)
        elif s.fetch_command:
            log.warning(
                "%s unavailable: weights not found at %s. Fetch them with:\n    %s", s.id, s.file, s.fetch_command
            )
        else:
            log.warning("%s unavailable: %s", s.id, s.detail)
    if not any(s.state == "ready" for s in statuses):
        log.warning(
            "No model can serve requests yet. Fetch the weights with the commands above, or run "
            "`pinaivu-local serve --test-models` for tiny offline test models with the full API."
        )
