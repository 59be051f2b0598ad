"""The one place errors become HTTP responses: status by class, OpenAI's envelope."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.exceptions import MethodNotAllowedException as LitestarMethodNotAllowed
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from pinaivu_local import errors
from pinaivu_local.ratelimit.limits import retry_after_seconds

log = logging.getLogger(__name__)

# Most specific class first; the first match wins.
_STATUS: tuple[tuple[type[errors.PinaivuError], int, str], ...] = (
    (errors.InvalidRequest, 400, "invalid_request_error"),
    (errors.AuthenticationError, 401, "invalid_request_error"),
    (errors.PermissionDenied, 403, "invalid_request_error"),
    (errors.ModelNotFound, 404, "invalid_request_error"),
    (errors.KeyNotFound, 404, "invalid_request_error"),
    (errors.RequestNotFound, 404, "invalid_request_error"),
    (errors.KeyNotActive, 409, "invalid_request_error"),
    (errors.RouteNotFound, 404, "invalid_request_error"),
    (errors.MethodNotAllowed, 405, "invalid_request_error"),
    (errors.RequestTimeout, 408, "invalid_request_error"),
    (errors.PayloadTooLarge, 413, "invalid_request_error"),
    (errors.RateLimited, 429, "requests"),
    (errors.Unavailable, 503, "service_unavailable"),
    (errors.EngineFailure, 500, "server_error"),
    (errors.InternalError, 500, "server_error"),
)


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def status_of(exc: errors.PinaivuError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of one of our errors."""
    if isinstance(exc, errors.ValidationFailed):
        return 422, "invalid_request_error"
    return next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))


def render_pinaivu_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render one of our own errors."""
    assert isinstance(exc, errors.PinaivuError)
    if isinstance(exc, errors.ValidationFailed):
        return Response({"detail": exc.detail}, status_code=422)
    status, type_ = status_of(exc)
    headers = {}
    if isinstance(exc, errors.Unavailable):
        headers["retry-after"] = str(exc.retry_after)
    if isinstance(exc, errors.RequestTimeout | errors.PayloadTooLarge):
        headers["connection"] = "close"  # the rest of its body may still come: the socket is not reusable
    if isinstance(exc, errors.RateLimited):
        type_ = exc.limit_type  # OpenAI's 429s say which limit: "requests" or "tokens"
        headers["retry-after"] = str(retry_after_seconds(exc.retry_after_ms))
        headers["retry-after-ms"] = str(exc.retry_after_ms)
        if not exc.retryable:  # it can never fit: the openai SDK honours this and does not retry
            headers["x-should-retry"] = "false"
    return Response(error_body(exc.message, type_, param=exc.param, code=exc.code), status_code=status, headers=headers)


def render_http_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's own routing errors (unknown path, wrong method) in our envelope."""
    assert isinstance(exc, HTTPException)
    if isinstance(exc, NotFoundException):
        ours: errors.PinaivuError = errors.RouteNotFound(
            f"Unknown route {request.method} {request.url.path}. The API lives under /v1 "
            "(for example GET /v1/models, POST /v1/chat/completions)."
        )
    elif isinstance(exc, LitestarMethodNotAllowed):
        ours = errors.MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    elif isinstance(exc, NotAuthorizedException):
        ours = errors.AuthenticationError(str(exc.detail))
    elif isinstance(exc, PermissionDeniedException):
        ours = errors.PermissionDenied(str(exc.detail))
    elif isinstance(exc, RequestEntityTooLarge):
        ours = errors.PayloadTooLarge(
            f"The request body is larger than {request.method} {request.url.path} accepts"
            f"{_limit_of(request)}; send a smaller one."
        )
    else:
        return Response(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code)
    return render_pinaivu_error(request, ours)


def _limit_of(request: Request[Any, Any, Any]) -> str:
    limit = request.route_handler.resolve_request_max_body_size()
    return f" ({limit} bytes at most)" if limit else ""


def render_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: log it with its traceback, answer a 500 without one."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body(
        "The server had an error while processing your request. Retry it; if it persists, "
        "report it with the server log.",
        "server_error",
    )
    return Response(body, status_code=500)


EXCEPTION_HANDLERS = {
    errors.PinaivuError: render_pinaivu_error,
    HTTPException: render_http_exception,
    Exception: render_unexpected,
}
