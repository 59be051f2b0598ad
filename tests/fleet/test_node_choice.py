"""A node's choices read back: tool_calls deltas rebuilt as the call text the shared parser reads, logprobs
as the engine's, and every payload of the wrong shape or size refused (NodeDropped)."""

from __future__ import annotations

from typing import Any

import pytest

from pinaivu_local.api.flow.tool_calls import parse_output
from pinaivu_local.fleet.node_choice import ChoiceReader
from pinaivu_local.fleet.node_stream import NodeDropped


def call_delta(index: int, name: str | None = None, arguments: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {} if name is None else {"name": name}
    if arguments is not None:
        function["arguments"] = arguments
    return {"delta": {"tool_calls": [{"index": index, "function": function}]}}


def read_all(choices: list[dict[str, Any]], top: int | None = None) -> str:
    reader = ChoiceReader(top)
    return "".join(reader.read(choice).text for choice in choices) + reader.finish()


def test_a_streamed_call_is_rebuilt_with_its_arguments_byte_for_byte() -> None:
    arguments = '{"city":  "Paris",\n "unit": "celsius"}'
    choices = [
        {"delta": {"role": "assistant", "content": "Let me look. "}},
        call_delta(0, "get_weather", ""),
        call_delta(0, arguments=arguments[:9]),
        call_delta(0, arguments=arguments[9:]),
    ]
    parsed = parse_output(read_all(choices), ("get_weather",))
    assert parsed.content == "Let me look."
    assert parsed.call is not None and parsed.call.name == "get_weather" and parsed.arguments == arguments


def test_a_call_without_arguments_has_an_empty_object_and_a_second_call_stays_text() -> None:
    text = read_all([call_delta(0, "now", ""), call_delta(1, "add", '{"a": 1}')])
    parsed = parse_output(text, ("now", "add"))
    assert parsed.call is not None and parsed.call.name == "now" and parsed.arguments == "{}"
    assert parsed.content == '{"name": "add", "parameters": {"a": 1}}'  # one call a turn, as the engine's


def test_only_text_and_arguments_count_as_tokens() -> None:
    reader = ChoiceReader(None)
    assert not reader.read(call_delta(0, "f")).tokens
    assert reader.read(call_delta(0, arguments="{")).tokens
    assert reader.read({"text": "x"}).tokens


def test_chat_and_legacy_logprobs_become_the_engines() -> None:
    reader = ChoiceReader(2)
    entry = {
        "token": "Hi",
        "logprob": -0.5,
        "bytes": [72, 105],
        "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}, {"token": "Yo", "logprob": -2}],
    }
    piece = reader.read({"delta": {"content": "Hi"}, "logprobs": {"content": [entry]}})
    assert piece.logprobs is not None and piece.logprobs[0].bytes == b"Hi" and piece.logprobs[0].top[1].token == "Yo"
    legacy = ChoiceReader(1)
    legacy.read({"text": "ab"})
    shown = {"tokens": ["c", "d"], "token_logprobs": [-1.0, -0.25], "top_logprobs": [{"c": -1.0, "e": -0.5}, None]}
    entries = legacy.read({"text": "cd", "logprobs": shown}).logprobs
    assert entries is not None and [e.text_offset for e in entries] == [2, 3]
    assert [t.token for t in entries[0].top] == ["e"] and entries[1].top == ()


@pytest.mark.parametrize(
    "choice",
    [
        {"delta": {"content": 5}},
        {"delta": "text"},
        call_delta(0, "x" * 65, "{}"),
        {"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": {"a": 1}}}]}},
        {"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": 3.0}]}},
        {"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": "-1"}]}},
        {"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": -1, "bytes": [256]}]}},
        {"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a" * 2000, "logprob": -1}]}},
        {"delta": {"content": "a"}, "logprobs": {"content": [{"token": "a", "logprob": -1, "top_logprobs": [{}] * 3}]}},
        {"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": []}},
    ],
)
def test_a_payload_of_the_wrong_shape_or_size_drops_the_node(choice: dict[str, Any]) -> None:
    with pytest.raises(NodeDropped):
        ChoiceReader(2).read(choice)


def test_logprobs_not_asked_for_drop_the_node() -> None:
    with pytest.raises(NodeDropped):
        ChoiceReader(None).read({"delta": {"content": "a"}, "logprobs": {"content": []}})
