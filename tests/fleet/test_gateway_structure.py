"""Tools, tool_choice, response_format and logprobs through a pure gateway to real pinaivu nodes, with the
real openai and anthropic clients: forwarded to the node as asked, the node's calls and logprobs read back.

The tiny models write nonsense, so every valid call and every valid JSON here is the node's constraint's doing:
the gateway has no model to constrain anything with.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from tests.fleet.test_gateway import NODE_ENV, POLL, foreign, node_view, nodes_file, wait_for
from tests.helpers import AUTH, NO_EOG, TEST_KEY, RunningServer, TinyModels, start_server, write_catalog

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "boolean"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "parameters": ADD}},
]
__all__ = ["foreign"]  # llama_cpp.server as an openai node (a fixture of test_gateway.py)
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels) -> Iterator[RunningServer]:
    """Two pinaivu nodes (contexts of 4096: the tiny vocabulary spends a token a byte of the tools' JSON)
    behind a pure gateway, which has no model of its own to serve anything with."""
    workdir = tmp_path_factory.mktemp("fleet-structure")
    catalog = write_catalog(
        workdir / "models.toml", {"llama3.2:1b": {"path": str(tiny_models.f16), "n_ctx": 4096, "parallel": 2}}
    )
    servers: list[RunningServer] = []
    try:
        urls = {}
        for name in ("a", "b"):
            (workdir / name).mkdir()
            servers.append(start_server(workdir / name, "--models-file", str(catalog), env=NODE_ENV))
            urls[name] = servers[-1].base_url
        listed = nodes_file(workdir / "nodes.toml", urls)
        (workdir / "gw").mkdir()
        servers.append(start_server(workdir / "gw", "--nodes", str(listed), "--no-local", env=POLL))
        yield servers[-1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def client(gateway: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(api_key=TEST_KEY, base_url=gateway.v1, max_retries=0)


def _valid_call(call: Any) -> dict[str, Any]:
    assert call.id.startswith("call_") and call.type == "function"
    arguments: dict[str, Any] = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


def _nodes_up(gateway: RunningServer) -> None:
    assert [node_view(gateway, name)["state"] for name in ("a", "b")] == ["up", "up"]


def test_a_required_call_whole_and_a_named_one_streamed(client: openai.OpenAI, gateway: RunningServer) -> None:
    whole = client.chat.completions.create(
        model="llama3.2:1b", messages=MESSAGES, tools=TOOLS, tool_choice="required", seed=3, max_tokens=200
    )
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    _valid_call(choice.message.tool_calls[0])
    record = httpx.get(f"{gateway.v1}/requests/{whole.model_extra['request_id']}", headers=AUTH, timeout=10).json()  # type: ignore[index]
    assert record["node"] in ("a", "b") and record["status"] == 200 and record["finish_reason"] == "tool_calls"
    assert record["receipt_verified"] is True  # the node's own receipt, checked against its pinned key

    with client.beta.chat.completions.stream(
        model="llama3.2:1b",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        seed=5,
        max_tokens=200,
    ) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls" and not message.content
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    assert message.tool_calls[0].function.name == "add" and set(_valid_call(message.tool_calls[0])) == {"a", "b"}
    assert [c for c in chunks if c.type == "tool_calls.function.arguments.delta"]  # the arguments came in pieces
    assert not any(c.type == "content.delta" and c.delta for c in chunks)  # no call text leaked as content
    _nodes_up(gateway)


def test_a_json_schema_response_format_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 99},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["name", "age", "unit"],
        "additionalProperties": False,
    }
    out = client.chat.completions.create(
        model="llama3.2:1b",
        messages=[{"role": "user", "content": "A person."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        seed=2,
        max_tokens=200,
    )
    content = out.choices[0].message.content
    assert out.choices[0].finish_reason == "stop" and content is not None
    jsonschema.validate(json.loads(content), schema)


def test_logprobs_with_alternatives_whole_streamed_and_legacy(client: openai.OpenAI, gateway: RunningServer) -> None:
    body: dict[str, Any] = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 6, "logit_bias": NO_EOG}
    whole = client.chat.completions.create(**body, logprobs=True, top_logprobs=3)
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None and whole.usage is not None
    assert len(logprobs.content) == whole.usage.completion_tokens == 6
    assert "".join(entry.token for entry in logprobs.content) == whole.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob

    chunks = list(client.chat.completions.create(**body, logprobs=True, top_logprobs=2, stream=True))
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(entries) == 6 and "".join(e.token for e in entries) == text
    assert all(len(e.top_logprobs) == 2 and e.bytes is not None for e in entries)

    legacy = client.completions.create(model="llama3.2:1b", prompt="Once", max_tokens=5, logprobs=2, logit_bias=NO_EOG)
    shown = legacy.choices[0].logprobs
    assert shown is not None and shown.tokens is not None and shown.top_logprobs is not None
    assert "".join(shown.tokens) == legacy.choices[0].text and len(shown.tokens) == 5
    assert shown.text_offset == [sum(len(t) for t in shown.tokens[:i]) for i in range(5)]
    assert all(2 <= len(top) <= 3 for top in shown.top_logprobs)
    _nodes_up(gateway)


def test_an_anthropic_forced_tool_use(gateway: RunningServer) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0)
    tool: Any = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER}
    message = client.messages.create(
        model="llama3.2:1b",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[tool],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert message.stop_reason == "tool_use"
    call = message.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER)

    with client.messages.stream(
        model="llama3.2:1b",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[tool],
        tool_choice={"type": "any"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"
    jsonschema.validate(final.content[-1].input, WEATHER)


def test_a_responses_forced_function_call(client: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER}]
    response = client.responses.create(
        model="llama3.2:1b",
        input="Weather in Paris?",
        tools=tools,
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=200,
    )
    call = response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER)

    with client.responses.stream(
        model="llama3.2:1b", input="Weather?", tools=tools, tool_choice="required", max_output_tokens=200
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1 and final.status == "completed"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == calls[0].arguments


def test_an_openai_node_gets_the_same_fields(
    foreign: tuple[subprocess.Popen[bytes], str], tmp_path: Path, tiny_models: TinyModels
) -> None:
    """llama_cpp.server (kind "openai") behind a pure gateway: response_format and logprobs reach it as asked
    (the tiny model's JSON is the node's grammar's doing)."""
    listed = nodes_file(tmp_path / "nodes.toml", {"foreign": foreign[1]}, kind="openai")
    (tmp_path / "gw").mkdir()
    gateway = start_server(tmp_path / "gw", "--nodes", str(listed), "--no-local", env=POLL)
    try:
        wait_for(lambda: node_view(gateway, "foreign")["state"] == "up", 30, "llama_cpp.server in rotation")
        client = openai.OpenAI(api_key=TEST_KEY, base_url=gateway.v1, max_retries=0)
        # llama_cpp.server takes json_object (a 500 for json_schema, which llama-server and vLLM take)
        out = client.chat.completions.create(
            model="llama3.2:1b",
            messages=MESSAGES,
            response_format={"type": "json_object"},
            max_tokens=60,
            temperature=0,
        )
        content = out.choices[0].message.content or ""
        assert content.startswith("{")
        if out.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(content), dict)
        body: dict[str, Any] = {"model": "llama3.2:1b", "messages": MESSAGES, "max_tokens": 4, "logit_bias": NO_EOG}
        chunks = list(client.chat.completions.create(**body, logprobs=True, top_logprobs=2, stream=True))
        entries = [
            e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content or []
        ]
        assert entries and all(e.logprob <= 0 and len(e.top_logprobs) <= 2 for e in entries)
        assert node_view(gateway, "foreign")["state"] == "up"
    finally:
        gateway.stop()
