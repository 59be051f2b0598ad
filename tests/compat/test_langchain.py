"""LangChain's ChatOpenAI: invoke, stream, structured output in both modes, bound tools and a tool loop."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.compat.conftest import LOOP_TOKENS, MODEL, TEXT_TOKENS, TRIES
from tests.compat.models import Event, GetWeather, Person


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"4 C in {city}"


def chat(**options: object) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, max_retries=0, **options)  # key and base URL from the environment


def test_invoke_and_stream() -> None:
    llm = chat(max_tokens=TEXT_TOKENS)
    assert isinstance(llm.invoke("Hello").content, str)
    chunks = list(llm.stream("Hello"))
    assert chunks and all(isinstance(c.content, str) for c in chunks)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("schema", [Person, Event])
def test_with_structured_output(method: str, schema: type[Person] | type[Event]) -> None:
    structured = chat().with_structured_output(schema, method=method)
    for attempt in range(TRIES):
        assert isinstance(structured.invoke(f"Fill it in ({attempt})."), schema)


def test_bind_tools_forced_and_streamed() -> None:
    bound = chat().bind_tools([GetWeather], tool_choice="GetWeather")
    for _ in range(TRIES):
        message = bound.invoke("Weather in Oslo?")
        assert isinstance(message, AIMessage) and message.tool_calls[0]["name"] == "GetWeather"
        GetWeather.model_validate(message.tool_calls[0]["args"])
    merged = None
    for chunk in bound.stream("Weather in Oslo?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and merged.tool_calls[0]["name"] == "GetWeather"
    GetWeather.model_validate(merged.tool_calls[0]["args"])


def test_a_tool_loop() -> None:
    """tool_choice left to the model (auto): a test model calls, then answers the tool's result in text."""
    bound = chat(max_tokens=LOOP_TOKENS).bind_tools([get_weather])
    messages: list[object] = [HumanMessage("What is the weather in Oslo?")]
    reply = bound.invoke(messages)
    assert isinstance(reply, AIMessage) and reply.tool_calls
    call = reply.tool_calls[0]
    messages += [reply, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    answer = bound.invoke(messages)
    assert isinstance(answer, AIMessage) and not answer.tool_calls and isinstance(answer.content, str)
