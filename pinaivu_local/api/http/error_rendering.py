"""The one place errors become HTTP responses: status by class, OpenAI's envelope (or Anthropic's, on the
routes whose handlers say so in their opt: ANTHROPIC_ERRORS)."""

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


# A route handler's opt that asks for Anthropic's error envelope (the Anthropic Messages routes).
ANTHROPIC_ERRORS = {"error_shape": "anthropic"}
# Anthropic's error type for each status we answer (it has no 422: a schema violation is its 400).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error_body(message: str, status: int) -> dict[str, Any]:
    """Anthropic's error envelope for an error of this HTTP status."""
    kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _anthropic_shaped(request: Request[Any, Any, Any]) -> bool:
    """Whether the request's route answers errors in Anthropic's envelope (no route: an unknown path, no)."""
    handler = request.scope.get("route_handler")
    return handler is not None and handler.opt.get("error_shape") == ANTHROPIC_ERRORS["error_shape"]


def validation_message(exc: errors.ValidationFailed) -> str:
    """Every schema violation in one sentence, each naming its field (`messages.0.content`), for Anthropic's 400."""
    return "; ".join(f"{'.'.join(map(str, d['loc'][1:])) or 'body'}: {d['msg']}" for d in exc.detail)


def status_of(exc: errors.PinaivuError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of one of our errors."""
    if isinstance(exc, errors.ValidationFailed):
        return 422, "invalid_request_error"
    return next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))


def render_pinaivu_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render one of our own errors."""
    assert isinstance(exc, errors.PinaivuError)
    anthropic = _anthropic_shaped(request)
    if isinstance(exc, errors.ValidationFailed):
        if anthropic:
            return Response(anthropic_error_body(validation_message(exc), 400), status_code=400)
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
    if anthropic:
        return Response(anthropic_error_body(exc.message, status), status_code=status, headers=headers)
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
        if _anthropic_shaped(request):
            body = anthropic_error_body(str(exc.detail), exc.status_code)
            return Response(body, status_code=exc.status_code)
        return Response(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code)
    return render_pinaivu_error(request, ours)


def _limit_of(request: Request[Any, Any, Any]) -> str:
    limit = request.route_handler.resolve_request_max_body_size()
    return f" ({limit} bytes at most)" if limit else ""


def render_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: log it with its traceback, answer a 500 without one."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    message = (
        "The server had an error while processing your request. Retry it; if it persists, "
        "report it with the server log."
    )
    body = anthropic_error_body(message, 500) if _anthropic_shaped(request) else error_body(message, "server_error")
    return Response(body, status_code=500)


EXCEPTION_HANDLERS = {
    errors.PinaivuError: render_pinaivu_error,
    HTTPException: render_http_exception,
    Exception: render_unexpected,
}
