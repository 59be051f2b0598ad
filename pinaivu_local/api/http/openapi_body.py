"""Documents a raw-parsed JSON body in the OpenAPI schema.

Routes parse their bodies themselves (to answer 422 in the reference's shape), so Litestar cannot
see the model; an Operation subclass per model puts its JSON schema back into the document. The
schema is the model's own, which describes what its validators accept (see api/openai/protocol.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
