"""Litestar guards: who may reach a route, checked before its body is read."""

from __future__ import annotations

import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from pinaivu_local.api.http.app_state import plumbing_of
from pinaivu_local.api.http.context import context_of
from pinaivu_local.errors import PermissionDenied

# Both guards are coroutines: Litestar runs a plain function guard on a worker thread, a hop per request.


async def require_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Authenticate (Authorization, else x-api-key) before validation, remember the caller in the request's
    context, count it in flight.

    The observability middleware releases its place in flight when the response has ended.
    """
    services = plumbing_of(connection.app)
    headers = connection.headers
    principal = await services.authenticator.authenticate_async(headers.get("authorization"), headers.get("x-api-key"))
    context = context_of(connection.scope)
    context.principal = principal
    context.authenticated_ns = time.time_ns()
    context.in_flight = services.in_flight.enter(principal.key_id, principal.name)


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """After require_key: admin keys only."""
    principal = context_of(connection.scope).caller()
    if not principal.admin:
        raise PermissionDenied(
            f"This API key ({principal.name!r}) is not an admin key; /admin needs one "
            "(create it with `pinaivu-local keys create --admin`)."
        )
