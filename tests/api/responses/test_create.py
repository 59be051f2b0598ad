"""POST /v1/responses with the real openai SDK over real HTTP: text, items, instructions, limits, streams."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic

from tests.helpers import AUTH, RunningServer

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}
]


def test_a_string_input_answers_a_response_object(client: openai.OpenAI) -> None:
    raw = client.responses.with_raw_response.create(model="llama3.2:1b", input="Say hello", max_output_tokens=8)
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert isinstance(response.output_text, str)
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.input_tokens_details.cached_tokens >= 0
    request_id = (response.model_extra or {})["request_id"]
    assert request_id.startswith("req_") and raw.headers["x-request-id"] == request_id
    assert raw.headers["x-pinaivu-receipt"]


def test_items_and_instructions_reach_the_model(client: openai.OpenAI, server: RunningServer) -> None:
    plain = client.responses.create(model="llama3.2:1b", input="Hello", temperature=0, max_output_tokens=6)
    items = client.responses.create(
        model="llama3.2:1b",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}],
        temperature=0,
        max_output_tokens=6,
    )
    instructed = client.responses.create(
        model="llama3.2:1b", instructions="Answer in French.", input="Hello", temperature=0, max_output_tokens=6
    )
    # The same conversation, as a string or as items, is the same prompt; instructions add a system message.
    assert items.usage is not None and plain.usage is not None and instructed.usage is not None
    assert items.usage.input_tokens == plain.usage.input_tokens < instructed.usage.input_tokens
    assert items.output_text == plain.output_text
    assert instructed.instructions == "Answer in French."


def test_max_output_tokens_cuts_it_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="llama3.2:1b", input="Count", max_output_tokens=3, extra_body={"ignore_eos": True}
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.output[0].status == "incomplete"


def test_a_stream_reassembles_in_the_sdk(client: openai.OpenAI) -> None:
    """Cut by max_output_tokens, a stream ends with response.incomplete (as OpenAI's; the SDK's
    get_final_response() waits for response.completed, so the last event is read instead)."""
    with client.responses.stream(
        model="llama3.2:1b", input="Tell a story", max_output_tokens=12, extra_body={"ignore_eos": True}
    ) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.output_text == deltas != ""
    assert last.response.usage is not None and last.response.usage.output_tokens == 12


def test_a_completed_stream_carries_the_receipt_and_request_id(server: RunningServer) -> None:
    body = {"model": "llama3.2:1b", "input": "Hi", "max_output_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server.v1}/responses", json=body, headers=AUTH, timeout=60) as answer:
        lines = [line for line in answer.iter_lines() if line.startswith("data: ")]
        request_id = answer.headers["x-request-id"]
    last = json.loads(lines[-1][len("data: ") :])
    assert last["type"] in ("response.completed", "response.incomplete")
    assert last["response"]["request_id"] == request_id
    assert last["response"]["pinaivu_receipt"]["signature"]
    record = httpx.get(f"{server.v1}/requests/{request_id}", headers=AUTH, timeout=10).json()
    assert record["request_id"] == request_id and record["receipt"]


def test_a_forced_call_streams_as_a_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="llama3.2:1b", input="Weather in Paris?", tools=TOOLS, tool_choice="required", max_output_tokens=200
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == calls[0].arguments
    assert final.status == "completed"


def test_a_named_function_is_called_whole(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="llama3.2:3b",
        input="Weather in Paris?",
        tools=TOOLS,
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=200,
    )
    call = response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER)


class Weather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=10)
    unit: Literal["celsius", "fahrenheit"]
    sunny: bool


def test_text_format_json_schema_parses(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(
        model="llama3.2:1b", input="Weather?", text_format=Weather, max_output_tokens=200, temperature=0
    )
    assert isinstance(parsed.output_parsed, Weather)


def test_a_call_and_its_output_round_trip_through_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="llama3.2:1b", input="Weather in Paris?", tools=TOOLS, tool_choice="required", max_output_tokens=200
    )
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="llama3.2:1b",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"celsius": 21}'}],
        tools=TOOLS,
        max_output_tokens=8,
    )
    third = client.responses.create(
        model="llama3.2:1b", previous_response_id=second.id, input="Thanks", tools=TOOLS, max_output_tokens=8
    )
    assert first.usage is not None and second.usage is not None and third.usage is not None
    # Each turn's prompt holds the ones before it.
    assert first.usage.input_tokens < second.usage.input_tokens < third.usage.input_tokens
    assert third.previous_response_id == second.id
    # The conversation's earlier items are read from the store: the prefix cache served them.
    assert third.usage.input_tokens_details.cached_tokens > 0
