"""JSON schemas as the grammars read them: objects closed unless they say otherwise, tools' $defs at the root,
dates and times as parsers read them."""

from __future__ import annotations

import datetime
import re

import pydantic
import pytest
from llguidance import LLMatcher

from pinaivu_local.engine.grammars import (
    closed_objects,
    json_constraint,
    parseable_times,
    tool_call_constraint,
    tool_call_schema,
)

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


@pytest.mark.parametrize(
    ("value", "parseable"),
    [
        ("2026-12-06T14:19:50Z", True),
        ("2026-12-06T14:19:50.123456+01:00", True),
        ("2026-12-06t14:19:50z", False),  # RFC 3339 allows it; pydantic refuses it
        ("2026-12-06T14:19:60Z", False),  # a leap second
        ("0000-01-01T00:00:00Z", False),  # no year 0 in Python
        ("2025-02-29T00:00:00Z", False),
        ("2026-12-06T14:19:50.1234567Z", False),
    ],
)
def test_date_times_are_held_to_what_parsers_read(value: str, parseable: bool) -> None:
    schema = parseable_times({"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}}})
    at = schema["properties"]["at"]
    assert at["format"] == "date-time"  # kept: the pattern narrows it
    assert bool(re.fullmatch(at["pattern"].strip("^$"), value)) == parseable
    if parseable:
        pydantic.TypeAdapter(datetime.datetime).validate_python(value)


def test_a_time_format_with_its_own_pattern_keeps_it() -> None:
    schema = {"type": "string", "format": "date", "pattern": "^2026"}
    assert parseable_times(schema) == schema
    assert parseable_times({"type": "string", "format": "time"})["pattern"].startswith("^([01]")
