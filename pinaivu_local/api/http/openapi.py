"""The OpenAPI document as the server really behaves: request bodies as validated, errors as sent.

Routes parse their bodies themselves (to answer 422 in the reference's shape), so Litestar cannot
see the model; an Operation subclass per model puts its JSON schema back into the document. The
schema is the model's own, which describes what its validators accept (see api/openai/protocol.py).
Each route also lists its error responses, in the shapes error_rendering.py sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Parameter, RequestBody
from pydantic import BaseModel

# What a body with `stream: true` gets instead of one JSON document: server-sent events, which the
# schema of an OpenAPI 3.1 event stream describes one at a time (as schemathesis reads them).
EVENT_STREAM = "text/event-stream"
_EVENTS = OpenAPIMediaType(
    schema={  # type: ignore[arg-type]
        "type": "object",
        "properties": {
            "data": {"type": "string", "description": "a chunk (a JSON object); the last event's is [DONE]"}
        },
        "required": ["data"],
    }
)


def json_body(model: type[BaseModel], headers: tuple[Parameter, ...] = ()) -> type[Operation]:
    """An Operation class whose request body is `model`'s JSON schema (refs inlined), with the request
    `headers` the route reads itself. A model with a `stream` field may also answer 200 as an event stream."""
    schema = _inline_refs(model.model_json_schema())
    streams = "stream" in model.model_fields

    @dataclass
    class WithJsonBody(Operation):
        def __post_init__(self) -> None:
            # to_schema() serialises plain dicts as they are, so the JSON schema goes in whole.
            media = OpenAPIMediaType(schema=schema)  # type: ignore[arg-type]
            self.request_body = RequestBody(content={"application/json": media}, required=True)
            if headers:
                self.parameters = [*(self.parameters or []), *headers]
            ok = (self.responses or {}).get("200")
            if streams and isinstance(ok, OpenAPIResponse):
                ok.content = {**(ok.content or {}), EVENT_STREAM: _EVENTS}

    WithJsonBody.__name__ = f"{model.__name__}Operation"
    return WithJsonBody


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace `#/$defs/X` references by the definitions: they would not resolve inside OpenAPI."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


class ErrorObject(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """Every error but a schema violation: `{"error": {...}}`."""

    error: ErrorObject


class AnthropicErrorObject(BaseModel):
    """Anthropic's error object: its type names the class of error (`not_found_error`, ...)."""

    type: str
    message: str


class AnthropicErrorEnvelope(BaseModel):
    """Every error on a route that answers in Anthropic's envelope: `{"type": "error", "error": {...}}`."""

    type: str
    error: AnthropicErrorObject


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
_ANTHROPIC_400 = _WHEN[400] + "; or a body that breaks the schema (each field named in the message)"


def error_responses(*codes: int, anthropic: bool = False) -> dict[int, ResponseSpec]:
    """OpenAPI responses for `codes`, each with the body we send for it (in Anthropic's envelope where the
    route answers in it: error_rendering.ANTHROPIC_ERRORS; it has no 422, a schema violation is its 400)."""
    return {
        code: ResponseSpec(
            data_container=_envelope(code, anthropic),
            description=_ANTHROPIC_400 if anthropic and code == 400 else _WHEN[code],
            generate_examples=False,
        )
        for code in codes
    }


def _envelope(code: int, anthropic: bool) -> type[BaseModel]:
    if anthropic:
        return AnthropicErrorEnvelope
    return ValidationDetail if code == 422 else ErrorEnvelope
