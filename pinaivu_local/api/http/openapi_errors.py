"""The error responses each route documents in the OpenAPI schema, in the shapes we really send."""

from __future__ import annotations

from litestar.openapi import ResponseSpec
from pydantic import BaseModel


class ErrorObject(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """Every error but a schema violation: `{"error": {...}}`."""

    error: ErrorObject


class ValidationItem(BaseModel):
    """One schema violation, v1-style as the reference documents it."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationDetail(BaseModel):
    """422: one entry per problem."""

    detail: list[ValidationItem]


_WHEN = {
    400: "Bad JSON, a parameter out of range, or a prompt that cannot fit the context",
    401: "No usable API key (missing, malformed, unknown, revoked, expired)",
    403: "The key may not do this (a model outside its list, or /admin without an admin key)",
    404: "No such model, key or request (for this key)",
    408: "The request body did not arrive in time (PINAIVU_BODY_TIMEOUT_S); the connection is closed",
    409: "The key is revoked and cannot be rotated",
    413: "The request body is larger than this endpoint accepts",
    422: "The body breaks the schema: one entry per problem",
    429: "The key's requests or tokens per minute are used up, or it has too many requests in flight "
    "(Retry-After says when)",
    500: "A failure of ours or of llama.cpp, for this request only",
    503: "No capacity now: queue full, engine restarting or storage failing (Retry-After says when)",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI responses for `codes`, each with the body we send for it."""
    return {
        code: ResponseSpec(
            data_container=ValidationDetail if code == 422 else ErrorEnvelope,
            description=_WHEN[code],
            generate_examples=False,
        )
        for code in codes
    }
