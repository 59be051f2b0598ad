"""Litestar dependencies: how each service and the request's context reach a handler's signature.

A handler names what it uses, typed (`pool: ModelPool`), and Litestar hands it over; nothing
else reads the application's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from pinaivu_local.api.auth import Principal
from pinaivu_local.api.context import RequestContext, context_of
from pinaivu_local.api.inference import Inference
from pinaivu_local.api.metrics import Metrics
from pinaivu_local.api.replay import Replayer
from pinaivu_local.api.services import Services, services_in
from pinaivu_local.catalog import Catalog
from pinaivu_local.engine.model_pool import ModelPool
from pinaivu_local.keys.store import KeyStore
from pinaivu_local.receipts.identity import NodeIdentity
from pinaivu_local.requestlog.log import RequestLog


def _services(state: State) -> Services:
    return services_in(state)


def _catalog(services: Services) -> Catalog:
    return services.catalog


def _pool(services: Services) -> ModelPool:
    return services.pool


def _key_store(services: Services) -> KeyStore:
    return services.key_store


def _request_log(services: Services) -> RequestLog:
    return services.request_log


def _metrics(services: Services) -> Metrics:
    return services.metrics


def _inference(services: Services) -> Inference:
    return services.inference


def _replayer(services: Services) -> Replayer:
    return services.replayer


def _identity(services: Services) -> NodeIdentity:
    return services.identity


def _context(request: Request[Any, Any, Any]) -> RequestContext:
    return context_of(request.scope)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    return context_of(request.scope).caller()


_PROVIDERS: dict[str, Callable[..., Any]] = {
    "services": _services,
    "catalog": _catalog,
    "pool": _pool,
    "key_store": _key_store,
    "request_log": _request_log,
    "metrics": _metrics,
    "inference": _inference,
    "replayer": _replayer,
    "identity": _identity,
    "context": _context,
    "principal": _principal,
}
DEPENDENCIES = {name: Provide(provider, sync_to_thread=False) for name, provider in _PROVIDERS.items()}
