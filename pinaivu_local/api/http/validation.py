"""Parses a raw JSON body into a request model; errors in the reference's 422 `detail` shape."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from pinaivu_local.errors import InvalidJSON, ValidationFailed

BodyT = TypeVar("BodyT", bound=BaseModel)
T = TypeVar("T")


class StrictBody(BaseModel):
    """Base of every request body."""

    # strict: "0.5" is not a number and 1 is not true, as in OpenAI's API. A field we do not know is
    # refused by name (OpenAI too refuses unrecognized arguments): a typo must not be silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid")


# pydantic v2 error type -> (message, v1-style type) as the reference documents them.
_V1: dict[str, tuple[str, str]] = {
    "missing": ("field required", "value_error.missing"),
    "float_type": ("value is not a valid float", "type_error.float"),
    "float_parsing": ("value is not a valid float", "type_error.float"),
    "int_type": ("value is not a valid integer", "type_error.integer"),
    "int_parsing": ("value is not a valid integer", "type_error.integer"),
    "int_from_float": ("value is not a valid integer", "type_error.integer"),
    "string_type": ("str type expected", "type_error.str"),
    "bool_type": ("value is not a valid boolean", "type_error.bool"),
    "list_type": ("value is not a valid list", "type_error.list"),
    "dict_type": ("value is not a valid dict", "type_error.dict"),
    "model_type": ("value is not a valid dict", "type_error.dict"),
    "model_attributes_type": ("value is not a valid dict", "type_error.dict"),
    "extra_forbidden": ("extra fields not permitted", "value_error.extra"),
}
_BOUNDS = {
    "greater_than_equal": ("greater than or equal to", "ge", "not_ge"),
    "less_than_equal": ("less than or equal to", "le", "not_le"),
    "greater_than": ("greater than", "gt", "not_gt"),
    "less_than": ("less than", "lt", "not_lt"),
}


# Bigger bodies are parsed on a worker thread: megabytes of JSON would hold up everyone else.
OFF_LOOP_BYTES = 64 * 1024


async def read_body(request: Request[Any, Any, Any], model: type[BodyT]) -> BodyT:
    """The request's body validated as `model`, parsed off the event loop when it is large."""
    raw = await request.body()
    return await in_proportion(len(raw), functools.partial(parse_body, raw, model))


async def in_proportion(size: int, work: Callable[[], T], *, costly: bool = False) -> T:
    """`work`, whose cost grows with a body of `size` bytes: here while the body is small and the work
    not `costly` (schemas to compile), else on a worker thread, so that nobody else waits for it."""
    if size > OFF_LOOP_BYTES or costly:
        return await asyncio.to_thread(work)
    return work()


def parse_body(raw: bytes, model: type[BodyT]) -> BodyT:
    """Validate `raw` as `model`; InvalidJSON for bad JSON, ValidationFailed for schema errors."""
    if not raw.strip():
        raise InvalidJSON("The request body is empty; send a JSON object (Content-Type: application/json).")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise InvalidJSON(
                "We could not parse the JSON body of your request. Send a JSON object (Content-Type: application/json)."
            ) from None
        raise ValidationFailed([_entry(e) for e in errors]) from None


def _entry(error: ErrorDetails) -> dict[str, Any]:
    """One pydantic v2 error as a v1-style {loc, msg, type} entry."""
    loc = ["body", *error["loc"]]
    kind = error["type"]
    if kind in _V1:
        msg, v1_type = _V1[kind]
    elif kind in _BOUNDS:
        words, key, suffix = _BOUNDS[kind]
        limit = (error.get("ctx") or {}).get(key)
        shown = f"{limit:g}" if isinstance(limit, float) else limit
        msg, v1_type = f"ensure this value is {words} {shown}", f"value_error.number.{suffix}"
    elif kind == "too_short":
        limit = (error.get("ctx") or {}).get("min_length")
        msg, v1_type = f"ensure this value has at least {limit} items", "value_error.list.min_items"
    elif kind == "string_too_short":
        limit = (error.get("ctx") or {}).get("min_length")
        msg, v1_type = f"ensure this value has at least {limit} characters", "value_error.any_str.min_length"
    elif kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected")
        msg, v1_type = f"unexpected value; permitted: {expected}", "value_error.const"
    else:  # our own PydanticCustomError types are already v1-style
        msg, v1_type = error["msg"], kind
    return {"loc": loc, "msg": msg, "type": v1_type}
