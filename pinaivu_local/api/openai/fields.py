"""What OpenAI's request fields accept, as the validators check it and as the OpenAPI document says it."""

from __future__ import annotations

import re
from typing import Any

from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_STOPS = 4
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs, as OpenAI
MAX_LEGACY_LOGPROBS = 5  # /v1/completions' logprobs, OpenAI's legacy limit
TOKEN_ID = re.compile(r"[0-9]{1,9}")


def not_yet(what: str, field: str) -> PydanticCustomError:
    """The error for an OpenAI field we know but do not honour yet: refused, never ignored."""
    return PydanticCustomError(
        "value_error.unsupported", f"{what} is not supported by pinaivu-local yet; send the request without `{field}`"
    )


def empty(value: Any) -> bool:
    """Whether a field holds nothing asked for: null, [] or {}."""
    return value is None or value == [] or value == {}


# The OpenAPI document describes what the models' validators accept, not the loose types they take
# (`Any`), so that generated clients and fuzzers send bodies that get past validation. Each schema
# here says what its field's validator lets through; tests/api/test_openapi_bodies.py holds them
# to it.
NULL: dict[str, Any] = {"type": "null"}
NO_ITEMS: dict[str, Any] = {"type": "array", "maxItems": 0}
# What a field we know and do not honour accepts: nothing asked for (null, [] or {}).
NOTHING = [NULL, NO_ITEMS, {"type": "object", "maxProperties": 0}]
TOKEN_IDS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
TEXT_PART = {
    "type": "object",
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    "required": ["type", "text"],
}
ONLY_NULL = WithJsonSchema(NULL)
ONLY_EMPTY = WithJsonSchema({"anyOf": NOTHING})
EMPTY_LIST = WithJsonSchema({"anyOf": [NO_ITEMS, NULL]})
ONLY_ONE = WithJsonSchema({"anyOf": [{"type": "integer", "const": 1}, NULL]})
CONTENT = WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART}, NULL]})
STOP = WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOPS}, NULL]}
)
LOGIT_BIAS = WithJsonSchema(
    {
        "anyOf": [
            {
                "type": "object",
                "propertyNames": {"pattern": f"^{TOKEN_ID.pattern}$"},
                "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
            },
            NULL,
        ]
    }
)
PROMPT = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string"},
            TOKEN_IDS,
            {"type": "array", "items": {"anyOf": [{"type": "string"}, TOKEN_IDS]}, "minItems": 1, "maxItems": 1},
        ]
    }
)
