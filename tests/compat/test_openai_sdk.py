"""The openai Python SDK as its users call it: chat, stream, forced and named calls, parse() with pydantic models."""

from __future__ import annotations

import json

import openai
import pytest

from tests.compat.conftest import MODEL, TEXT_TOKENS, TRIES
from tests.compat.models import Event, GetWeather, Person


@pytest.fixture
def client() -> openai.OpenAI:
    return openai.OpenAI(max_retries=0)  # key and base URL from the environment, as users set them


def test_chat_and_stream(client: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hello"}]
    out = client.chat.completions.create(model=MODEL, messages=messages, max_completion_tokens=TEXT_TOKENS)
    assert out.choices[0].finish_reason in ("stop", "length") and out.usage is not None
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=TEXT_TOKENS, stream=True, stream_options={"include_usage": True}
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= TEXT_TOKENS


@pytest.mark.parametrize("model", [Person, Event])
def test_parse_a_pydantic_model(client: openai.OpenAI, model: type[Person] | type[Event]) -> None:
    for seed in range(TRIES):
        out = client.chat.completions.parse(
            model=MODEL, messages=[{"role": "user", "content": "Fill it in."}], response_format=model, seed=seed
        )
        assert out.choices[0].finish_reason == "stop"
        assert isinstance(out.choices[0].message.parsed, model)


def test_forced_and_named_calls_with_pydantic_function_tool(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(Person, name="add_person")]
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Weather?"}]
    for seed in range(TRIES):
        for choice in ("required", {"type": "function", "function": {"name": "GetWeather"}}):
            out = client.chat.completions.parse(
                model=MODEL, messages=messages, tools=tools, tool_choice=choice, parallel_tool_calls=False, seed=seed
            )
            assert out.choices[0].finish_reason == "tool_calls"
            call = (out.choices[0].message.tool_calls or [])[0]
            assert isinstance(call.function.parsed_arguments, GetWeather | Person)  # strict tools: parsed
            assert choice == "required" or call.function.name == "GetWeather"


def test_an_agent_loop_with_auto(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(GetWeather)]
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    call = (first.choices[0].message.tool_calls or [])[0]
    GetWeather.model_validate_json(call.function.arguments)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 4})},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, max_tokens=TEXT_TOKENS)
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content is not None
