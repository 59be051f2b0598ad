"""Grammars (llguidance's text) for structured output and tool calls; the model compiles and checks them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llguidance import LLMatcher

from pinaivu_local.engine.prepared import Constraint
from pinaivu_local.errors import InvalidRequest

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

# JSON as people and Llama models write it: `{"a": 1, "b": 2}`, no other whitespace. A random
# model given free whitespace can spend its whole budget on it.
_JSON_STYLE: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# Llama 3.x opens a tool call with <|python_tag|> or directly with the JSON object.
PYTHON_TAG = "<|python_tag|>"


def json_constraint(schema: dict[str, Any], *, param: str) -> Constraint:
    """Output that is one JSON value valid against `schema`, from the first token."""
    return Constraint(_schema_grammar(schema, param), param=param)


def tool_call_schema(tools: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Llama 3's call object, `{"name": ..., "parameters": {...}}`, for any of `tools` (name, parameters)."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "parameters": parameters},
            "required": ["name", "parameters"],
            "additionalProperties": False,
        }
        for name, parameters in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_call_constraint(tools: list[tuple[str, dict[str, Any]]], *, lazy: bool) -> Constraint:
    """One call to one of `tools`: forced from the first token, or (lazy) once the model opens one."""
    schema = tool_call_schema(tools)
    if not lazy:
        return Constraint(_schema_grammar(schema, "tools"), param="tools")
    # The opening's first token may carry a few blanks before the brace (" {"); never more than that,
    # or a model could spend its budget on whitespace.
    lark = f"start: /[ \\t\\n]{{0,8}}/ call\ncall: %json {json.dumps(_styled(schema))}\n"
    return Constraint(LLMatcher.grammar_from_lark(lark), wake_tokens=(PYTHON_TAG,), wake_text='{"name"', param="tools")


def _styled(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-guidance": _JSON_STYLE}


def _schema_grammar(schema: dict[str, Any], param: str) -> str:
    try:
        return LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_STYLE)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: the JSON schema is not valid ({exc}).", param=param) from None
