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
    return Constraint(_schema_grammar(parseable_times(closed_objects(schema)), param), param=param)


def tool_call_schema(tools: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Llama 3's call object, `{"name": ..., "parameters": {...}}`, for any of `tools` (name, parameters).

    Each tool's parameters move under the call's `parameters`: their own definitions (`$defs`, any
    nested pydantic model) are hoisted to the call schema's root, renamed per tool, and their
    references rewritten, or `#/$defs/Address` would point at nothing.
    """
    definitions: dict[str, Any] = {}
    options = []
    for index, (name, parameters) in enumerate(tools):
        reference, hoisted = _hoisted(parseable_times(closed_objects(parameters)), f"tool{index}_")
        definitions.update(hoisted)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": name}, "parameters": reference},
                "required": ["name", "parameters"],
                "additionalProperties": False,
            }
        )
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": definitions} if definitions else schema


# Keywords whose value is a map of names to schemas, one schema, or a list of schemas.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems", "allOf")


def closed_objects(schema: Any, *, in_all_of: bool = False) -> Any:
    """`schema` with every object that lists its `properties` and says nothing of others closed to them.

    OpenAI's strict mode requires `additionalProperties: false`, and xgrammar (vLLM's default) reads a
    schema without it so: a schema that names its properties means those. Left open, a model may invent
    keys that never close (a random-weight one always does). Not applied inside `allOf`, whose members
    each see only part of the properties.
    """
    if not isinstance(schema, dict):
        return schema
    closed = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(closed.get(key), dict):
            closed[key] = {name: closed_objects(sub) for name, sub in closed[key].items()}
    for key in _SCHEMA_ONE:
        if isinstance(closed.get(key), dict):
            closed[key] = closed_objects(closed[key])
        elif key == "items" and isinstance(closed.get(key), list):
            closed[key] = [closed_objects(sub) for sub in closed[key]]
    for key in _SCHEMA_LISTS:
        if isinstance(closed.get(key), list):
            closed[key] = [closed_objects(sub, in_all_of=key == "allOf") for sub in closed[key]]
    opened_elsewhere = {"additionalProperties", "patternProperties", "unevaluatedProperties", "allOf"} & closed.keys()
    if isinstance(closed.get("properties"), dict) and not opened_elsewhere and not in_all_of:
        closed["additionalProperties"] = False
    return closed


# Dates and times as pydantic, Python's datetime and JavaScript's Date read them, within RFC 3339 (which
# `format` alone allows): a year from 0001, February to the 28th, `T` and `Z` in capitals, seconds to 59
# (no leap second), at most 6 digits of a second. Intersected with the format: both hold.
_DATE = (
    r"(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
    r"-((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
)
_TIME = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"
_TIME_PATTERNS = {"date-time": f"^{_DATE}T{_TIME}$", "date": f"^{_DATE}$", "time": f"^{_TIME}$"}


def parseable_times(schema: Any) -> Any:
    """`schema` with every `date-time`, `date` and `time` string (that has no pattern of its own) held to what
    common parsers read: RFC 3339 allows `t`, `z` and a 60th second, which pydantic refuses (a random model
    wrote them)."""
    if isinstance(schema, list):
        return [parseable_times(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: parseable_times(sub) for name, sub in value.items()}
        elif key in _SCHEMA_ONE or key in _SCHEMA_LISTS:
            out[key] = parseable_times(value)
        else:
            out[key] = value
    form = out.get("format")
    pattern = _TIME_PATTERNS.get(form) if isinstance(form, str) else None
    if pattern and "pattern" not in out:
        out["pattern"] = pattern
    return out


def _hoisted(parameters: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tool's parameters as a reference to a root definition, and the definitions to hoist (renamed)."""
    inner = {key: value for key, value in parameters.items() if key not in ("$defs", "definitions")}
    definitions = {
        f"{prefix}{name}": body
        for key in ("$defs", "definitions")
        for name, body in (parameters.get(key) or {}).items()
    }
    if not definitions and not _refers_to_root(inner):
        return inner, {}
    definitions[f"{prefix}root"] = inner
    rewritten = {name: _rerooted(body, prefix) for name, body in definitions.items()}
    return {"$ref": f"#/$defs/{prefix}root"}, rewritten


def _rerooted(node: Any, prefix: str) -> Any:
    """`node` with its local references renamed: `#` to the tool's root, `#/$defs/X` to `#/$defs/<prefix>X`."""
    if isinstance(node, list):
        return [_rerooted(item, prefix) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rerooted(value, prefix) for key, value in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref == "#":
            out["$ref"] = f"#/$defs/{prefix}root"
        for local in ("#/$defs/", "#/definitions/"):
            if ref.startswith(local):
                out["$ref"] = f"#/$defs/{prefix}{ref[len(local) :]}"
    return out


def _refers_to_root(node: Any) -> bool:
    """Whether a schema refers to its own root (`"$ref": "#"`, a recursive model)."""
    if isinstance(node, list):
        return any(_refers_to_root(item) for item in node)
    if isinstance(node, dict):
        return node.get("$ref") == "#" or any(_refers_to_root(value) for value in node.values())
    return False


def tool_call_constraint(tools: list[tuple[str, dict[str, Any]]], *, lazy: bool) -> Constraint:
    """One call to one of `tools`: forced from the first token, or (lazy) once the model opens one."""
    schema = tool_call_schema(tools)
    forced = _schema_grammar(schema, "tools")
    if not lazy:
        return Constraint(forced, param="tools")
    # The opening's first token may carry a few blanks before the brace (" {"); never more than that,
    # or a model could spend its budget on whitespace.
    lark = f"start: /[ \\t\\n]{{0,8}}/ call\ncall: %json {json.dumps(_styled(schema))}\n"
    return Constraint(
        LLMatcher.grammar_from_lark(lark),
        wake_tokens=(PYTHON_TAG,),
        wake_text='{"name"',
        param="tools",
        auto_call=forced,
    )


def _styled(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-guidance": _JSON_STYLE}


def _schema_grammar(schema: dict[str, Any], param: str) -> str:
    try:
        return LLMatcher.grammar_from_json_schema(schema, overrides=_JSON_STYLE)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: the JSON schema is not valid ({exc}).", param=param) from None
