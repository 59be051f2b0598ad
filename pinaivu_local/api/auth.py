"""Who is calling: the seam the key store (issue: API keys) plugs into.

For now a single optional key from PINAIVU_API_KEY gates /v1; without one, every caller is let in.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from pinaivu_local.errors import AuthenticationError

KEY_PREFIX = "sk-pnv-"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    key_id: str
    name: str


class Authenticator(Protocol):
    """Turns an Authorization header into a Principal, or raises AuthenticationError."""

    def authenticate(self, authorization: str | None) -> Principal: ...


class OpenAuthenticator:
    """No key configured: everyone is the anonymous local user."""

    def authenticate(self, authorization: str | None) -> Principal:
        """Accept any caller."""
        return Principal(key_id="local", name="local")


class StaticKeyAuthenticator:
    """One key, compared in constant time."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def authenticate(self, authorization: str | None) -> Principal:
        """Accept exactly `Authorization: Bearer <the key>`."""
        token = bearer_token(authorization)
        if not hmac.compare_digest(token.encode(), self._key):
            raise AuthenticationError(
                "Incorrect API key provided. Check the key you set (PINAIVU_API_KEY on the server).",
                code="invalid_api_key",
            )
        return Principal(key_id="static", name="default")


def bearer_token(authorization: str | None) -> str:
    """The key of a `Bearer sk-pnv-...` header; AuthenticationError naming what is wrong."""
    if authorization is None or not authorization.strip():
        raise AuthenticationError(
            "You didn't provide an API key. Send it in the Authorization header: `Authorization: Bearer sk-pnv-...`.",
            code="missing_api_key",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "The Authorization header must use the Bearer scheme: `Authorization: Bearer sk-pnv-...`.",
            code="invalid_api_key",
        )
    if token != token.strip() or any(c.isspace() for c in token):
        raise AuthenticationError(
            "The API key contains whitespace or a line break; copy it again without spaces.", code="invalid_api_key"
        )
    if not token.startswith(KEY_PREFIX):
        raise AuthenticationError(
            f"The API key must start with `{KEY_PREFIX}`; check you are not sending another service's key.",
            code="invalid_api_key",
        )
    return token


def require_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: authenticate before validation, and remember who it was."""
    authenticator: Authenticator = connection.app.state.authenticator
    connection.state.principal = authenticator.authenticate(connection.headers.get("authorization"))
