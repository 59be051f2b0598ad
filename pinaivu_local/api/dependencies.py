"""Litestar dependencies: how each service and the request's context reach a handler's signature.

A handler names what it uses, typed and marked (`pool: NamedDependency[ModelPool]`), and Litestar
hands it over; nothing else reads the application's state. Every field of Services is a dependency
of the same name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from pinaivu_local.api.flow.principal import Principal
from pinaivu_local.api.http.context import RequestContext, context_of
from pinaivu_local.api.services import Services, services_in


def _services(state: State) -> Services:
    return services_in(state)


def _field_of_services(name: str) -> Callable[..., Any]:
    """A provider of the Services field `name`."""

    def provide(services: NamedDependency[Services]) -> Any:
        return getattr(services, name)

    return provide


def _context(request: Request[Any, Any, Any]) -> RequestContext:
    return context_of(request.scope)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    return context_of(request.scope).caller()


_PROVIDERS: dict[str, Callable[..., Any]] = {
    "services": _services,
    **{field.name: _field_of_services(field.name) for field in dataclasses.fields(Services)},
    "context": _context,
    "principal": _principal,
}
DEPENDENCIES = {name: Provide(provider, sync_to_thread=False) for name, provider in _PROVIDERS.items()}
