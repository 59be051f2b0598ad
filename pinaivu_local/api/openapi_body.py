"""Documents a raw-parsed JSON body in the OpenAPI schema.

Routes parse their bodies themselves (to answer 422 in the reference's shape), so Litestar cannot
see the model; an Operation subclass per model puts its JSON schema back into the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody
from pydantic import BaseModel


def json_body(model: type[BaseModel], headers: tuple[Parameter, ...] = ()) -> type[Operation]:
    """An Operation class whose request body is `model`'s JSON schema (refs inlined), with the request
    `headers` the route reads itself."""
    schema = _inline_refs(model.model_json_schema())

    @dataclass
    class WithJsonBody(Operation):
        def __post_init__(self) -> None:
            # to_schema() serialises plain dicts as they are, so the JSON schema goes in whole.
            media = OpenAPIMediaType(schema=schema)  # type: ignore[arg-type]
            self.request_body = RequestBody(content={"application/json": media}, required=True)
            if headers:
                self.parameters = [*(self.parameters or []), *headers]

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
