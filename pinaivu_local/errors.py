"""The typed error hierarchy: raised where a problem starts, rendered in one place.

These classes know nothing about HTTP; `api.error_rendering` maps each class to a status.
"""

from __future__ import annotations

from typing import Any


class PinaivuError(Exception):
    """Base class: a message that tells the user what to do, an error code and a parameter."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(PinaivuError):
    """A settings value, catalog or CLI argument the server cannot start with."""

    code = "config_error"


class IdentityError(ConfigError):
    """The node's signing identity cannot be read or written (permissions, a damaged file)."""

    code = "identity_error"


class ModelFileError(PinaivuError):
    """A model file that is absent, not a GGUF, or that llama.cpp refuses."""

    code = "model_file_error"


class InvalidRequest(PinaivuError):
    """A request that is well-formed JSON but cannot be served as asked."""

    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    """A body that is not JSON."""

    code = "invalid_json"


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus completion budget do not fit the model's context."""

    code = "context_length_exceeded"


class ValidationFailed(PinaivuError):
    """Schema violations, one entry per problem, in the reference's `detail` shape."""

    code = "validation_error"

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail))
        self.detail = detail


class ModelNotFound(PinaivuError):
    """The model id matches no active model."""

    code = "model_not_found"


class KeyNotFound(PinaivuError):
    """No API key with that id."""

    code = "key_not_found"


class KeyNotActive(PinaivuError):
    """An operation that needs an active key, asked of a revoked one."""

    code = "key_revoked"


class RequestNotFound(PinaivuError):
    """No request with that id that the caller may see."""

    code = "request_not_found"


class ResponseNotFound(RequestNotFound):
    """No stored response with that id made by the caller's key (a 404 like a request's)."""

    code = "response_not_found"


class RateLimited(PinaivuError):
    """A per-key limit is reached; retry after `retry_after_ms`."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str, retry_after_ms: int, retryable: bool = True) -> None:
        super().__init__(message)
        self.limit_type = limit_type
        self.retry_after_ms = retry_after_ms
        self.retryable = retryable  # False: the request can never fit the limit


class RequestTimeout(PinaivuError):
    """The client did not send its whole request body in time; its connection is closed."""

    code = "request_timeout"


class PayloadTooLarge(PinaivuError):
    """A request body larger than its endpoint accepts."""

    code = "payload_too_large"


class RouteNotFound(PinaivuError):
    """No such endpoint."""

    code = "not_found"


class MethodNotAllowed(PinaivuError):
    """The endpoint exists but not for this HTTP method."""

    code = "method_not_allowed"


class AuthenticationError(PinaivuError):
    """No usable API key (missing, malformed, unknown)."""

    code = "invalid_api_key"


class PermissionDenied(PinaivuError):
    """A valid key that may not do this."""

    code = "permission_denied"


class Unavailable(PinaivuError):
    """The model cannot take the request now; retrying later may succeed."""

    code = "no_nodes_available"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(Unavailable):
    """The database cannot be read or written now (disk full, locked, I/O error): a 503, never a 500.

    The message is for clients, so it names no file; the path and the cause go to the server log.
    `reason` is the same cause in a few words, for /health.
    """

    code = "storage_unavailable"

    def __init__(self, message: str, *, reason: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason


class EngineFailure(PinaivuError):
    """llama.cpp failed while serving a request; the engine keeps serving others."""

    code = "engine_error"


class InternalError(PinaivuError):
    """A bug of ours caught before it could hurt anyone else: this request alone fails."""

    code = "internal_error"


class PullError(PinaivuError):
    """Model weights that could not be fetched, imported or verified."""

    code = "pull_error"


class OfflineRefused(PullError):
    """A download refused because the environment says we are offline (HF_HUB_OFFLINE)."""

    code = "offline"


class ChecksumMismatch(PullError):
    """Fetched bytes whose SHA-256 differs from the one expected."""

    code = "checksum_mismatch"


class BenchError(PinaivuError):
    """The benchmark cannot go on: a server would not start, or a stream failed."""

    code = "bench_error"
