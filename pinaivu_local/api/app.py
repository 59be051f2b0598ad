"""create_app: the Litestar application, its routes and its lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from pinaivu_local import __version__
from pinaivu_local.api.auth import KeyAuthenticator, require_admin, require_key
from pinaivu_local.api.error_rendering import EXCEPTION_HANDLERS
from pinaivu_local.api.observability import observability
from pinaivu_local.api.ratelimit_headers import ratelimit_headers
from pinaivu_local.api.routes.admin_keys import create_key, list_keys, revoke_key, rotate_key, show_key, update_key
from pinaivu_local.api.routes.admin_usage import usage
from pinaivu_local.api.routes.completions import chat_completions, completions
from pinaivu_local.api.routes.health import health, metrics
from pinaivu_local.api.routes.models import list_models, retrieve_model
from pinaivu_local.api.routes.requests import get_request, list_requests, verify_request
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.devices import supports_gpu_offload
from pinaivu_local.engine.model_pool import EngineOptions, ModelPool
from pinaivu_local.engine.repack import decide_repack
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.metrics import Metrics
from pinaivu_local.ratelimit import Limits, RateLimiter
from pinaivu_local.requestlog.log import RequestLog, Retention
from pinaivu_local.requestlog.model_hashes import ModelHashes
from pinaivu_local.settings import Settings
from pinaivu_local.storage.database import Database
from pinaivu_local.web.pages import dashboard_page, explorer_page, static_files

log = logging.getLogger(__name__)


def create_app(settings: Settings, catalog: Catalog) -> Litestar:
    """The application; models are loaded in its lifespan and freed when it stops."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Each resource's close is registered as it opens; they run in reverse, also on errors.
        with contextlib.ExitStack() as resources:
            database = Database(settings.database)
            resources.callback(database.close)
            keys = KeyStore(database)
            hashes = ModelHashes(settings.data_dir / "model-hashes.json")
            retention = Retention(days=settings.log_retention_days, rows=settings.log_retention_rows)
            request_log = RequestLog(database, retention, hashes.get)
            resources.callback(request_log.close)
            repack = decide_repack(settings.weight_repack, settings.data_dir)
            offload = supports_gpu_offload()
            warn_without_offload(settings, catalog, offload)
            options = EngineOptions(
                settings.effective_threads(), settings.max_queue, repack, offload, settings.n_gpu_layers
            )
            pool = ModelPool(catalog, options)
            resources.callback(pool.close)  # first to run: streams end, their records are still written
            pool.open()
            hashes.start([spec.file for spec in catalog.models if spec.id in pool.ready_ids()])
            defaults = Limits(rpm=settings.default_rpm, tpm=settings.default_tpm)
            app.state.update(
                {
                    "pool": pool,
                    "key_store": keys,
                    "authenticator": KeyAuthenticator(keys, defaults),
                    "request_log": request_log,
                    "model_hashes": hashes,
                }
            )
            app.state.metrics.watch_models(pool.statuses)
            report_models(pool)
            yield

    v1 = Router(
        path="/v1",
        route_handlers=[
            list_models,
            retrieve_model,
            chat_completions,
            completions,
            get_request,
            list_requests,
            verify_request,
        ],
        guards=[require_key],
    )
    admin = Router(
        path="/admin",
        route_handlers=[create_key, list_keys, show_key, update_key, revoke_key, rotate_key, usage],
        guards=[require_key, require_admin],
    )
    return Litestar(
        route_handlers=[v1, admin, health, metrics, explorer_page, dashboard_page, static_files()],
        middleware=[observability, ratelimit_headers],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        state=State(
            {
                "settings": settings,
                "catalog": catalog,
                "limiter": RateLimiter(window_s=settings.ratelimit_window_s),
                "metrics": Metrics(),
            }
        ),
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
