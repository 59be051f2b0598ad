"""`tools`, `tool_choice` and `response_format`: validated, then turned into what the engine takes.

The engine gets plain data: the tools for the chat template and a grammar `Constraint`. `required`
and a named function force a call from the first token; `auto` lets the model write text or open
a call, whose arguments are then held to the tool's schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pinaivu_local.api.flow.tool_structure import CallMode, ToolSpec, call_structure
from pinaivu_local.api.flow.tool_structure import OutputStructure as OutputStructure
from pinaivu_local.api.flow.tool_structure import structure_digest as structure_digest
from pinaivu_local.engine.grammars import json_constraint
from pinaivu_local.engine.prepared import Constraint
from pinaivu_local.errors import InvalidRequest

_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class FunctionDefinition(_Strict):
    """A function the model may call; `parameters` is a JSON schema of its arguments object."""

    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # enforced either way: arguments always follow the schema


class Tool(_Strict):
    """One entry of `tools`."""

    type: Literal["function"]
    function: FunctionDefinition


class _NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    """`{"type": "function", "function": {"name": ...}}`: this function must be called."""

    type: Literal["function"]
    function: _NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class TextFormat(_Strict):
    """`{"type": "text"}`: free text (the default)."""

    type: Literal["text"]


class JsonObjectFormat(_Strict):
    """`{"type": "json_object"}`: one JSON object."""

    type: Literal["json_object"]


class JsonSchemaSpec(_Strict):
    """The `json_schema` of a structured-output request."""

    name: str = Field(pattern=_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None  # enforced either way


class JsonSchemaFormat(_Strict):
    """`{"type": "json_schema", "json_schema": {...}}`: JSON valid against the schema."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


# What output_structure accepts across fields, as JSON Schema for the OpenAPI document: a request is
# one of these. Tool names that repeat, or a named tool_choice not among the tools, are refused too;
# JSON Schema cannot say so.
_ASKS_NO_CALL = {"enum": ["none", "auto", None]}
_NO_TOOLS = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}
_TEXT_OUT = {"anyOf": [{"type": "null"}, {"properties": {"type": {"const": "text"}}}]}
STRUCTURE_RULE: dict[str, Any] = {
    "anyOf": [
        # No tools, and tool_choice asks for no call.
        {"properties": {"tool_choice": _ASKS_NO_CALL, "tools": _NO_TOOLS}},
        # tool_choice "none": the tools are not shown, any response_format.
        {"properties": {"tool_choice": {"const": "none"}}, "required": ["tool_choice"]},
        # tool_choice asks for no call, and the output is text.
        {"properties": {"tool_choice": _ASKS_NO_CALL, "response_format": _TEXT_OUT}},
        # Tools, and the output is text (or a call).
        {
            "properties": {"tools": {"type": "array", "minItems": 1}, "response_format": _TEXT_OUT},
            "required": ["tools"],
        },
    ]
}


def document_structure_rule(schema: dict[str, Any]) -> None:
    """`json_schema_extra` of a body with the structure fields: STRUCTURE_RULE joins its allOf."""
    schema["allOf"] = [*schema.get("allOf", []), STRUCTURE_RULE]


def output_structure(
    tools: list[Tool] | None, choice: ToolChoice | None, response_format: ResponseFormat | None
) -> OutputStructure:
    """The template tools and constraint for these fields; InvalidRequest naming what cannot be served."""
    specs = [ToolSpec(t.function.name, t.function.parameters, t.model_dump(exclude_none=True)) for t in tools or []]
    mode: CallMode = "named" if isinstance(choice, NamedToolChoice) else (choice or "auto")
    named = choice.function.name if isinstance(choice, NamedToolChoice) else None
    structure = call_structure(specs, mode, named)
    if structure is None:  # no call can be made: the output may follow response_format
        return OutputStructure(constraint=_format_constraint(response_format))
    if response_format is not None and not isinstance(response_format, TextFormat):
        raise InvalidRequest(
            "response_format cannot be combined with tools here: send one or the other "
            '(or tool_choice "none" to answer in the format without calling).',
            param="response_format",
        )
    return structure


def _format_constraint(response_format: ResponseFormat | None) -> Constraint | None:
    if isinstance(response_format, JsonObjectFormat):
        return json_constraint({"type": "object"}, param="response_format")
    if isinstance(response_format, JsonSchemaFormat):
        return json_constraint(response_format.json_schema.schema_, param="response_format")
    return None
