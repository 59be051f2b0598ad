"""A test model's turn under tool_choice "auto": a call when the user spoke last, text after a tool's result."""

from __future__ import annotations

from typing import Any

import pytest

from pinaivu_local.engine.grammars import json_constraint, tool_call_constraint
from pinaivu_local.engine.prepared import ChatPrompt, TextPrompt
from pinaivu_local.engine.scripted_turns import ANSWER_CHARS, scripted_turn

TOOLS = [("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})]
CALLED: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
]


def test_the_user_spoke_last_a_call_from_the_first_token() -> None:
    auto = tool_call_constraint(TOOLS, lazy=True)
    turn = scripted_turn(auto, ChatPrompt(CALLED[:1]))
    assert turn == tool_call_constraint(TOOLS, lazy=False)
    assert turn is not None and not turn.lazy and turn.param == "tools"


def test_after_a_tool_result_a_short_text_that_ends() -> None:
    auto = tool_call_constraint(TOOLS, lazy=True)
    turn = scripted_turn(auto, ChatPrompt([*CALLED, {"role": "tool", "content": "21 C"}]))
    assert turn is not None and not turn.lazy and turn.auto_call is None and turn.param == "tools"
    assert f"{{{ANSWER_CHARS}}}" in turn.grammar  # a line of that many characters, then the end


@pytest.mark.parametrize("last", ["assistant", "system"])
def test_any_other_last_turn_keeps_the_request_s_constraint(last: str) -> None:
    auto = tool_call_constraint(TOOLS, lazy=True)
    assert scripted_turn(auto, ChatPrompt([{"role": last, "content": "x"}])) is auto


def test_constraints_that_leave_no_choice_are_kept() -> None:
    forced = tool_call_constraint(TOOLS, lazy=False)
    schema = json_constraint({"type": "object"}, param="response_format")
    after_tool = ChatPrompt([*CALLED, {"role": "tool", "content": "21 C"}])
    assert scripted_turn(forced, after_tool) is forced
    assert scripted_turn(schema, after_tool) is schema
    assert scripted_turn(None, ChatPrompt(CALLED[:1])) is None
    assert scripted_turn(tool_call_constraint(TOOLS, lazy=True), TextPrompt("x")) is not None
