"""create_app: the Litestar application, its routes, its dependencies and its lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig

from pinaivu_local import __version__
from pinaivu_local.api.anthropic.routes import count_tokens, create_message
from pinaivu_local.api.dependencies import DEPENDENCIES
from pinaivu_local.api.embeddings.routes import create_embeddings, rerank
from pinaivu_local.api.http.app_state import STATE_KEY
from pinaivu_local.api.http.body_deadline import body_deadline
from pinaivu_local.api.http.error_rendering import EXCEPTION_HANDLERS
from pinaivu_local.api.http.guards import require_admin, require_key
from pinaivu_local.api.http.observability import observability
from pinaivu_local.api.http.ratelimit_headers import ratelimit_headers
from pinaivu_local.api.openai.routes import chat_completions, completions
from pinaivu_local.api.responses.routes import create_response, delete_response, get_response, list_input_items
from pinaivu_local.api.routes.admin_keys import create_key, list_keys, revoke_key, rotate_key, show_key, update_key
from pinaivu_local.api.routes.admin_usage import usage
from pinaivu_local.api.routes.health import health, prometheus_metrics
from pinaivu_local.api.routes.models import list_models, retrieve_model
from pinaivu_local.api.routes.node import node_identity, verify_receipt
from pinaivu_local.api.routes.requests import get_request, list_requests, verify_request
from pinaivu_local.api.services import open_services
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.settings import Settings
from pinaivu_local.web.pages import dashboard_page, explorer_page, static_files

log = logging.getLogger(__name__)


def create_app(settings: Settings, catalog: Catalog) -> Litestar:
    """The application; its services are opened in its lifespan and closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        with open_services(settings, catalog) as services:
            app.state[STATE_KEY] = services
            if services.fleet is None:
                report_models(services.pool)
            try:
                async with services.fleet.running() if services.fleet else contextlib.nullcontext():
                    yield
            finally:
                del app.state[STATE_KEY]
                await services.limiter.close()

    v1 = Router(
        path="/v1",
        route_handlers=[
            list_models,
            retrieve_model,
            chat_completions,
            completions,
            create_embeddings,
            rerank,
            create_message,
            count_tokens,
            create_response,
            get_response,
            delete_response,
            list_input_items,
            get_request,
            list_requests,
            verify_request,
            verify_receipt,
        ],
        guards=[require_key],
    )
    admin = Router(
        path="/admin",
        route_handlers=[create_key, list_keys, show_key, update_key, revoke_key, rotate_key, usage],
        guards=[require_key, require_admin],
    )
    return Litestar(
        route_handlers=[
            v1,
            admin,
            node_identity,
            health,
            prometheus_metrics,
            explorer_page,
            dashboard_page,
            static_files(),
        ],
        dependencies=DEPENDENCIES,
        middleware=[observability, ratelimit_headers, body_deadline],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(title="pinaivu-local", version=__version__, path="/docs"),
        logging_config=None,
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
