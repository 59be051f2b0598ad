"""JSON schemas as the grammars read them: objects closed unless they say otherwise, tools' $defs at the root."""

from __future__ import annotations

from llguidance import LLMatcher

from pinaivu_local.engine.grammars import closed_objects, json_constraint, tool_call_constraint, tool_call_schema

ADDRESS = {"type": "object", "properties": {"city": {"type": "string"}}}
ORDER = {
    "type": "object",
    "properties": {"address": {"$ref": "#/$defs/Address"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
    "required": ["address"],
    "$defs": {"Address": ADDRESS},
}


def test_an_object_that_names_its_properties_has_only_those() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": {"a": {"type": "integer"}}},  # a field so named
            "list": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}},
            "either": {"anyOf": [{"type": "object", "properties": {"c": {}}}, {"type": "null"}]},
            "open": {"type": "object", "properties": {"d": {}}, "additionalProperties": True},
            "typed": {"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}},
            "free": {"type": "object"},
        },
        "$defs": {"X": {"type": "object", "properties": {"e": {}}}},
    }
    closed = closed_objects(schema)
    props = closed["properties"]
    assert closed["additionalProperties"] is False
    assert props["properties"]["additionalProperties"] is False and set(props["properties"]) == {
        "type",
        "properties",
        "additionalProperties",
    }
    assert props["list"]["items"]["additionalProperties"] is False
    assert props["either"]["anyOf"][0]["additionalProperties"] is False
    assert props["open"]["additionalProperties"] is True  # what a schema says is kept
    assert props["typed"]["additionalProperties"] == {"type": "integer"}
    assert "additionalProperties" not in props["free"]  # names no properties: any object
    assert closed["$defs"]["X"]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the schema given is not changed


def test_all_of_members_stay_open() -> None:
    """Each member of an allOf sees part of the properties: closing them would refuse every instance."""
    schema = {"allOf": [{"type": "object", "properties": {"a": {}}}, {"type": "object", "properties": {"b": {}}}]}
    assert all("additionalProperties" not in member for member in closed_objects(schema)["allOf"])


def test_a_tools_definitions_move_to_the_calls_root_renamed_per_tool() -> None:
    schema = tool_call_schema([("order", ORDER), ("again", ORDER)])
    assert set(schema["$defs"]) == {"tool0_Address", "tool0_root", "tool1_Address", "tool1_root"}
    first = schema["anyOf"][0]["properties"]["parameters"]
    assert first == {"$ref": "#/$defs/tool0_root"}
    root = schema["$defs"]["tool0_root"]
    assert root["properties"]["address"] == {"$ref": "#/$defs/tool0_Address"}
    assert root["properties"]["next"]["anyOf"][0] == {"$ref": "#/$defs/tool0_root"}  # "#" was the tool's root
    assert schema["$defs"]["tool1_root"]["properties"]["address"] == {"$ref": "#/$defs/tool1_Address"}


def test_nested_tools_compile_in_every_mode() -> None:
    """They were refused whatever tool_choice asked: "Pointer '/$defs/Address' does not exist"."""
    for lazy in (False, True):
        assert LLMatcher.validate_grammar(tool_call_constraint([("order", ORDER)], lazy=lazy).grammar) == ""
    assert LLMatcher.validate_grammar(json_constraint(ORDER, param="response_format").grammar) == ""


def test_a_tool_without_definitions_is_left_in_place() -> None:
    schema = tool_call_schema([("plain", {"type": "object", "properties": {"a": {"type": "integer"}}})])
    assert "$defs" not in schema
    assert schema["properties"]["parameters"]["additionalProperties"] is False
