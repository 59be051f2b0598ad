"""`serve --test-models`: structured output and forced calls that end, valid, well inside an ordinary budget.

Random weights never choose to stop; a test model ends each value as soon as its schema allows
(engine/closing.py). Every schema runs many times at temperature 1 from random seeds: one lucky pass
proves little.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.helpers import TEST_KEY, RunningServer, start_server

TRIES = 30
MAX_TOKENS = 300
CATALOG = Path(__file__).parents[2] / "models.toml"

ADDRESS = {
    "type": "object",
    "properties": {"street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
    "required": ["street", "zip"],
}
# pydantic's schemas, as clients send them: no additionalProperties, $defs, titles.
SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "title": "Person",
        "type": "object",
        "properties": {"name": {"title": "Name", "type": "string"}, "age": {"title": "Age", "type": "integer"}},
        "required": ["name", "age"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "owner": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/Address"}},
                "required": ["name", "address"],
            },
            "previous": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
        },
        "required": ["owner", "previous"],
        "$defs": {"Address": ADDRESS},
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "array", "items": {"type": "number"}, "minItems": 2},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}, "minItems": 1},
        },
        "required": ["tags", "scores", "matrix"],
    },
    "enums": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
            "kind": {"const": "fixed"},
            "level": {"type": "integer", "enum": [1, 2, 3]},
        },
        "required": ["color", "size", "kind", "level"],
    },
    "optional": {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "b": {"type": "integer"},
            "c": {"type": "boolean", "default": False},
        },
        "required": ["b"],
    },
    "unions": {
        "type": "object",
        "properties": {
            "v": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "integer"},
                    {"type": "null"},
                    {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
                ]
            },
            "w": {"type": ["string", "null"]},
            "o": {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "integer"}}]},
        },
        "required": ["v", "w", "o"],
    },
    "date_time": {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "time"},
        },
        "required": ["when", "day", "at"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "below": {"type": "integer", "maximum": -5},
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 2},
        },
        "required": ["i", "n", "b", "below", "ratio"],
    },
    "formats": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "uuid": {"type": "string", "format": "uuid"},
            "duration": {"type": "string", "format": "duration"},
            "host": {"type": "string", "format": "hostname"},
            "ip": {"type": "string", "format": "ipv4"},
        },
        "required": ["email", "uuid", "duration", "host", "ip"],
    },
    "recursive": {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["value", "children"],
            }
        },
    },
    "open": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
        "additionalProperties": True,
    },
    "list": {"type": "array", "items": {"$ref": "#/$defs/Address"}, "minItems": 2, "$defs": {"Address": ADDRESS}},
    "integer": {"type": "integer"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("test-models"), "--test-models", "--models-file", str(CATALOG))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=TEST_KEY, max_retries=0)


def check(schema: dict[str, Any], text: str) -> None:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(json.loads(text))


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_ends_valid(client: openai.OpenAI, name: str) -> None:
    schema = SCHEMAS[name]
    rng = random.Random(name)
    for attempt in range(TRIES):
        out = client.chat.completions.create(
            model=("llama3.2:1b", "llama3.2:3b")[attempt % 2],
            messages=[{"role": "user", "content": f"One {name}, please ({attempt})."}],
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
            temperature=1.0,
            seed=rng.randrange(2**31),
            max_tokens=MAX_TOKENS,
        )
        choice = out.choices[0]
        assert choice.finish_reason == "stop", (attempt, choice.message.content)
        check(schema, choice.message.content or "")


def test_json_object_ends(client: openai.OpenAI) -> None:
    for seed in range(TRIES):
        out = client.chat.completions.create(
            model="llama3.2:1b",
            messages=[{"role": "user", "content": "Any object."}],
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=seed,
            max_tokens=MAX_TOKENS,
        )
        assert out.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(out.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("choice", ["required", "named"])
def test_forced_calls_end_valid(client: openai.OpenAI, choice: str) -> None:
    """LangChain's and instructor's tools: nested models by reference, no additionalProperties."""
    tools: list[Any] = [
        {"type": "function", "function": {"name": name, "parameters": SCHEMAS[name]}}
        for name in ("person", "nested", "date_time")
    ]
    rng = random.Random(choice)
    for attempt in range(TRIES):
        name = ("person", "nested", "date_time")[attempt % 3]
        tool_choice: Any = "required" if choice == "required" else {"type": "function", "function": {"name": name}}
        out = client.chat.completions.create(
            model="llama3.2:1b",
            messages=[{"role": "user", "content": "Call something."}],
            tools=tools,
            tool_choice=tool_choice,
            temperature=1.0,
            seed=rng.randrange(2**31),
            max_tokens=MAX_TOKENS,
        )
        message = out.choices[0]
        assert message.finish_reason == "tool_calls", message.message
        calls = message.message.tool_calls or []
        assert len(calls) == 1
        called = calls[0].function.name
        assert choice == "required" or called == name
        check(SCHEMAS[called], calls[0].function.arguments)


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("seed", range(5))
def test_an_agent_loop_runs_offline(client: openai.OpenAI, seed: int) -> None:
    """tool_choice "auto": a call when the user spoke last, then text after the tool's result."""
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model="llama3.2:1b", messages=messages, tools=[WEATHER], temperature=1.0, seed=seed, max_tokens=MAX_TOKENS
    )
    assert first.choices[0].finish_reason == "tool_calls"
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather"
    check(WEATHER["function"]["parameters"], call.function.arguments)
    messages += [first.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "21 C, sunny"}]
    answer = client.chat.completions.create(
        model="llama3.2:1b", messages=messages, tools=[WEATHER], temperature=1.0, seed=seed, max_tokens=64
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_streamed_auto_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="llama3.2:3b",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],
        stream=True,
        max_tokens=MAX_TOKENS,
    )
    chunks = list(stream)
    arguments = "".join(
        call.function.arguments or ""
        for chunk in chunks
        if chunk.choices
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    check(WEATHER["function"]["parameters"], arguments)
