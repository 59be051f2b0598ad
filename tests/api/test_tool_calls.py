"""Parsing model output into tool calls, on outputs as Llama 3.2 writes them."""

from __future__ import annotations

import json

import pytest

from pinaivu_local.api.flow.tool_calls import ArgumentsPiece, CallStart, ContentPiece, ToolCallParser, parse_output

NAMES = ("get_current_weather", "get_time")
CALL = '{"name": "get_current_weather", "parameters": {"location": "San Francisco, CA", "unit": "celsius"}}'
ARGUMENTS = {"location": "San Francisco, CA", "unit": "celsius"}


@pytest.mark.parametrize(
    "output",
    [
        CALL,  # Llama 3.2's plain JSON call
        "<|python_tag|>" + CALL,  # with the tag it sometimes writes first
        "\n\n" + CALL + "\n",
        json.dumps({"name": "get_current_weather", "parameters": ARGUMENTS}, separators=(",", ":")),  # compact
    ],
)
def test_a_call_alone(output: str) -> None:
    parsed = parse_output(output, NAMES)
    assert parsed.content is None
    assert parsed.call is not None and parsed.call.name == "get_current_weather"
    assert parsed.call.id.startswith("call_") and len(parsed.call.id) == 29
    assert json.loads(parsed.arguments) == ARGUMENTS


def test_text_before_a_call_is_content() -> None:
    parsed = parse_output("I'll look that up for you. " + CALL, NAMES)
    assert parsed.content == "I'll look that up for you."
    assert parsed.call is not None and json.loads(parsed.arguments) == ARGUMENTS


def test_braces_in_text_and_strings() -> None:
    output = 'Sets look like {1, 2}. {"name": "get_time", "parameters": {"tz": "a}b{"}}'
    parsed = parse_output(output, NAMES)
    assert parsed.content == "Sets look like {1, 2}."
    assert parsed.call is not None and json.loads(parsed.arguments) == {"tz": "a}b{"}


@pytest.mark.parametrize(
    "output",
    [
        '{"name": "get_current_weather", "parameters": {"location": "Paris"',  # cut short
        '{"name": "get_current_weather", "parameters": {"location": "Paris"}',  # call object never closed
        '{"name": "send_email", "parameters": {"to": "x"}}',  # not one of the tools
        '{"name": get_current_weather, "parameters": {}}',  # not JSON
        '{"location": "Paris"}',  # arguments without a call
        "The weather is nice.",
    ],
)
def test_anything_else_is_content_as_written(output: str) -> None:
    parsed = parse_output(output, NAMES)
    assert parsed.call is None
    assert parsed.content == output


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_streamed_in_pieces_equals_whole(size: int) -> None:
    output = "Checking. <|python_tag|>" + CALL
    parser = ToolCallParser(NAMES)
    events = []
    for i in range(0, len(output), size):
        events += parser.push(output[i : i + size])
    events += parser.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentPiece))
    starts = [e for e in events if isinstance(e, CallStart)]
    arguments = "".join(e.text for e in events if isinstance(e, ArgumentsPiece))
    assert content == "Checking. "  # nothing of the call leaked into the content
    assert [s.name for s in starts] == ["get_current_weather"]
    assert json.loads(arguments) == ARGUMENTS
    assert len([e for e in events if isinstance(e, ArgumentsPiece)]) > 1 or size > len(CALL)


def test_text_held_while_it_may_open_a_call_is_released_when_it_cannot() -> None:
    parser = ToolCallParser(NAMES)
    assert parser.push('{"na') == []  # may still be a call: held
    released = parser.push("p")
    assert all(isinstance(e, ContentPiece) for e in released)
    assert "".join(e.text for e in released if isinstance(e, ContentPiece)) == '{"nap'
