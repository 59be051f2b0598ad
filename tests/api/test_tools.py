"""Tool calling and structured outputs over real HTTP with the real openai client, on random-weight models.

The tiny models write nonsense, so every valid call and every valid JSON here is the constraint's doing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest

from tests.helpers import AUTH, RunningServer, TinyModels, start_tool_server

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_PARAMETERS},
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "boolean"}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    },
]
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """Both ids on the tiny models, with room for tools (start_tool_server)."""
    workdir = tmp_path_factory.mktemp("tools-server")
    running = start_tool_server(workdir, tiny_models)
    yield running
    running.stop()


def _check_call(call: Any) -> dict[str, Any]:
    assert call.id.startswith("call_") and call.type == "function"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMETERS[call.function.name])
    return arguments


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_forces_a_valid_call(client: openai.OpenAI, seed: int) -> None:
    out = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, tools=TOOLS, tool_choice="required", seed=seed, max_tokens=200
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    _check_call(choice.message.tool_calls[0])


def test_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="llama3.2:3b",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        temperature=0,
        max_tokens=200,
    )
    calls = out.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "add"
    assert set(_check_call(calls[0])) == {"a", "b"}


def test_streamed_call_reassembles_in_the_sdk(client: openai.OpenAI) -> None:
    with client.beta.chat.completions.stream(
        model="llama3.2:1b", messages=MESSAGES, tools=TOOLS, tool_choice="required", seed=5, max_tokens=200
    ) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content is None or message.content == ""
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    _check_call(message.tool_calls[0])
    fragments = [c for c in chunks if c.type == "tool_calls.function.arguments.delta"]
    assert len(fragments) > 1  # the arguments arrive in pieces
    assert not any(c.type == "content.delta" and c.delta for c in chunks)  # no call text as content


def test_stream_chunks_carry_index_id_then_arguments(server: RunningServer) -> None:
    body = {
        "model": "llama3.2:1b",
        "messages": MESSAGES,
        "tools": TOOLS,
        "tool_choice": "required",
        "seed": 9,
        "max_tokens": 200,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if d.get("tool_calls")]
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert calls[0]["function"]["arguments"] == ""
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    arguments = "".join(c["function"]["arguments"] for c in calls)
    jsonschema.validate(json.loads(arguments), PARAMETERS[calls[0]["function"]["name"]])
    assert not any(d.get("content") for d in deltas)
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_result_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, tools=TOOLS, tool_choice="required", seed=4, max_tokens=200
    )
    call = first.choices[0].message
    assert call.tool_calls
    history = [
        *MESSAGES,
        call.model_dump(exclude_none=True),  # sent back as the SDK returned it
        {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": '{"temperature": 21}'},
    ]
    second = client.chat.completions.create(
        model="llama3.2:1b", messages=history, tools=TOOLS, tool_choice="none", max_tokens=8
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.tool_calls is None


def test_history_with_bad_arguments_is_a_400(client: openai.OpenAI) -> None:
    bad_call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "not json"}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="llama3.2:1b",
            messages=[*MESSAGES, {"role": "assistant", "tool_calls": [bad_call]}],
            tools=TOOLS,
            max_tokens=4,
        )
    assert caught.value.body["param"] == "messages"  # type: ignore[index]


def test_auto_gives_text_or_a_valid_call(client: openai.OpenAI) -> None:
    for seed in range(4):
        out = client.chat.completions.create(
            model="llama3.2:1b", messages=MESSAGES, tools=TOOLS, seed=seed, max_tokens=40
        )
        message = out.choices[0].message
        if message.tool_calls:
            assert out.choices[0].finish_reason == "tool_calls"
            _check_call(message.tool_calls[0])
        else:
            assert out.choices[0].finish_reason in ("stop", "length")


def test_tool_choice_naming_a_missing_tool_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="llama3.2:1b",
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "send_email"}},
        )
    assert caught.value.body["param"] == "tool_choice"  # type: ignore[index]
    assert "send_email" in caught.value.message


class Weather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=10)
    temperature: int = pydantic.Field(ge=-50, le=60)
    sunny: bool


def test_parse_into_a_pydantic_model(client: openai.OpenAI) -> None:
    out = client.beta.chat.completions.parse(
        model="llama3.2:1b", messages=MESSAGES, response_format=Weather, seed=3, max_tokens=200
    )
    assert out.choices[0].finish_reason == "stop"
    parsed = out.choices[0].message.parsed
    assert isinstance(parsed, Weather)


@pytest.mark.parametrize("seed", [1, 2])
def test_json_object_is_one_object(client: openai.OpenAI, seed: int) -> None:
    out = client.chat.completions.create(
        model="llama3.2:3b",
        messages=MESSAGES,
        response_format={"type": "json_object"},
        seed=seed,
        max_tokens=300,
        # the random model may nest on and on: limit its alphabet to short answers via the budget only
    )
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(out.choices[0].message.content or ""), dict)
    else:  # cut by max_tokens: OpenAI's "length", with the JSON as far as it got
        assert out.choices[0].finish_reason == "length"
        assert (out.choices[0].message.content or "").startswith("{")


def test_json_cut_by_max_tokens_is_length(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string", "minLength": 50}}, "required": ["text"]}
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        max_tokens=5,
    )
    assert out.choices[0].finish_reason == "length"


def test_unenforceable_schema_feature_is_refused_by_name(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="llama3.2:1b",
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        )
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
    assert "uniqueItems" in caught.value.message


def test_tools_with_a_schema_feature_that_cannot_be_enforced(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="llama3.2:1b", messages=MESSAGES, tools=tools, tool_choice="required")
    assert caught.value.body["param"] == "tools"  # type: ignore[index]
    assert '["not"]' in caught.value.message  # llguidance names the keyword it cannot enforce


def test_constrained_greedy_answer_replays(server: RunningServer) -> None:
    fields = {"tools": TOOLS, "tool_choice": "required"}
    body = {"model": "llama3.2:1b", "messages": MESSAGES, "temperature": 0, "max_tokens": 200, **fields}
    answer = httpx.post(f"{server.v1}/chat/completions", json=body, headers=AUTH, timeout=60).json()
    call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
    output = f'{{"name": "{call["name"]}", "parameters": {call["arguments"]}}}'
    verify = f"{server.v1}/requests/{answer['request_id']}/verify"
    without = httpx.post(verify, json={"messages": MESSAGES, "output": output}, headers=AUTH, timeout=60).json()
    assert without["verified"] is True
    assert without["replay"]["performed"] is False and "tools" in without["replay"]["reason"]
    replayed = httpx.post(verify, json={"messages": MESSAGES, "output": output, **fields}, headers=AUTH, timeout=60)
    assert replayed.json()["replay"]["reproduced"] is True


class Address(pydantic.BaseModel):
    city: Literal["Paris", "Rome"]
    zone: int = pydantic.Field(ge=0, le=9)


class Order(pydantic.BaseModel):
    """A nested model: its schema refers to Address in `$defs`."""

    address: Address
    express: bool


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_tool_with_nested_models_is_called_with_valid_arguments(client: openai.OpenAI, seed: int) -> None:
    """openai.pydantic_function_tool of a nested model: its `$ref`s point into `$defs`, which the call's
    wrapper moved away from (every tool_choice refused it: "Pointer '/$defs/Address' does not exist")."""
    tool = openai.pydantic_function_tool(Order)
    assert "$defs" in tool["function"]["parameters"]
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "Order"}},
        seed=seed,
        temperature=1.0,
        max_tokens=200,
    )
    calls = out.choices[0].message.tool_calls
    assert out.choices[0].finish_reason == "tool_calls" and calls and calls[0].function.name == "Order"
    Order.model_validate_json(calls[0].function.arguments)  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_schema_that_does_not_say_additional_properties_gets_none(client: openai.OpenAI, seed: int) -> None:
    """As xgrammar and OpenAI's strict mode read it: an object that names its properties has only those."""
    parameters = {
        "type": "object",
        "properties": {
            "flag": {"type": "boolean"},
            "inner": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
        "required": ["flag", "inner"],
    }
    tool = {"type": "function", "function": {"name": "mark", "parameters": parameters}}
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=MESSAGES,
        tools=[tool],
        tool_choice="required",
        seed=seed,
        temperature=1.5,
        max_tokens=200,
    )
    calls = out.choices[0].message.tool_calls
    assert calls, out.choices[0].message.content
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert set(arguments) == {"flag", "inner"} and set(arguments["inner"]) <= {"ok"}
